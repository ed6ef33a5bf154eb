package firewall

import (
	"encoding/binary"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"golang.org/x/sys/unix"
)

func TestBanTally(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	b := func(p string, ttl time.Duration) Ban {
		bn := Ban{Jail: "ssh", Prefix: netip.MustParsePrefix(p)}
		if ttl > 0 {
			bn.Expires = now.Add(ttl)
		}
		return bn
	}
	tl := newBanTally()
	tl.reset([]Ban{b("203.0.113.1/32", time.Minute), b("203.0.113.2/32", 0), b("203.0.113.3/32", time.Second), b("2001:db8::/64", time.Hour)}, now)
	if w := tl.want("jk-ssh-4", now); w != 2 {
		t.Errorf("want(jk-ssh-4) = %d, want 2 (the ban expiring within the slack does not count)", w)
	}
	if w := tl.want("jk-ssh-n6", now); w != 1 {
		t.Errorf("want(jk-ssh-n6) = %d, want 1", w)
	}
	tl.add(b("203.0.113.4/32", 10*time.Second), 1)
	tl.add(b("203.0.113.1/32", time.Minute), -1)
	tl.add(b("203.0.113.9/32", 2*time.Minute), -1) // never counted: no effect
	if w := tl.want("jk-ssh-4", now); w != 2 {
		t.Errorf("after add and remove: want = %d, want 2", w)
	}
	if w := tl.want("jk-ssh-4", now.Add(8*time.Second+time.Millisecond)); w != 1 {
		t.Errorf("8 s on: want = %d, want 1 (the permanent ban)", w)
	}
	if w := tl.want("jk-ssh-n6", now.Add(2*time.Hour)); w != 0 {
		t.Errorf("2 h on: want(jk-ssh-n6) = %d, want 0", w)
	}
	tl.add(b("203.0.113.2/32", 0), -1)
	tl.add(b("203.0.113.2/32", 0), -1)
	if w := tl.want("jk-ssh-4", now.Add(2*time.Hour)); w != 0 {
		t.Errorf("permanent removed twice: want = %d, want 0", w)
	}
}

