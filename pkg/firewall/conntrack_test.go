package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestConnKillerCoalesces checks the killer's schedule: a ban while it is
// idle gets a pass at once; bans arriving during the gap share one later
// pass; every prefix reaches exactly one pass, split by family; close runs
// a last pass for what is still queued.
func TestConnKillerCoalesces(t *testing.T) {
	var mu sync.Mutex
	var passes [][]netip.Prefix
	var at []time.Time
	passed := make(chan struct{}, 100)
	k := startConnKiller(func(v4, v6 []netip.Prefix) {
		for _, p := range v4 {
			if !p.Addr().Is4() {
				t.Errorf("v6 prefix %v in the v4 list", p)
			}
		}
		for _, p := range v6 {
			if p.Addr().Is4() {
				t.Errorf("v4 prefix %v in the v6 list", p)
			}
		}
		mu.Lock()
		passes = append(passes, append(slices.Clone(v4), v6...))
		at = append(at, time.Now())
		mu.Unlock()
		passed <- struct{}{}
	}, 500*time.Millisecond)

	ban := func(s string) Ban { return Ban{Jail: "j", Prefix: netip.MustParsePrefix(s)} }
	start := time.Now()
	k.kill([]Ban{ban("203.0.113.1/32")})
	select {
	case <-passed:
	case <-time.After(time.Second):
		t.Fatal("no pass within 1s of the first ban")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("first pass after %v, want at once", d)
	}
	var want []netip.Prefix
	for i := range 50 {
		b := ban(fmt.Sprintf("203.0.113.%d/32", 10+i))
		if i%5 == 0 {
			b = ban(fmt.Sprintf("2001:db8:%x::/64", i))
		}
		want = append(want, b.Prefix)
		k.kill([]Ban{b})
		time.Sleep(time.Millisecond)
	}
	<-passed
	k.kill([]Ban{ban("198.51.100.7/32")})
	k.close()

	mu.Lock()
	defer mu.Unlock()
	if len(passes) != 3 {
		t.Fatalf("%d passes, want 3 (idle, coalesced, at close): %v", len(passes), passes)
	}
	if gap := at[1].Sub(at[0]); gap < 500*time.Millisecond {
		t.Errorf("second pass %v after the first, want ≥ the 500ms gap", gap)
	}
	got := slices.Clone(passes[1])
	sortPrefixes(got)
	sortPrefixes(want)
	if !slices.Equal(got, want) {
		t.Errorf("coalesced pass got %v, want %v", got, want)
	}
	if !slices.Equal(passes[2], []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}) {
		t.Errorf("pass at close got %v", passes[2])
	}
}

func sortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
}
