package jails

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// memState is a store of the engine's state records, as the ban table
// keeps them.
type memState map[string][]byte

// take applies what TakeState hands out: changes, or everything.
func (m memState) take(e *Engine) (puts, dels int, full bool) {
	type rec struct{ k, v []byte }
	var recs []rec
	full = e.TakeState(false, func(k, v []byte) { recs = append(recs, rec{bytes.Clone(k), bytes.Clone(v)}) })
	if full {
		clear(m)
	}
	for _, r := range recs {
		if r.v == nil {
			delete(m, string(r.k))
			dels++
			continue
		}
		m[string(r.k)] = r.v
		puts++
	}
	return puts, dels, full
}

func (m memState) each(fn func(k, v []byte)) error {
	for k, v := range m {
		fn([]byte(k), v)
	}
	return nil
}

func stateJail(t testing.TB, name string, maxRetry, v6 int) Jail {
	return Jail{Name: name, Filter: sshdFilter(t, ""), MaxRetry: maxRetry, FindTime: 10 * time.Minute, BanTime: time.Hour, IPv6Prefix: v6}
}

func newTestEngine(t testing.TB, js ...Jail) *Engine {
	t.Helper()
	e, err := NewEngine(js, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestStateSurvivesRestart: with maxretry 2, one failure, a restart (a
// new engine restored from the saved state), one failure → banned; the
// total is kept, and the closing line of the connection counted before
// the restart does not count again.
func TestStateSurvivesRestart(t *testing.T) {
	store := memState{}
	a := newTestEngine(t, stateJail(t, "sshd", 2, 64))
	if n, err := a.RestoreState(store.each, t0); err != nil || n != 0 {
		t.Fatalf("RestoreState of nothing = %d, %v", n, err)
	}
	a.Handle(entry(0, "Failed password for root from 203.0.113.7 port 4711 ssh2"))
	a.Handle(entry(time.Second, "Failed password for root from 2001:db8::7 port 4712 ssh2"))
	if puts, dels, full := store.take(a); puts != 3 || dels != 0 || full {
		t.Fatalf("first TakeState: %d puts, %d deletes, full %v; want 3 (two keys, the total), 0, false", puts, dels, full)
	}
	if puts, dels, _ := store.take(a); puts+dels != 0 {
		t.Fatalf("TakeState without changes: %d puts, %d deletes", puts, dels)
	}

	b := newTestEngine(t, stateJail(t, "sshd", 2, 64))
	n, err := b.RestoreState(store.each, t0.Add(time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("RestoreState = %d, %v; want 2 keys", n, err)
	}
	if st := b.Stats(); st[0].TotalFailed != 2 || st[0].CurrentlyFailed != 2 {
		t.Fatalf("stats after restore %+v, want total 2, 2 keys", st)
	}
	// The closing line of the connection counted before the restart.
	if ds := b.Handle(entry(2*time.Second, "Connection closed by authenticating user root 203.0.113.7 port 4711 [preauth]")); len(ds) != 0 {
		t.Fatalf("the closing line of a counted connection decided %v", prefixes(ds))
	}
	ds := b.Handle(entry(3*time.Second, "Failed password for root from 203.0.113.7 port 4800 ssh2"))
	if len(ds) != 1 || ds[0].Prefix != netip.MustParsePrefix("203.0.113.7/32") {
		t.Fatalf("second failure after the restart decided %v, want 203.0.113.7/32", prefixes(ds))
	}
	if st := b.Stats(); st[0].TotalFailed != 3 {
		t.Fatalf("total after the restart %+v, want 3", st)
	}
	// The ban reset the key: its record says so, and a third engine does
	// not ban at the next failure.
	store.take(b)
	c := newTestEngine(t, stateJail(t, "sshd", 2, 64))
	if _, err := c.RestoreState(store.each, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ds := c.Handle(entry(4*time.Second, "Failed password for root from 203.0.113.7 port 4900 ssh2")); len(ds) != 0 {
		t.Fatalf("a failure after the ban and a restart decided %v", prefixes(ds))
	}
	if ds := c.Handle(entry(5*time.Second, "Failed password for root from 2001:db8::7:1 port 5000 ssh2")); len(ds) != 1 {
		t.Fatalf("the restored IPv6 /64 did not reach maxretry: %v", prefixes(ds))
	}
}

// TestStateRestoreDrops: records of removed jails, of another
// ipv6_prefix, older than findtime or undecodable are not restored; a
// later record of a key replaces an earlier one, a nil one deletes it; as
// most records were dropped, the next TakeState hands out everything
// there is.
func TestStateRestoreDrops(t *testing.T) {
	store := memState{}
	a := newTestEngine(t, stateJail(t, "sshd", 3, 64), stateJail(t, "old", 3, 64))
	a.RestoreState(store.each, t0)
	a.Handle(entry(0, "Failed password for root from 203.0.113.7 port 1 ssh2"))
	a.Handle(entry(9*time.Minute, "Failed password for root from 203.0.113.8 port 2 ssh2"))
	a.Handle(entry(9*time.Minute, "Failed password for root from 2001:db8::8 port 3 ssh2"))
	store.take(a)
	store[string(trackKey("sshd", netip.MustParsePrefix("198.51.100.9/32")))] = []byte{9, 9, 9}

	// 11 minutes on: 203.0.113.7's failure left findtime; "old" is gone;
	// ipv6_prefix is now 56, so the /64 key means nothing.
	b := newTestEngine(t, stateJail(t, "sshd", 3, 56))
	n, err := b.RestoreState(store.each, t0.Add(11*time.Minute))
	if err == nil || !strings.Contains(err.Error(), "198.51.100.9/32") {
		t.Fatalf("RestoreState error %v, want the bad record named", err)
	}
	if n != 1 {
		t.Fatalf("restored %d keys, want 1 (203.0.113.8)", n)
	}
	if st := b.Stats(); st[0].TotalFailed != 3 || st[0].CurrentlyFailed != 1 {
		t.Fatalf("stats %+v, want total 3, 1 key", st)
	}
	if _, _, full := store.take(b); !full {
		t.Fatal("TakeState after a restore that dropped most records was not full")
	}
	want := []string{"fsshd\x00203.0.113.8/32", "tsshd"}
	if got := keysOf(store); !slices.Equal(got, want) {
		t.Fatalf("records after the full TakeState: %q, want %q", got, want)
	}

	// The log's order: a later record replaces, a nil one deletes.
	k := trackKey("sshd", netip.MustParsePrefix("203.0.113.8/32"))
	log := func(fn func(k, v []byte)) error {
		fn(k, store[string(k)])
		fn(k, nil)
		fn([]byte("tsshd"), []byte{5})
		fn([]byte("tsshd"), []byte{6})
		return nil
	}
	c := newTestEngine(t, stateJail(t, "sshd", 3, 64))
	if n, err := c.RestoreState(log, t0.Add(11*time.Minute)); err != nil || n != 0 {
		t.Fatalf("RestoreState of a log deleting its only key = %d, %v", n, err)
	}
	if st := c.Stats(); st[0].TotalFailed != 6 || st[0].CurrentlyFailed != 0 {
		t.Fatalf("stats %+v, want total 6 (the later record), no key", st)
	}
}

// TestStateFollowsAdopt: a reload's engine carries the saved state: the
// records of a removed jail, and of a tracker not carried over, are
// deleted (a full TakeState); when everything is carried, only changes
// are handed out.
func TestStateFollowsAdopt(t *testing.T) {
	store := memState{}
	a := newTestEngine(t, stateJail(t, "sshd", 3, 64), stateJail(t, "gone", 3, 64))
	a.RestoreState(store.each, t0)
	a.Handle(entry(0, "Failed password for root from 203.0.113.7 port 1 ssh2"))
	store.take(a)
	a.Handle(entry(time.Second, "Failed password for root from 203.0.113.8 port 2 ssh2"))

	b := newTestEngine(t, stateJail(t, "sshd", 3, 64))
	b.Adopt(a)
	store.take(b)
	want := []string{"fsshd\x00203.0.113.7/32", "fsshd\x00203.0.113.8/32", "tsshd"}
	if got := keysOf(store); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("records after a reload: %q, want %q", got, want)
	}
	// The same jails again: only changes are handed out.
	same := newTestEngine(t, stateJail(t, "sshd", 4, 64))
	same.Adopt(b)
	same.Handle(entry(2*time.Second, "Failed password for root from 203.0.113.9 port 3 ssh2"))
	if puts, _, full := store.take(same); full || puts != 2 {
		t.Fatalf("TakeState after a reload keeping everything: %d puts, full %v; want 2 (the key, the total), not full", puts, full)
	}
	c := newTestEngine(t, stateJail(t, "sshd", 3, 128))
	c.Adopt(same)
	store.take(c)
	if got := keysOf(store); strings.Join(got, ",") != "tsshd" {
		t.Fatalf("records after an ipv6_prefix change: %q, want only the total", got)
	}
}

func keysOf(m memState) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// BenchmarkTakeState measures what the ban path pays per journal batch
// for the saved counts: TakeState after 1024 failures of distinct
// addresses (encoding their 1024 records; the failures are not timed).
func BenchmarkTakeState(b *testing.B) {
	e := newTestEngine(b, stateJail(b, "sshd", 5, 64))
	e.RestoreState(memState{}.each, t0)
	msgs := make([]string, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for k := range msgs {
			v := uint32(0xc6120000 + (i*len(msgs)+k)%(1<<17))
			msgs[k] = "Failed password for root from " + netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String() + " port 22 ssh2"
		}
		for k, m := range msgs {
			e.Handle(entry(time.Duration(i*len(msgs)+k)*time.Millisecond, "%s", m))
		}
		b.StartTimer()
		n := 0
		e.TakeState(false, func(k, v []byte) { n += len(k) + len(v) })
	}
}

// FuzzRestoreState: whatever a (corrupt) state file holds, RestoreState
// neither panics nor restores a key outside the tracker's rules, and the
// engine keeps working.
func FuzzRestoreState(f *testing.F) {
	store := memState{}
	e := newTestEngine(f, stateJail(f, "sshd", 3, 64))
	e.RestoreState(store.each, t0)
	e.Handle(entry(0, "Failed password for root from 203.0.113.7 port 1 ssh2"))
	e.Handle(entry(time.Second, "Failed password for root from 2001:db8::7 port 2 ssh2"))
	store.take(e)
	for k, v := range store {
		f.Add([]byte(k), v)
	}
	f.Add([]byte("fsshd\x00300.1.2.3/32"), []byte{1})
	f.Add([]byte("t"), []byte(nil))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		e := newTestEngine(t, stateJail(t, "sshd", 3, 64))
		n, _ := e.RestoreState(func(fn func(k, v []byte)) error {
			fn(k, v)
			return nil
		}, t0.Add(time.Minute))
		if n > 1 {
			t.Fatalf("one record restored %d keys", n)
		}
		e.Handle(entry(2*time.Second, "Failed password for root from 203.0.113.7 port 3 ssh2"))
		e.TakeState(true, func(k, v []byte) {})
		if st := e.Stats(); st[0].CurrentlyFailed > 2 {
			t.Fatalf("stats %+v after one record and one failure", st)
		}
	})
}

// TestStateDistributed: a distributed attack spread across a restart is
// caught as if none had happened: 9 addresses fail twice against root,
// the engine restarts from its saved state, and the 10th address (the
// min_addresses-th) failing twice bans all ten.
func TestStateDistributed(t *testing.T) {
	jail := Jail{Name: "sshd", Filter: sshdFilter(t, ""), MaxRetry: 5, FindTime: time.Hour, BanTime: time.Hour,
		Distributed: Distributed{Window: time.Hour, MinAddresses: 10, MaxRetry: 2}}
	store := memState{}
	a := newTestEngine(t, jail)
	a.RestoreState(store.each, t0)
	port := 1000
	fail := func(e *Engine, i int) []Decision {
		port++
		return e.Handle(entry(time.Duration(port)*time.Second, "Failed password for root from 203.0.113.%d port %d ssh2", i, port))
	}
	for i := 1; i <= 9; i++ {
		for range 2 {
			if ds := fail(a, i); len(ds) != 0 {
				t.Fatalf("banned %v before min_addresses", prefixes(ds))
			}
		}
	}
	store.take(a)
	b := newTestEngine(t, jail)
	if _, err := b.RestoreState(store.each, t0.Add(time.Hour/2)); err != nil {
		t.Fatal(err)
	}
	ds := append(fail(b, 10), fail(b, 10)...)
	if len(ds) != 10 {
		t.Fatalf("the 10th address's two failures after a restart banned %v, want all 10", prefixes(ds))
	}
	// The bans reset the counts, and that is saved too.
	store.take(b)
	c := newTestEngine(t, jail)
	c.RestoreState(store.each, t0.Add(time.Hour/2))
	if ds := fail(c, 3); len(ds) != 0 {
		t.Fatalf("a banned address's next failure after another restart banned %v", prefixes(ds))
	}
}

// BenchmarkEngineHandleRecording is BenchmarkEngineHandle with the state
// recorded for TakeState, as in the daemon, taken every 1024 entries.
func BenchmarkEngineHandleRecording(b *testing.B) {
	e, err := NewEngine([]Jail{{Name: "sshd", Filter: sshdFilter(b, ""), MaxRetry: 5, FindTime: 10 * time.Minute, BanTime: time.Hour}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	e.RestoreState(memState{}.each, t0)
	lines := sshdMix()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Handle(entry(time.Duration(i), "%s", lines[i%len(lines)]))
		if i%1024 == 1023 {
			e.TakeState(false, func(k, v []byte) {})
		}
	}
}

// TestSweepState: a sweep in parts hands out what a full TakeState does
// (tracked keys of two jails, distributed counts, totals), with the
// current values of records changed during it and without those dropped
// during it.
func TestSweepState(t *testing.T) {
	dist := Jail{Name: "sshd", Filter: sshdFilter(t, ""), MaxRetry: 5, FindTime: time.Hour, BanTime: time.Hour,
		Distributed: Distributed{Window: time.Hour, MinAddresses: 1000, MaxRetry: 100}}
	e := newTestEngine(t, dist, stateJail(t, "web", 5, 64))
	e.RestoreState(memState{}.each, t0)
	port := 1000
	fail := func(i int) {
		port++
		e.Handle(entry(time.Duration(port)*time.Second, "Failed password for root from 198.51.100.%d port %d ssh2", i, port))
	}
	for i := 1; i <= 40; i++ {
		fail(i)
	}
	swept := memState{}
	put := func(k, v []byte) { swept[string(k)] = bytes.Clone(v) }
	parts := 0
	for done := false; !done; parts++ {
		done = e.SweepState(parts == 0, 7, put)
		if parts == 2 {
			// A later failure of a noted key: its current value.
			fail(30)
			e.ForgetMany("sshd", []netip.Prefix{netip.MustParsePrefix("198.51.100.39/32")})
		}
	}
	want := memState{}
	e.TakeState(true, func(k, v []byte) { want[string(k)] = bytes.Clone(v) })
	if parts < 5 {
		t.Fatalf("the sweep took %d parts of 7 for 40 keys", parts)
	}
	for k, v := range want {
		if !bytes.Equal(swept[k], v) && k[0] == recTrack {
			t.Errorf("record %q: swept %x, held %x", k, swept[k], v)
		}
	}
	for k := range swept {
		if _, ok := want[k]; !ok {
			t.Errorf("record %q swept, but no longer held", k)
		}
	}
	if len(want) < 40 {
		t.Fatalf("only %d records held", len(want))
	}
	if e.SweepState(false, 7, put) != true {
		t.Fatal("a finished sweep goes on")
	}
}

// TestStatsDuringLongHold: while a call holds the engine long (a state
// dump of a cursor write, here held inside its put), Stats answers with
// the counters as of that call's start instead of waiting for it; after
// it, with the engine's own.
func TestStatsDuringLongHold(t *testing.T) {
	e := newTestEngine(t, stateJail(t, "sshd", 5, 64))
	for i := range 3 {
		e.Handle(entry(time.Duration(i)*time.Second, "Failed password for root from 203.0.113.%d port 22 ssh2", i+1))
	}
	inPut, release := make(chan struct{}), make(chan struct{})
	dumped := make(chan struct{})
	go func() {
		defer close(dumped)
		first := true
		e.TakeState(true, func(k, v []byte) {
			if first {
				first = false
				close(inPut)
				<-release
			}
		})
	}()
	<-inPut
	got := make(chan []JailStats, 1)
	go func() { got <- e.Stats() }()
	select {
	case st := <-got:
		if len(st) != 1 || st[0].CurrentlyFailed != 3 || st[0].TotalFailed != 3 {
			t.Errorf("Stats during the dump: %+v, want 3 failing, 3 in all", st)
		}
	case <-time.After(5 * time.Second):
		t.Error("Stats waited for the dump")
	}
	close(release)
	<-dumped
	e.Handle(entry(4*time.Second, "Failed password for root from 203.0.113.%d port 22 ssh2", 9))
	if st := e.Stats(); st[0].CurrentlyFailed != 4 {
		t.Errorf("Stats after the dump: %+v, want 4 failing", st)
	}
}