// nftMsg builds an nftables notification's payload: nfgenmsg, then
// attributes.
func nftMsg(family byte, attrs ...[]byte) []byte {
	b := []byte{family, 0, 0, 0}
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

func nlAttr(typ uint16, val []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(val)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestNotificationParsing(t *testing.T) {
	ours := []nftTableID{{unix.NFPROTO_INET, "jailkeeper"}}
	cases := []struct {
		data []byte
		want bool
	}{
		{nftMsg(unix.NFPROTO_INET, nlAttr(1, []byte("jailkeeper\x00"))), true},
		{nftMsg(unix.NFPROTO_INET, nlAttr(1, []byte("filter\x00"))), false},
		{nftMsg(unix.NFPROTO_IPV4, nlAttr(1, []byte("jailkeeper\x00"))), false},
		{nftMsg(unix.NFPROTO_INET, nlAttr(2, []byte("x\x00"))), true}, // unreadable: counts
	}
	for i, c := range cases {
		if got := touches(c.data, ours); got != c.want {
			t.Errorf("case %d: touches = %v, want %v", i, got, c.want)
		}
	}
	gen := nftMsg(0, nlAttr(unix.NFTA_GEN_ID, binary.BigEndian.AppendUint32(nil, 7)),
		nlAttr(unix.NFTA_GEN_PROC_PID, binary.BigEndian.AppendUint32(nil, 4242)),
		nlAttr(unix.NFTA_GEN_PROC_NAME, []byte("nft\x00")))
	if pid, comm := genInfo(gen[4:]); pid != 4242 || comm != "nft" {
		t.Errorf("genInfo = %d, %q, want 4242, nft", pid, comm)
	}
	genOf := func(tid int, comm string) []byte {
		return nftMsg(0, nlAttr(unix.NFTA_GEN_PROC_PID, binary.BigEndian.AppendUint32(nil, uint32(tid))),
			nlAttr(unix.NFTA_GEN_PROC_NAME, []byte(comm+"\x00")))[4:]
	}
	top := process{pid: os.Getpid()}
	if !top.committed(genOf(unix.Gettid(), "x")) {
		t.Error("a commit by one of our threads is not ours")
	}
	if top.committed(genOf(1, "jailkeeper")) {
		t.Error("a commit by PID 1 is ours")
	}
	nested := process{pid: 7, nested: true, comm: "jailkeeper"}
	if !nested.committed(genOf(123456, "jailkeeper")) || nested.committed(genOf(123456, "nft")) {
		t.Error("in a nested PID namespace, commits are not told apart by name")
	}
}

// checkStub is a watchable whose cheap check answers what it is told.
type checkStub struct{ short bool }

func (c *checkStub) watchSpec() (string, []nftTableID, bool) { return "", nil, false }
func (c *checkStub) quickCheck(time.Time) (bool, error)      { return c.short, nil }

// TestWatcherCheck: a notified change alarms once; a second one within
// 100 ms is held back and delivered by a wake later; cheap-check alarms
// back off.
func TestWatcherCheck(t *testing.T) {
	stub := &checkStub{}
	clock := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	w := &Watcher{b: stub, wake: make(chan struct{}, 1), quit: make(chan struct{}), now: func() time.Time { return clock }}
	defer w.Close()
	if w.Check() {
		t.Fatal("Check with nothing notified = true")
	}
	notify := func() {
		w.mu.Lock()
		w.notified = true
		w.mu.Unlock()
	}
	notify()
	if !w.Check() {
		t.Fatal("Check after a notification = false")
	}
	if w.Check() {
		t.Fatal("second Check = true: the notification counted twice")
	}
	notify()
	clock = clock.Add(50 * time.Millisecond)
	if w.Check() {
		t.Fatal("Check 50 ms after an alarm = true, want it held back")
	}
	select {
	case <-w.Wake():
	case <-time.After(time.Second):
		t.Fatal("no wake for the held-back notification")
	}
	clock = clock.Add(60 * time.Millisecond)
	if !w.Check() {
		t.Fatal("Check of the held-back notification after 110 ms = false")
	}

	stub.short = true
	var alarms []time.Duration
	start := clock
	for i := 0; i < 200; i++ {
		clock = clock.Add(50 * time.Millisecond)
		if w.Check() {
			alarms = append(alarms, clock.Sub(start))
		}
	}
	// 10 s of a check that keeps failing: back-off 200 ms, 400 ms, …, 6.4 s.
	if len(alarms) < 4 || len(alarms) > 8 {
		t.Errorf("alarms of a failing cheap check over 10 s at %v, want a back-off", alarms)
	}
	stub.short = false
	clock = clock.Add(10 * time.Second)
	w.Check()
	if w.alarms != 0 {
		t.Errorf("alarms = %d after a passing check, want 0", w.alarms)
	}

	// A Verify that took 120 ms spaces alarms by 240 ms; one that took a
	// second, by 300 ms.
	for _, c := range []struct{ took, gap time.Duration }{{120 * time.Millisecond, 240 * time.Millisecond}, {time.Second, 300 * time.Millisecond}} {
		clock = clock.Add(time.Second)
		notify()
		if !w.Check() {
			t.Fatal("Check after a notification = false")
		}
		w.Verified(c.took)
		notify()
		clock = clock.Add(c.gap - 20*time.Millisecond)
		if w.Check() {
			t.Fatalf("alarm %v after one whose Verify took %v", c.gap-20*time.Millisecond, c.took)
		}
		clock = clock.Add(30 * time.Millisecond)
		if !w.Check() {
			t.Fatalf("no alarm %v after one whose Verify took %v", c.gap+10*time.Millisecond, c.took)
		}
	}
}

// TestWatcherKernel: in a namespace, the backend's own changes never
// alarm; each kind of drift another program makes alarms within a second,
// and Verify then finds it.
func TestWatcherKernel(t *testing.T) {
	for _, kind := range []string{"iptables", "nftables"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			watcherKernel(t, kind)
		})
	}
}

