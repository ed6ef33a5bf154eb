package main

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// TestWorkload checks that a burst is what docs/bench.md says: the size,
// 30 % failure lines, one in ten attackers IPv6, and — run through the
// engine the daemon builds — every attacker banned exactly once, benign
// lines never, and the sentinel's ban decided by the very last entry.
func TestWorkload(t *testing.T) {
	sentinel := netip.MustParseAddr("198.51.100.201")
	cases := []struct {
		total, addrs, maxRetry int
	}{
		{20_000, 500, 5},
		{200_000, 5000, 5},
		{10_000, 300, 3},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d/%d/maxretry%d", c.total, c.addrs, c.maxRetry), func(t *testing.T) {
			w := makeWorkload(c.total, c.addrs, c.maxRetry, burst{v4: [2]byte{198, 18}, v6Group: 0xa, sentinel: sentinel})
			if got, want := len(w.msgs), c.total+c.maxRetry; got != want {
				t.Fatalf("%d entries, want %d", got, want)
			}
			if len(w.attack) != c.addrs {
				t.Fatalf("%d attackers, want %d", len(w.attack), c.addrs)
			}
			v6 := 0
			for _, a := range w.attack {
				if a.Is6() {
					v6++
				}
			}
			if v6 != c.addrs/10 {
				t.Errorf("%d IPv6 attackers, want %d", v6, c.addrs/10)
			}
			engine, err := newEngine(fmt.Sprintf(benchConfig, "none", true, c.maxRetry))
			if err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			bans := map[netip.Prefix]int{}
			lastBanAt := -1
			for i, m := range w.msgs {
				for _, d := range engine.Handle(journal.Entry{Unit: unit, Identifier: "sshd", Message: m, Time: at}) {
					bans[d.Prefix]++
					if d.Prefix.Contains(sentinel) {
						lastBanAt = i
					}
				}
			}
			if lastBanAt != len(w.msgs)-1 {
				t.Errorf("sentinel banned at entry %d, want the last (%d)", lastBanAt, len(w.msgs)-1)
			}
			for _, a := range w.attack {
				p, _ := a.Prefix(a.BitLen())
				if a.Is6() {
					p, _ = a.Prefix(64)
				}
				// Nine tries per attacker: exactly one ban at maxretry 5
				// (the bench's), at least one at smaller values.
				if bans[p] < 1 || c.maxRetry == 5 && bans[p] != 1 {
					t.Errorf("attacker %s banned %d times, want once", a, bans[p])
				}
			}
			if len(bans) != c.addrs+1 {
				t.Errorf("%d prefixes banned, want %d attackers + the sentinel", len(bans), c.addrs)
			}
			fails := 0
			for _, s := range engine.Stats() {
				fails = s.TotalFailed
			}
			// Counted failures: the closing line of a connection (same port,
			// another regex) does not count again.
			if fails < c.addrs*c.maxRetry {
				t.Errorf("%d counted failures, want at least %d", fails, c.addrs*c.maxRetry)
			}
			failLines := 0
			for i := 0; i < c.total; i++ {
				if i%10 < 3 {
					failLines++
				}
			}
			if got := float64(failLines) / float64(c.total); got < 0.29 || got > 0.31 {
				t.Errorf("failure share %.3f, want 0.30", got)
			}
		})
	}
}

// TestBenignLines checks that no benign line counts as a failure, with
// maxretry 1 so that one would be banned at once.
func TestBenignLines(t *testing.T) {
	engine, err := newEngine(fmt.Sprintf(benchConfig, "none", true, 1))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		if d := engine.Handle(journal.Entry{Unit: unit, Identifier: "sshd", Message: benign(i), Time: time.Now()}); len(d) > 0 {
			t.Fatalf("benign line %q banned %v", benign(i), d[0].Prefix)
		}
	}
	for _, s := range engine.Stats() {
		if s.TotalFailed != 0 {
			t.Errorf("jail %s counted %d failures in benign lines", s.Name, s.TotalFailed)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var d []time.Duration
		for _, x := range n {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	cases := []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3), 50, 2 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 100, 100 * time.Millisecond},
	}
	for _, c := range cases {
		if got := percentile(c.in, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.in, c.p, got, c.want)
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 200005: "200,005", 1234567.4: "1,234,567"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}
