package jails

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// memHistory is a History kept in memory by the tests: it records every
// Decision applied to it, as the daemon's ban table does.
type memHistory struct {
	mu   sync.Mutex
	bans []Decision
}

func (h *memHistory) apply(ds []Decision) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bans = append(h.bans, ds...)
}

func (h *memHistory) BanCount(jail string, p netip.Prefix, since time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, d := range h.bans {
		if d.Jail == jail && d.Prefix == p && !d.Time.Before(since) {
			n++
		}
	}
	return n
}

func (h *memHistory) ActiveWithin(jail string, subnet netip.Prefix, now time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, d := range h.bans {
		active := d.Duration == Permanent || now.Before(d.Time.Add(d.Duration))
		if d.Jail == jail && active && subnet.Contains(d.Prefix.Addr()) && d.Prefix.Bits() >= subnet.Bits() {
			n++
		}
	}
	return n
}

func sshdFilter(t testing.TB, mode string) *Filter {
	t.Helper()
	def, err := Builtin("sshd", mode)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

// entry is a sshd.service journal entry at t0+off.
func entry(off time.Duration, format string, a ...any) journal.Entry {
	return journal.Entry{Unit: "sshd.service", Message: fmt.Sprintf(format, a...), Time: t0.Add(off)}
}

func prefixes(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Prefix.String())
	}
	return out
}