// TestWatcherLegacy is TestWatcherKernel's iptables case with
// iptables-legacy, whose rule changes nobody notifies: the backend's cheap
// check reads table filter's header instead.
func TestWatcherLegacy(t *testing.T) {
	testbed.Require(t, "iptables-legacy", "ip6tables-legacy")
	dir := t.TempDir()
	for _, c := range []string{"iptables", "ip6tables"} {
		legacy, err := exec.LookPath(c + "-legacy")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(legacy, filepath.Join(dir, c)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	if out, _ := exec.Command("iptables", "--version").Output(); !strings.Contains(string(out), "legacy") {
		t.Fatalf("iptables --version = %q, want legacy", out)
	}
	watcherKernel(t, "iptables")
}

// watcherKernel: in a namespace, the backend's own changes never alarm;
// each kind of drift another program makes alarms within a second, and
// Verify then finds it; alarms after the repair die down and find nothing.
func watcherKernel(t *testing.T, kind string) {
	e := newKernelEnv(t, kind)
	b := e.backend(t)
	defer b.Close()
	l := Layout{Jails: []JailRules{sshJail}}
	exp := time.Now().Add(time.Hour)
	bans := []Ban{{Jail: "ssh", Prefix: netip.MustParsePrefix("198.51.100.2/32"), Expires: exp}}
	if err := b.Setup(l, bans); err != nil {
		t.Fatal(err)
	}
	w, err := Watch(b)
	if err != nil || w == nil {
		t.Fatalf("Watch = %v, %v", w, err)
	}
	defer w.Close()
	// alarmWithin calls Check at every wake for d and reports
	// whether one alarmed, and when.
	alarmWithin := func(d time.Duration) (time.Duration, bool) {
		start := time.Now()
		timeout := time.After(d)
		for {
			select {
			case <-w.Wake():
				if w.Check() {
					return time.Since(start), true
				}
			case <-timeout:
				return 0, false
			}
		}
	}
	// Our own changes: adds (nftables: one batch large enough to stop
	// the notifications while it runs), removes, a Verify.
	more := make([]Ban, 100+nftHushMin)
	for i := range more {
		more[i] = Ban{Jail: "ssh", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 7, byte(i >> 8), byte(i)}), 32), Expires: exp}
	}
	if err := b.Add(more); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(more[:50]); err != nil {
		t.Fatal(err)
	}
	bans = append(bans, more[50:]...)
	if _, err := b.Verify(l, bans); err != nil {
		t.Fatal(err)
	}
	if at, ok := alarmWithin(600 * time.Millisecond); ok {
		t.Fatalf("alarm %v after the backend's own changes", at)
	}
	for _, d := range []Drift{DriftFlushChain, DriftRuleAbove, DriftLoseBans, DriftFlushRuleset} {
		start := time.Now()
		if !e.drift(t, d) {
			continue
		}
		// Drifts of several commands: let every notification
		// arrive before the first Check.
		time.Sleep(50 * time.Millisecond)
		_, ok := alarmWithin(time.Second)
		at := time.Since(start)
		if !ok {
			t.Fatalf("%s: no alarm within a second", d)
		}
		found, err := b.Verify(l, bans)
		if err != nil || len(found) == 0 {
			t.Fatalf("%s: Verify after the alarm found %q, %v", d, found, err)
		}
		t.Logf("%s: alarm %v after the drift command started; Verify found %q", d, at.Round(time.Millisecond), found)
		{
			// iptables: its repair runs the iptables command, once per
			// rule: changes by another process, each checked again (on a
			// loaded machine they come over more than one gap).
			// nftables: the drift's own notifications (a flushed ruleset
			// of thousands of elements) may still be queued when the
			// first alarm is answered by the repair. Either way the
			// alarms must die down, and each Verify must find nothing.
			quiet := false
			for i := 0; i < 10 && !quiet; i++ {
				_, alarmed := alarmWithin(300 * time.Millisecond)
				quiet = !alarmed
				if alarmed {
					if found, err := b.Verify(l, bans); err != nil || len(found) > 0 {
						t.Fatalf("%s: Verify after the repair's own alarm found %q, %v", d, found, err)
					}
				}
			}
			if !quiet {
				t.Fatalf("%s: alarms go on after the repair", d)
			}
		}
	}
}

// BenchmarkQuickCheck measures the iptables backend's cheap check (one
// ipset header request per set of the layout: six for one jail), run
// every TickEvery.
func BenchmarkQuickCheck(b *testing.B) {
	testbed.Require(b, "ip", "iptables", "ipset")
	h := testbed.NewHosts(b)
	be, err := New("iptables", Options{NetNS: h.Srv})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	l := Layout{Jails: []JailRules{sshJail}, Whitelist: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	var bans []Ban
	for i := 0; i < 1000; i++ {
		bans = append(bans, Ban{Jail: "ssh", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32), Expires: time.Now().Add(time.Hour)})
	}
	if err := be.Setup(l, bans); err != nil {
		b.Fatal(err)
	}
	ipt := be.(*ipt)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if short, err := ipt.quickCheck(time.Now()); short || err != nil {
			b.Fatalf("quickCheck = %v, %v", short, err)
		}
	}
}

// BenchmarkAddWatched is BenchmarkAdd with a Watcher listening: with a
// listener, the kernel builds a notification for each element the backend
// adds, and the Watcher reads them.
func BenchmarkAddWatched(b *testing.B) {
	for _, kind := range []string{"iptables", "nftables"} {
		for _, watched := range []bool{false, true} {
			name := kind
			if watched {
				name += "+watcher"
			}
			b.Run(name, func(b *testing.B) {
				testbed.Require(b, "ip", "iptables", "ipset", "nft")
				h := testbed.NewHosts(b)
				be, err := New(kind, Options{NetNS: h.Srv})
				if err != nil {
					b.Fatal(err)
				}
				defer be.Close()
				if err := be.Setup(Layout{Jails: []JailRules{sshJail}}, nil); err != nil {
					b.Fatal(err)
				}
				if watched {
					w, err := Watch(be)
					if err != nil {
						b.Fatal(err)
					}
					defer w.Close()
				}
				exp := time.Now().Add(time.Hour)
				batch := make([]Ban, 10_000)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					for k := range batch {
						v := uint32(0x0a000001 + i*len(batch) + k)
						a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
						batch[k] = Ban{Jail: "ssh", Prefix: netip.PrefixFrom(a, 32), Expires: exp}
					}
					b.StartTimer()
					if err := be.Add(batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "bans/s")
			})
		}
	}
}

// TestWatcherNestedPIDNS runs TestWatcherKernel's nftables case in a PID
// namespace of its own, as in a container: the kernel names committing
// threads by their IDs in the initial namespace, so the Watcher tells its
// own commits by the thread's name there.
func TestWatcherNestedPIDNS(t *testing.T) {
	testbed.Require(t, "unshare", "ip", "iptables", "ip6tables", "ipset", "nft")
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", os.Args[0],
		"-test.run", "^TestWatcherKernel$/^nftables$", "-test.v", "-test.count=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestWatcherKernel/nftables") {
		t.Fatalf("TestWatcherKernel/nftables in a nested PID namespace: %v\n%s", err, out)
	}
}

// TestNotifyHush: while the nftables backend's large batch has stopped
// the Watcher's notifications, a transaction by another program (in the
// backend's table or any other) still alarms, found by the generation
// count; so does a batch that failed; the backend's own batch does not.
func TestNotifyHush(t *testing.T) {
	e := newKernelEnv(t, "nftables")
	b := e.backend(t)
	defer b.Close()
	if err := b.Setup(Layout{Jails: []JailRules{sshJail}}, nil); err != nil {
		t.Fatal(err)
	}
	w, err := Watch(b)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			w.Close()
		}
	}()
	raw := b.(*nft).raw
	h := raw.hush
	if h == nil {
		t.Fatal("the Watcher did not attach its hush to the backend")
	}
	alarm := func() bool {
		t.Helper()
		timeout := time.After(time.Second)
		for {
			select {
			case <-w.Wake():
				if w.Check() {
					return true
				}
			case <-timeout:
				return false
			}
		}
	}
	own := func(commits *int) {
		t.Helper()
		err := raw.batchTx(unix.NFT_MSG_NEWSETELEM, "ssh-4", 3, func(i int) nftRawElem {
			return nftRawElem{addr: netip.AddrFrom4([4]byte{10, 8, 0, byte(i)}), timeout: 60_000}
		}, commits)
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name    string
		foreign string // a shell line in the server namespace, run while hushed
		fail    bool
		want    bool
	}{
		{"own batch only", "", false, false},
		{"element added to our set", "nft add element inet jailkeeper ssh-4 '{ 10.9.9.9 }'", false, true},
		{"another table", "nft add table ip jk-other", false, true},
		{"a batch failed", "", true, true},
	} {
		if err := h.begin(raw.genID, 0); err != nil {
			t.Fatal(err)
		}
		commits := 0
		own(&commits)
		if c.foreign != "" {
			e.sh(t, c.foreign)
		}
		own(&commits)
		h.end(raw.genID, commits, !c.fail)
		if got := alarm(); got != c.want {
			t.Errorf("%s: alarm = %v, want %v", c.name, got, c.want)
		}
		// Which set changed is not known: the next Verify fills
		// every large set again.
		if nb := b.(*nft); nb.changedAll != c.want {
			t.Errorf("%s: every set marked changed = %v, want %v", c.name, nb.changedAll, c.want)
		}
		b.(*nft).changedAll = false
	}
	// A large Add stops and restarts notifications by itself, silently.
	bans := make([]Ban, 2*nftHushMin)
	for i := range bans {
		bans[i] = Ban{Jail: "ssh", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 6, byte(i >> 8), byte(i)}), 32), Expires: time.Now().Add(time.Hour)}
	}
	if err := b.Add(bans); err != nil {
		t.Fatal(err)
	}
	if alarm() {
		t.Error("alarm after the backend's own large Add")
	}
	if raw.hush != h {
		t.Error("the hush is not back in place after a large Add")
	}
	// And the Watcher still hears what others do afterwards.
	e.sh(t, "nft add element inet jailkeeper ssh-4 '{ 10.9.9.10 }'")
	if !alarm() {
		t.Error("no alarm for a foreign change after the large Add")
	}
	w.Close()
	closed = true
	if raw.hush != nil {
		t.Error("the hush stays attached after the Watcher's Close")
	}
}