func TestEngineTable(t *testing.T) {
	closed := "Connection closed by authenticating user nobody %s port %d [preauth]"
	type step struct {
		e    journal.Entry
		want []string // prefixes banned by this entry
	}
	tests := []struct {
		name  string
		jail  Jail
		wl    []netip.Prefix
		steps []step
	}{
		{
			name: "third failure inside findtime bans the /32",
			jail: Jail{MaxRetry: 3, FindTime: 10 * time.Minute, BanTime: time.Hour},
			steps: []step{
				{entry(0, closed, "198.51.100.2", 1000), nil},
				{entry(time.Minute, closed, "198.51.100.2", 1001), nil},
				{entry(2*time.Minute, closed, "198.51.100.2", 1002), []string{"198.51.100.2/32"}},
				// counting starts again after a ban
				{entry(3*time.Minute, closed, "198.51.100.2", 1003), nil},
			},
		},
		{
			name: "failures outside findtime slide out",
			jail: Jail{MaxRetry: 3, FindTime: 10 * time.Minute, BanTime: time.Hour},
			steps: []step{
				{entry(0, closed, "198.51.100.2", 1000), nil},
				{entry(5*time.Minute, closed, "198.51.100.2", 1001), nil},
				{entry(11*time.Minute, closed, "198.51.100.2", 1002), nil}, // the first left the window
				{entry(12*time.Minute, closed, "198.51.100.2", 1003), []string{"198.51.100.2/32"}},
			},
		},
		{
			name: "addresses are counted apart",
			jail: Jail{MaxRetry: 2, FindTime: time.Hour, BanTime: time.Hour},
			steps: []step{
				{entry(0, closed, "198.51.100.2", 1000), nil},
				{entry(1, closed, "198.51.100.3", 1000), nil},
				{entry(2, closed, "198.51.100.3", 1001), []string{"198.51.100.3/32"}},
			},
		},
		{
			name: "one connection counts once, each password try counts",
			jail: Jail{MaxRetry: 3, FindTime: time.Hour, BanTime: time.Hour},
			steps: []step{
				{entry(0, "Invalid user bob from 198.51.100.2 port 4000"), nil},
				{entry(1, "Failed password for invalid user bob from 198.51.100.2 port 4000 ssh2"), nil},
				{entry(2, "Connection closed by invalid user bob 198.51.100.2 port 4000 [preauth]"), nil},
				{entry(3, "Invalid user bob from 198.51.100.2 port 4001"), nil},
				{entry(4, "Failed password for invalid user bob from 198.51.100.2 port 4001 ssh2"), nil},
				{entry(5, "Failed password for invalid user bob from 198.51.100.2 port 4001 ssh2"), []string{"198.51.100.2/32"}},
				// the closing line of the connection that was banned does not start a new count
				{entry(6, "Connection closed by invalid user bob 198.51.100.2 port 4001 [preauth]"), nil},
				{entry(7, closed, "198.51.100.2", 4002), nil},
				{entry(8, closed, "198.51.100.2", 4003), nil},
				{entry(9, closed, "198.51.100.2", 4004), []string{"198.51.100.2/32"}},
			},
		},
		{
			name: "IPv6 addresses rotating in one /64 are one attacker",
			jail: Jail{MaxRetry: 3, FindTime: time.Hour, BanTime: time.Hour},
			steps: []step{
				{entry(0, closed, "2001:db8:1:2::a", 1), nil},
				{entry(1, closed, "2001:db8:1:2::b", 2), nil},
				{entry(2, closed, "2001:db8:1:3::c", 3), nil}, // another /64
				{entry(3, closed, "2001:db8:1:2:ffff::1", 4), []string{"2001:db8:1:2::/64"}},
			},
		},
		{
			name: "ipv6_prefix 128 counts each address",
			jail: Jail{MaxRetry: 2, FindTime: time.Hour, BanTime: time.Hour, IPv6Prefix: 128},
			steps: []step{
				{entry(0, closed, "2001:db8::a", 1), nil},
				{entry(1, closed, "2001:db8::b", 2), nil},
				{entry(2, closed, "2001:db8::a", 3), []string{"2001:db8::a/128"}},
			},
		},
		{
			name: "whitelisted and loopback addresses are never counted",
			jail: Jail{MaxRetry: 1, FindTime: time.Hour, BanTime: time.Hour},
			wl:   []netip.Prefix{netip.MustParsePrefix("198.51.100.3/32"), netip.MustParsePrefix("2001:db8:3::/48")},
			steps: []step{
				{entry(0, closed, "198.51.100.3", 1), nil},
				{entry(1, closed, "::ffff:198.51.100.3", 2), nil},
				{entry(2, closed, "2001:db8:3::9", 3), nil},
				{entry(3, closed, "127.0.0.1", 4), nil},
				{entry(4, closed, "::1", 5), nil},
				{entry(5, closed, "198.51.100.4", 6), []string{"198.51.100.4/32"}},
			},
		},
		{
			name: "spoofed entries outside the unit are ignored",
			jail: Jail{MaxRetry: 1, FindTime: time.Hour, BanTime: time.Hour},
			steps: []step{
				{journal.Entry{Identifier: "sshd", Message: "Failed password for root from 198.51.100.9 port 1 ssh2", Time: t0}, nil},
				{journal.Entry{Unit: "user@1000.service", Identifier: "sshd", Message: "Failed password for root from 198.51.100.9 port 1 ssh2", Time: t0}, nil},
				{journal.Entry{Unit: "ssh.service", Message: "Failed password for root from 198.51.100.9 port 1 ssh2", Time: t0}, []string{"198.51.100.9/32"}},
			},
		},
		{
			name: "identifier routing only for a jail that opted in",
			jail: Jail{Units: []string{"nothing"}, Identifiers: []string{"sshd"}, MaxRetry: 1, FindTime: time.Hour, BanTime: time.Hour},
			steps: []step{
				{journal.Entry{Identifier: "sshd", Message: "Failed password for root from 198.51.100.9 port 1 ssh2", Time: t0}, []string{"198.51.100.9/32"}},
			},
		},
		{
			name: "template unit matches instances",
			jail: Jail{Units: []string{"sshd@.service"}, MaxRetry: 1, FindTime: time.Hour, BanTime: time.Hour},
			steps: []step{
				{journal.Entry{Unit: "sshd@3-198.51.100.1:22-198.51.100.9:4000.service", Message: "Failed password for root from 198.51.100.9 port 4000 ssh2", Time: t0}, []string{"198.51.100.9/32"}},
				{journal.Entry{Unit: "sshd.service", Message: "Failed password for root from 198.51.100.8 port 4000 ssh2", Time: t0}, nil},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.jail.Name = "sshd"
			tc.jail.Filter = sshdFilter(t, "")
			e, err := NewEngine([]Jail{tc.jail}, NewWhitelist(tc.wl), &memHistory{})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				got := prefixes(e.Handle(s.e))
				if strings.Join(got, ",") != strings.Join(s.want, ",") {
					t.Errorf("step %d (%q): banned %v, want %v", i, s.e.Message, got, s.want)
				}
			}
		})
	}
}