// TestWatcherLargeSetElementDeleted: another program deletes one element
// of a set too large for Verify to read back (it samples such sets); the
// Watcher names the set, and the Verify after its alarm fills that set
// again in full: the address is refused again, whatever the sample.
func TestWatcherLargeSetElementDeleted(t *testing.T) {
	t.Parallel()
	e := newKernelEnv(t, "nftables")
	b := e.backend(t)
	defer b.Close()
	l := Layout{Jails: []JailRules{sshJail}}
	exp := time.Now().Add(time.Hour)
	bans := make([]Ban, nftListMax+5_000)
	for i := range bans {
		bans[i] = Ban{Jail: "ssh", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 5, byte(i >> 8), byte(i)}), 32), Expires: exp}
	}
	bans[len(bans)-1].Prefix = netip.PrefixFrom(atk4, 32)
	if err := b.Setup(l, bans); err != nil {
		t.Fatal(err)
	}
	if v := e.probe(t, atk4, portJail); v != VerdictReject {
		t.Fatalf("banned %v: probe %v, want %v", atk4, v, VerdictReject)
	}
	w, err := Watch(b)
	if err != nil || w == nil {
		t.Fatalf("Watch = %v, %v", w, err)
	}
	defer w.Close()
	start := time.Now()
	e.sh(t, "nft delete element inet jailkeeper ssh-4 '{ "+atk4.String()+" }'")
	if v := e.probe(t, atk4, portJail); v != VerdictAccept {
		t.Fatalf("after the delete: probe %v, want %v", v, VerdictAccept)
	}
	alarmed := false
	for timeout := time.After(3 * time.Second); !alarmed; {
		select {
		case <-w.Wake():
			alarmed = w.Check()
		case <-timeout:
			t.Fatal("no alarm within 3 s of the delete")
		}
	}
	vstart := time.Now()
	found, err := b.Verify(l, bans)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("alarm and repair %v after the delete (Verify %v); found %q", time.Since(start).Round(time.Millisecond), time.Since(vstart).Round(time.Millisecond), found)
	if !slices.ContainsFunc(found, func(s string) bool { return strings.Contains(s, "ssh-4") }) {
		t.Errorf("Verify found %q, want set ssh-4 named", found)
	}
	if v := e.probe(t, atk4, portJail); v != VerdictReject {
		t.Errorf("after the repair: probe %v, want %v", v, VerdictReject)
	}
	// The repair was owed once: the next Verify samples again, finds
	// nothing.
	if found, err := b.Verify(l, bans); err != nil || len(found) > 0 {
		t.Errorf("second Verify found %q, %v", found, err)
	}
}