func TestEngineDecisionFields(t *testing.T) {
	e, err := NewEngine([]Jail{{Name: "sshd", Filter: sshdFilter(t, ""), MaxRetry: 2, FindTime: 10 * time.Minute, BanTime: time.Hour}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Handle(entry(0, "Failed password for root from 203.0.113.7 port 1 ssh2"))
	ds := e.Handle(entry(time.Second, "Failed password for root from 203.0.113.7 port 2 ssh2"))
	if len(ds) != 1 {
		t.Fatalf("got %d decisions, want 1", len(ds))
	}
	d := ds[0]
	want := Decision{Jail: "sshd", Prefix: netip.MustParsePrefix("203.0.113.7/32"), Duration: time.Hour, Time: t0.Add(time.Second)}
	if d.Jail != want.Jail || d.Prefix != want.Prefix || d.Duration != want.Duration || !d.Time.Equal(want.Time) {
		t.Errorf("decision %+v, want %+v", d, want)
	}
	if d.Reason != `2 failures within 10m0s, last for user "root"` || strings.Contains(d.Reason, "\n") {
		t.Errorf("reason %q", d.Reason)
	}
	st := e.Stats()
	if len(st) != 1 || st[0].TotalFailed != 2 || st[0].CurrentlyFailed != 0 {
		t.Errorf("stats %+v, want total 2, current 0", st)
	}
}

func TestEngineIncrementAcrossRestart(t *testing.T) {
	h := &memHistory{}
	jail := Jail{Name: "sshd", Filter: sshdFilter(t, ""), MaxRetry: 1, FindTime: time.Hour, BanTime: time.Hour,
		Increment: Increment{Enabled: true, Factor: 2, Max: 5 * time.Hour, Window: 24 * time.Hour}}
	wants := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 5 * time.Hour, 5 * time.Hour}
	for i, want := range wants {
		// A new engine per ban: the history alone carries the count, as
		// after a restart of the daemon.
		e, err := NewEngine([]Jail{jail}, nil, h)
		if err != nil {
			t.Fatal(err)
		}
		ds := e.Handle(entry(time.Duration(i)*2*time.Hour, "Failed password for root from 203.0.113.7 port %d ssh2", i+1))
		if len(ds) != 1 || ds[0].Duration != want {
			t.Fatalf("ban %d: %+v, want duration %v", i+1, ds, want)
		}
		h.apply(ds)
	}
	// Bans older than the window no longer count.
	e, _ := NewEngine([]Jail{jail}, nil, h)
	ds := e.Handle(entry(60*time.Hour, "Failed password for root from 203.0.113.7 port 99 ssh2"))
	if len(ds) != 1 || ds[0].Duration != time.Hour {
		t.Errorf("after the window: %+v, want 1h", ds)
	}
	// Permanent stays permanent.
	jail.BanTime = Permanent
	e, _ = NewEngine([]Jail{jail}, nil, h)
	ds = e.Handle(entry(61*time.Hour, "Failed password for root from 203.0.113.7 port 100 ssh2"))
	if len(ds) != 1 || ds[0].Duration != Permanent {
		t.Errorf("permanent: %+v", ds)
	}
}

func TestEngineDistributed(t *testing.T) {
	h := &memHistory{}
	jail := Jail{Name: "sshd", Filter: sshdFilter(t, ""), MaxRetry: 5, FindTime: time.Hour, BanTime: time.Hour,
		Distributed: Distributed{Window: time.Hour, MinAddresses: 10, MaxRetry: 2}}
	e, err := NewEngine([]Jail{jail}, nil, h)
	if err != nil {
		t.Fatal(err)
	}
	banned := map[string]bool{}
	port := 1000
	// 20 addresses × 2 tries on one account, one after the other.
	for i := 1; i <= 20; i++ {
		for try := 0; try < 2; try++ {
			port++
			ds := e.Handle(entry(time.Duration(port)*time.Second, "Failed password for root from 203.0.113.%d port %d ssh2", i, port))
			for _, d := range ds {
				if banned[d.Prefix.String()] {
					t.Errorf("%s banned twice", d.Prefix)
				}
				banned[d.Prefix.String()] = true
				if !strings.HasPrefix(d.Reason, `distributed attack on user "root"`) {
					t.Errorf("reason %q", d.Reason)
				}
			}
			h.apply(ds)
		}
	}
	for i := 1; i <= 20; i++ {
		if !banned[fmt.Sprintf("203.0.113.%d/32", i)] {
			t.Errorf("203.0.113.%d not banned", i)
		}
	}
	if len(banned) != 20 {
		t.Errorf("%d bans, want 20", len(banned))
	}

	// Below min_addresses nothing happens beyond the normal maxretry;
	// different accounts are not one attack.
	e, _ = NewEngine([]Jail{jail}, nil, &memHistory{})
	for i := 1; i <= 9; i++ {
		for try := 0; try < 2; try++ {
			port++
			if ds := e.Handle(entry(time.Duration(port)*time.Second, "Failed password for root from 198.51.100.%d port %d ssh2", i, port)); len(ds) != 0 {
				t.Errorf("9 addresses: banned %v", prefixes(ds))
			}
		}
	}
	for i := 10; i <= 20; i++ {
		port++
		if ds := e.Handle(entry(time.Duration(port)*time.Second, "Failed password for user%d from 198.51.100.%d port %d ssh2", i, i, port)); len(ds) != 0 {
			t.Errorf("other accounts: banned %v", prefixes(ds))
		}
	}
	// Outside the window the old addresses no longer take part.
	port++
	if ds := e.Handle(entry(5*time.Hour, "Failed password for root from 198.51.100.50 port %d ssh2", port)); len(ds) != 0 {
		t.Errorf("after the window: banned %v", prefixes(ds))
	}
}

func TestEngineSubnetEscalation(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			h := &memHistory{}
			jail := Jail{Name: "sshd", Filter: sshdFilter(t, ""), MaxRetry: 1, FindTime: time.Hour, BanTime: time.Hour,
				SubnetEscalation: SubnetEscalation{Prefix4: 24, Prefix6: 48, Threshold: 3}}
			e, err := NewEngine([]Jail{jail}, nil, h)
			if err != nil {
				t.Fatal(err)
			}
			addr := func(i int) string {
				if v6 {
					return fmt.Sprintf("2001:db8:7:%x::1", i)
				}
				return fmt.Sprintf("203.0.113.%d", i)
			}
			sub := "203.0.113.0/24"
			if v6 {
				sub = "2001:db8:7::/48"
			}
			var all [][]string
			for i := 1; i <= 4; i++ {
				ds := e.Handle(entry(time.Duration(i)*time.Minute, "Failed password for root from %s port %d ssh2", addr(i), i))
				h.apply(ds)
				all = append(all, prefixes(ds))
			}
			if len(all[0]) != 1 || len(all[1]) != 1 {
				t.Errorf("first two bans: %v", all)
			}
			if len(all[2]) != 2 || all[2][1] != sub {
				t.Errorf("third ban: %v, want the address and %s", all[2], sub)
			}
			if len(all[3]) != 1 {
				t.Errorf("fourth ban escalated again: %v", all[3])
			}
			// After the subnet ban ended, a new escalation happens again.
			ds := e.Handle(entry(3*time.Hour, "Failed password for root from %s port 9 ssh2", addr(9)))
			if len(ds) != 1 {
				t.Errorf("after expiry: %v (bans expired too, so no escalation)", prefixes(ds))
			}
		})
	}
}

func TestTrackerMemoryBound(t *testing.T) {
	tr := NewTracker(3, time.Hour, 1000)
	for i := 0; i < 5000; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tr.Add(Key(a, 64), a, 0, 0, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if tr.keys.len() != 1000 || tr.Len() != 1000 || tr.Evicted() != 4000 {
		t.Fatalf("len %d/%d evicted %d, want 1000/1000/4000", tr.keys.len(), tr.Len(), tr.Evicted())
	}
	// The newest are kept, the oldest were evicted.
	newest := netip.AddrFrom4([4]byte{10, 0, 0x13, 0x87}) // 4999
	oldest := netip.AddrFrom4([4]byte{10, 0, 0, 0})
	if tr.Count(Key(newest, 64), t0) != 1 || tr.Count(Key(oldest, 64), t0) != 0 {
		t.Errorf("eviction order wrong: newest %d oldest %d", tr.Count(Key(newest, 64), t0), tr.Count(Key(oldest, 64), t0))
	}
	// Entries whose failures left the window are dropped.
	a := netip.MustParseAddr("192.0.2.1")
	tr.Add(Key(a, 64), a, 0, 0, t0.Add(2*time.Hour))
	if tr.Len() != 1 {
		t.Errorf("after the window: len %d, want 1", tr.Len())
	}
}

func TestEngineForgetAndConcurrentStats(t *testing.T) {
	e, err := NewEngine([]Jail{{Name: "sshd", Filter: sshdFilter(t, ""), MaxRetry: 3, FindTime: time.Hour, BanTime: time.Hour}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			e.Stats()
			e.Forget("sshd", netip.MustParsePrefix("198.51.100.200/32"))
		}
	}()
	for i := 0; i < 200; i++ {
		e.Handle(entry(time.Duration(i)*time.Second, "Failed password for root from 203.0.113.%d port %d ssh2", i%100, i))
	}
	<-done
	e.Handle(entry(time.Hour/2, "Failed password for root from 198.51.100.1 port 1 ssh2"))
	e.Handle(entry(time.Hour/2, "Failed password for root from 198.51.100.1 port 2 ssh2"))
	e.Forget("sshd", netip.MustParsePrefix("198.51.100.0/24"))
	if ds := e.Handle(entry(time.Hour/2, "Failed password for root from 198.51.100.1 port 3 ssh2")); len(ds) != 0 {
		t.Errorf("after Forget: banned %v", prefixes(ds))
	}
}

func TestNewEngineErrors(t *testing.T) {
	f := sshdFilter(t, "")
	tests := []struct {
		name  string
		jails []Jail
		want  string
	}{
		{"no filter", []Jail{{Name: "a"}}, "jail a has no filter"},
		{"twice", []Jail{{Name: "a", Filter: f}, {Name: "a", Filter: f}}, "jail a defined twice"},
		{"bad prefix", []Jail{{Name: "a", Filter: f, IPv6Prefix: 129}}, "ipv6_prefix 129"},
		{"bad bantime", []Jail{{Name: "a", Filter: f, BanTime: -5}}, "bantime"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewEngine(tc.jails, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
	e, err := NewEngine([]Jail{{Name: "a", Filter: f}, {Name: "b", Filter: f, Units: []string{"sshd", "custom.socket"}}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.Units(), ","); got != "custom.socket,ssh.service,sshd.service" {
		t.Errorf("units %s", got)
	}
}

// TestEngineAdopt: a reloaded engine takes over the counts of the jails it
// shares with the old one — the third failure after a reload bans, the
// totals carry on, a lowered maxretry applies to the carried count —, a
// jail whose ipv6_prefix changed starts afresh, and a new jail starts empty.
func TestEngineAdopt(t *testing.T) {
	jail := func(name string, maxRetry, v6 int) Jail {
		return Jail{Name: name, Filter: sshdFilter(t, ""), MaxRetry: maxRetry, FindTime: 10 * time.Minute, BanTime: time.Hour, IPv6Prefix: v6}
	}
	mk := func(js ...Jail) *Engine {
		e, err := NewEngine(js, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	fail := func(e *Engine, at time.Duration, addr string, port int) []Decision {
		return e.Handle(entry(at, "Failed password for root from %s port %d ssh2", addr, port))
	}

	old := mk(jail("sshd", 3, 64))
	fail(old, 0, "203.0.113.7", 1)
	fail(old, time.Second, "203.0.113.7", 2)
	fail(old, 2*time.Second, "2001:db8::7", 3)
	re := mk(jail("sshd", 3, 64))
	re.Adopt(old)
	if st := re.Stats(); st[0].TotalFailed != 3 || st[0].CurrentlyFailed != 2 {
		t.Fatalf("stats after Adopt %+v, want total 3, 2 keys tracked", st)
	}
	if ds := fail(re, 3*time.Second, "203.0.113.7", 4); len(ds) != 1 || ds[0].Prefix != netip.MustParsePrefix("203.0.113.7/32") {
		t.Fatalf("third failure after a reload: %+v, want a ban of 203.0.113.7", ds)
	}

	// maxretry lowered to 2 on reload: the carried IPv6 failure plus one ban.
	lower := mk(jail("sshd", 2, 64), jail("web", 2, 64))
	lower.Adopt(re)
	if ds := fail(lower, 4*time.Second, "2001:db8::8", 5); len(ds) != 1 || ds[0].Prefix != netip.MustParsePrefix("2001:db8::/64") {
		t.Fatalf("after lowering maxretry: %+v, want a ban of 2001:db8::/64", ds)
	}
	// web (same filter, so it saw that failure too) is new: only its own.
	if st := lower.Stats(); st[1].Name != "web" || st[1].TotalFailed != 1 {
		t.Fatalf("a new jail carried counts: %+v, want total 1", st[1])
	}

	// ipv6_prefix changed: the keys mean something else; nothing is carried
	// but the total.
	a := mk(jail("sshd", 3, 64))
	fail(a, 0, "203.0.113.9", 1)
	fail(a, time.Second, "203.0.113.9", 2)
	b := mk(jail("sshd", 3, 128))
	b.Adopt(a)
	if st := b.Stats(); st[0].TotalFailed != 2 || st[0].CurrentlyFailed != 0 {
		t.Fatalf("stats after Adopt across an ipv6_prefix change %+v, want total 2, nothing tracked", st)
	}
	if ds := fail(b, 2*time.Second, "203.0.113.9", 3); len(ds) != 0 {
		t.Fatalf("counts carried across an ipv6_prefix change: %+v", ds)
	}
}

// TestReasonUserBounded: a ban reason quotes at most MaxReasonUser bytes
// of the attempted user name, cut at a character boundary.
func TestReasonUserBounded(t *testing.T) {
	long := strings.Repeat("a", MaxReasonUser-1) + "é" + strings.Repeat("b", 500)
	if got := ReasonUser(long); got != strings.Repeat("a", MaxReasonUser-1)+"…" {
		t.Fatalf("ReasonUser = %q", got)
	}
	if got := ReasonUser("root"); got != "root" {
		t.Fatalf("ReasonUser(root) = %q", got)
	}
	e, err := NewEngine([]Jail{{Name: "sshd", Filter: sshdFilter(t, ""), MaxRetry: 2, FindTime: 10 * time.Minute, BanTime: time.Hour}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ds []Decision
	for i := range 2 {
		ds = append(ds, e.Handle(entry(time.Duration(i)*time.Second, "Failed password for invalid user %s from 203.0.113.9 port 4711 ssh2", long))...)
	}
	if len(ds) != 1 || !strings.HasSuffix(ds[0].Reason, `last for user "`+strings.Repeat("a", MaxReasonUser-1)+`…"`) {
		t.Fatalf("decisions %+v: want one whose reason quotes the cut name", ds)
	}
}
