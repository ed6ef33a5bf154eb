package firewall

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// Ports the server listens on in the real-kernel runs: a jail's port and
// one no jail names.
const (
	portJail  = 2222
	portOther = 8080
)

// Addresses of the attacker namespace (testbed.NewHosts plus the
// whitelisted ones this test adds).
var (
	atk4 = netip.MustParseAddr("198.51.100.2")
	atk6 = netip.MustParseAddr("2001:db8::2")
	wl4  = netip.MustParseAddr("198.51.100.3")
	wl6  = netip.MustParseAddr("2001:db8::3")
	srv4 = netip.MustParseAddr("198.51.100.1")
	srv6 = netip.MustParseAddr("2001:db8::1")
)

// env is one place the table runs: the Fake, or a real backend acting in
// a fresh server namespace.
type env interface {
	backend(t *testing.T) Backend // a new backend bound to this env's kernel
	probe(t *testing.T, src netip.Addr, port uint16) Verdict
	now() time.Time
	advance(t *testing.T, d time.Duration)
	drift(t *testing.T, d Drift) bool // false: this drift does not apply
}

// fakeEnv runs the table against the Fake with a manual clock.
type fakeEnv struct {
	clock time.Time
	f     *Fake
}

func newFakeEnv() *fakeEnv {
	e := &fakeEnv{clock: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	e.f = &Fake{Now: func() time.Time { return e.clock }}
	return e
}

func (e *fakeEnv) backend(*testing.T) Backend { return e.f }
func (e *fakeEnv) probe(_ *testing.T, src netip.Addr, port uint16) Verdict {
	return e.f.Verdict(src, ProtoTCP, port)
}
func (e *fakeEnv) now() time.Time                        { return e.clock }
func (e *fakeEnv) advance(_ *testing.T, d time.Duration) { e.clock = e.clock.Add(d) }
func (e *fakeEnv) drift(_ *testing.T, d Drift) bool      { e.f.Drift(d); return true }

// kernelEnv runs the table against a real backend inside the server
// namespace of a fresh testbed.Hosts pair, probing with TCP dials from the
// attacker namespace.
type kernelEnv struct {
	kind  string
	hosts *testbed.Hosts
}

func newKernelEnv(t *testing.T, kind string) *kernelEnv {
	t.Helper()
	testbed.Require(t, "ip", "iptables", "ip6tables", "ipset", "nft")
	h := testbed.NewHosts(t)
	h.AddAttackerAddr(t, "198.51.100.3/24")
	h.AddAttackerAddr(t, "2001:db8::3/64")
	e := &kernelEnv{kind: kind, hosts: h}
	for _, a := range []netip.Addr{srv4, srv6} {
		for _, p := range []uint16{portJail, portOther} {
			e.listen(t, netip.AddrPortFrom(a, p))
		}
	}
	return e
}

// listen opens a TCP listener inside the server namespace that accepts
// and closes connections until the test ends.
func (e *kernelEnv) listen(t *testing.T, ap netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	err := inNetNS(nsPath(e.hosts.Srv), func() (err error) {
		ln, err = net.Listen("tcp", ap.String())
		return err
	})
	if err != nil {
		t.Fatalf("listening on %v in %s: %v", ap, e.hosts.Srv, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

func (e *kernelEnv) backend(t *testing.T) Backend {
	t.Helper()
	b, err := New(e.kind, Options{NetNS: e.hosts.Srv, KillConnections: true, Logf: t.Logf})
	if err != nil {
		t.Fatalf("New(%s): %v", e.kind, err)
	}
	return b
}

// probe dials from src in the attacker namespace: connected = accept,
// refused (tcp-reset) = reject, timeout = drop.
func (e *kernelEnv) probe(t *testing.T, src netip.Addr, port uint16) Verdict {
	t.Helper()
	dst := srv4
	if src.Is6() {
		dst = srv6
	}
	var v Verdict
	err := inNetNS(nsPath(e.hosts.Atk), func() error {
		// A first timeout may be a busy machine rather than a drop: only
		// a second, longer one says drop.
		for _, timeout := range []time.Duration{400 * time.Millisecond, 1500 * time.Millisecond} {
			d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
			c, err := d.Dial("tcp", netip.AddrPortFrom(dst, port).String())
			switch {
			case err == nil:
				c.Close()
				v = VerdictAccept
				return nil
			case errors.Is(err, syscall.ECONNREFUSED):
				v = VerdictReject
				return nil
			case isTimeout(err):
				v = VerdictDrop
			default:
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dialing %v:%d from %v: %v", dst, port, src, err)
	}
	return v
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (e *kernelEnv) now() time.Time                        { return time.Now() }
func (e *kernelEnv) advance(_ *testing.T, d time.Duration) { time.Sleep(d) }

// sh runs a shell line inside the server namespace.
func (e *kernelEnv) sh(t *testing.T, line string) string {
	t.Helper()
	out, err := e.hosts.InSrv("sh", "-c", line).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", e.hosts.Srv, line, err, out)
	}
	return string(out)
}

// drift makes the change an administrator would make, in the server
// namespace only.
func (e *kernelEnv) drift(t *testing.T, d Drift) bool {
	t.Helper()
	both := func(cmd string) string { return "iptables " + cmd + " && ip6tables " + cmd }
	lines := map[string]map[Drift]string{
		"iptables": {
			DriftFlushChain:   both("-F JAILKEEPER"),
			DriftDeleteJump:   both("-D INPUT 1"),
			DriftRuleAbove:    both("-I INPUT 1 -j ACCEPT"),
			DriftDestroySets:  both("-F JAILKEEPER") + " && ipset destroy",
			DriftFlushRuleset: "nft flush ruleset",
			DriftLoseBans:     "ipset flush",
		},
		"nftables": {
			DriftFlushChain:   "nft flush chain inet jailkeeper input",
			DriftDeleteJump:   "nft flush chain inet jailkeeper input && nft delete chain inet jailkeeper input",
			DriftRuleAbove:    "nft insert rule inet jailkeeper input accept",
			DriftDestroySets:  "nft delete table inet jailkeeper",
			DriftFlushRuleset: "nft flush ruleset",
			DriftLoseBans:     "for s in $(nft -j list sets inet | grep -o '\"name\": \"[^\"]*\"' | cut -d'\"' -f4); do nft flush set inet jailkeeper $s; done",
		},
	}
	line, ok := lines[e.kind][d]
	if !ok {
		return false
	}
	if e.kind == "iptables" && d == DriftFlushRuleset {
		if v, _ := exec.Command("iptables", "--version").Output(); !strings.Contains(string(v), "nf_tables") {
			return false // legacy iptables is not in the nft ruleset
		}
	}
	e.sh(t, line)
	return true
}

// x is the state of one case while it runs: the env, the backend and the
// ban table the daemon would hold.
type x struct {
	t      *testing.T
	e      env
	b      Backend
	layout Layout
	table  map[banKey]Ban
}

// step is one action or check of a case.
type step func(x *x)

func (x *x) bans() []Ban {
	out := make([]Ban, 0, len(x.table))
	for _, b := range x.table {
		out = append(out, b)
	}
	return out
}

// ban makes a ban of prefix (an address or CIDR) in jail "ssh" lasting
// ttl from the env's now (0 = permanent).
func ban(x *x, prefix string, ttl time.Duration) Ban {
	var p netip.Prefix
	if strings.Contains(prefix, "/") {
		p = netip.MustParsePrefix(prefix)
	} else {
		a := netip.MustParseAddr(prefix)
		p = netip.PrefixFrom(a, a.BitLen())
	}
	b := Ban{Jail: "ssh", Prefix: p}
	if ttl > 0 {
		b.Expires = x.e.now().Add(ttl)
	}
	return b
}

func add(ttl time.Duration, prefixes ...string) step {
	return func(x *x) {
		var bs []Ban
		for _, p := range prefixes {
			b := ban(x, p, ttl)
			bs = append(bs, b)
			x.table[keyOf(b)] = b
		}
		if err := x.b.Add(bs); err != nil {
			x.t.Fatalf("Add(%v): %v", prefixes, err)
		}
	}
}

// addRefused adds prefixes, some of which the backend must leave out
// (prefix.Refuse): Add must fail naming them, and the table keeps the
// others.
func addRefused(ttl time.Duration, prefixes ...string) step {
	return func(x *x) {
		var bs []Ban
		for _, p := range prefixes {
			b := ban(x, p, ttl)
			bs = append(bs, b)
			if prefix.Refuse(b.Prefix, nil) == nil {
				x.table[keyOf(b)] = b
			}
		}
		err := x.b.Add(bs)
		if err == nil || !strings.Contains(err.Error(), "not bannable") {
			x.t.Fatalf("Add(%v) = %v, want an error naming what was left out", prefixes, err)
		}
	}
}

func remove(prefixes ...string) step {
	return func(x *x) {
		var bs []Ban
		for _, p := range prefixes {
			b := ban(x, p, 0)
			bs = append(bs, b)
			delete(x.table, keyOf(b))
		}
		if err := x.b.Remove(bs); err != nil {
			x.t.Fatalf("Remove(%v): %v", prefixes, err)
		}
	}
}

func advance(d time.Duration) step {
	return func(x *x) {
		x.e.advance(x.t, d)
		for k, b := range x.table {
			if !b.Expires.IsZero() && !b.Expires.After(x.e.now()) {
				delete(x.table, k)
			}
		}
	}
}

// expect probes each (source, port) and compares the verdict.
func expect(want map[probe]Verdict) step {
	return func(x *x) {
		x.t.Helper()
		keys := slices.SortedFunc(func(yield func(probe) bool) {
			for k := range want {
				if !yield(k) {
					return
				}
			}
		}, func(a, b probe) int { return strings.Compare(a.String(), b.String()) })
		for _, p := range keys {
			if got := x.e.probe(x.t, p.src, p.port); got != want[p] {
				x.t.Errorf("%v: got %s, want %s", p, got, want[p])
			}
		}
	}
}

type probe struct {
	src  netip.Addr
	port uint16
}

func (p probe) String() string { return fmt.Sprintf("%v→:%d", p.src, p.port) }

// listed checks List against the prefixes expected, each with its expiry
// within tolerance of the ban table's.
func listed(prefixes ...string) step {
	return func(x *x) {
		x.t.Helper()
		got, err := x.b.List()
		if err != nil {
			x.t.Fatalf("List: %v", err)
		}
		var names []string
		for _, b := range got {
			names = append(names, b.Prefix.String())
			want, ok := x.table[keyOf(b)]
			if !ok {
				continue
			}
			if want.Expires.IsZero() != b.Expires.IsZero() || absDur(want.Expires.Sub(b.Expires)) > 2*time.Second {
				x.t.Errorf("List: %v expires %v, want %v", b.Prefix, b.Expires, want.Expires)
			}
		}
		var wantNames []string
		for _, p := range prefixes {
			wantNames = append(wantNames, ban(x, p, 0).Prefix.String())
		}
		slices.Sort(names)
		slices.Sort(wantNames)
		if !slices.Equal(names, wantNames) {
			x.t.Errorf("List = %v, want %v", names, wantNames)
		}
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// drift breaks the layout the way d says, and checks that a ban stopped
// working (so the repair below is really tested).
func drift(d Drift) step {
	return func(x *x) {
		if !x.e.drift(x.t, d) {
			x.t.Skipf("drift %s does not apply to this backend", d)
		}
	}
}

// verify runs Verify with the ban table; wantFound says whether drift must
// be reported.
func verify(wantFound bool) step {
	return func(x *x) {
		x.t.Helper()
		found, err := x.b.Verify(x.layout, x.bans())
		if err != nil {
			x.t.Fatalf("Verify: %v (found %q)", err, found)
		}
		if (len(found) > 0) != wantFound {
			x.t.Errorf("Verify found %q, want found=%v", found, wantFound)
		}
	}
}

// verifyAny runs Verify and accepts whatever it finds.
func verifyAny() step {
	return func(x *x) {
		if found, err := x.b.Verify(x.layout, x.bans()); err != nil {
			x.t.Fatalf("Verify: %v (found %q)", err, found)
		}
	}
}

// reopen closes the backend and opens a new one, as a daemon restart does.
func reopen() step {
	return func(x *x) {
		if err := x.b.Close(); err != nil {
			x.t.Fatalf("Close: %v", err)
		}
		x.b = x.e.backend(x.t)
	}
}

func setup() step {
	return func(x *x) {
		if err := x.b.Setup(x.layout, x.bans()); err != nil {
			x.t.Fatalf("Setup: %v", err)
		}
	}
}

func teardown() step {
	return func(x *x) {
		if err := x.b.Teardown(); err != nil {
			x.t.Fatalf("Teardown: %v", err)
		}
	}
}

var (
	sshJail  = JailRules{Name: "ssh", Ports: []uint16{22, portJail}}
	dropJail = JailRules{Name: "ssh", Ports: []uint16{portJail}, Action: ActionDrop}
	allJail  = JailRules{Name: "ssh", Protocol: ProtoAll}
	// v4 and v6 probes on the jail's port and another port.
	p4, p6, o4, o6 = probe{atk4, portJail}, probe{atk6, portJail}, probe{atk4, portOther}, probe{atk6, portOther}
	w4, w6         = probe{wl4, portJail}, probe{wl6, portJail}
)

const (
	A, R, D = VerdictAccept, VerdictReject, VerdictDrop
	hour    = time.Hour
)

// cases is the one table run against the Fake and every real backend.
var cases = []struct {
	name   string
	layout Layout
	steps  []step
}{
	{"setup without bans lets everyone in", Layout{Jails: []JailRules{sshJail}}, []step{
		setup(), expect(map[probe]Verdict{p4: A, p6: A, o4: A}), listed(), verify(false),
	}},
	{"add v4 address", Layout{Jails: []JailRules{sshJail}}, []step{
		setup(), add(hour, "198.51.100.2"),
		expect(map[probe]Verdict{p4: R, o4: A, p6: A}), listed("198.51.100.2"), verify(false),
	}},
	{"add v6 address", Layout{Jails: []JailRules{sshJail}}, []step{
		setup(), add(hour, "2001:db8::2"),
		expect(map[probe]Verdict{p6: R, o6: A, p4: A}), listed("2001:db8::2"),
	}},
	{"add prefixes v4 and v6", Layout{Jails: []JailRules{sshJail}}, []step{
		setup(), add(hour, "198.51.100.0/25", "2001:db8::/64"),
		expect(map[probe]Verdict{p4: R, p6: R, o4: A, o6: A}), listed("198.51.100.0/25", "2001:db8::/64"),
	}},
	{"bans loaded by setup", Layout{Jails: []JailRules{sshJail}}, []step{
		func(x *x) { b := ban(x, "198.51.100.2", hour); x.table[keyOf(b)] = b }, setup(),
		expect(map[probe]Verdict{p4: R, p6: A}), listed("198.51.100.2"),
	}},
	{"setup replaces bans", Layout{Jails: []JailRules{sshJail}}, []step{
		setup(), add(hour, "198.51.100.2", "2001:db8::2"),
		func(x *x) { delete(x.table, keyOf(ban(x, "198.51.100.2", 0))) }, setup(),
		expect(map[probe]Verdict{p4: A, p6: R}), listed("2001:db8::2"),
	}},
	{"refresh extends the timeout", Layout{Jails: []JailRules{sshJail}}, []step{
		setup(), add(2*time.Second, "198.51.100.2"), add(hour, "198.51.100.2"),
		advance(3 * time.Second), expect(map[probe]Verdict{p4: R}), listed("198.51.100.2"),
	}},
	{"remove of bans some of which are gone lifts the others", Layout{Jails: []JailRules{sshJail}}, []step{
		setup(), add(0, "198.51.100.2", "2001:db8::/64", "198.51.100.9"), expect(map[probe]Verdict{p4: R, p6: R}),
		remove("198.51.100.9"), remove("198.51.100.9", "198.51.100.2", "2001:db8::/64"),
		expect(map[probe]Verdict{p4: A, p6: A}), listed(),
	}},
	{"remove lifts the ban", Layout{Jails: []JailRules{sshJail}}, []step{
		setup(), add(0, "198.51.100.2", "2001:db8::/64"), expect(map[probe]Verdict{p4: R, p6: R}),
		remove("198.51.100.2", "2001:db8::/64"), remove("198.51.100.2"),
		expect(map[probe]Verdict{p4: A, p6: A}), listed(),
	}},
	{"expiry by kernel timeout", Layout{Jails: []JailRules{sshJail}}, []step{
		// Three seconds: the probes right after the add must come before
		// the timeout on a loaded machine too (one second did not).
		setup(), add(3*time.Second, "198.51.100.2", "2001:db8::/64"), add(0, "198.51.100.9"),
		expect(map[probe]Verdict{p4: R, p6: R}),
		advance(4500 * time.Millisecond), expect(map[probe]Verdict{p4: A, p6: A}), listed("198.51.100.9"),
	}},
	{"whitelist wins over overlapping prefix", Layout{Jails: []JailRules{sshJail},
		Whitelist: []netip.Prefix{netip.MustParsePrefix("198.51.100.3/32"), netip.MustParsePrefix("2001:db8::3/128")}}, []step{
		setup(), add(hour, "198.51.100.0/24", "2001:db8::/64"),
		expect(map[probe]Verdict{p4: R, p6: R, w4: A, w6: A}),
	}},
	{"whitelist accept wins over overlapping prefix", Layout{Jails: []JailRules{sshJail}, WhitelistAccept: true,
		Whitelist: []netip.Prefix{netip.MustParsePrefix("198.51.100.3/32"), netip.MustParsePrefix("2001:db8::3/128")}}, []step{
		setup(), add(hour, "198.51.100.0/24", "2001:db8::/64"),
		expect(map[probe]Verdict{p4: R, p6: R, w4: A, w6: A}), verify(false),
	}},
	{"drop action", Layout{Jails: []JailRules{dropJail}}, []step{
		setup(), add(hour, "198.51.100.2", "2001:db8::2"), expect(map[probe]Verdict{p4: D, p6: D, o4: A}), verify(false),
	}},
	{"no ports means all ports", Layout{Jails: []JailRules{allJail}}, []step{
		setup(), add(hour, "198.51.100.2", "2001:db8::2"), expect(map[probe]Verdict{p4: R, o4: R, p6: R, o6: R}), verify(false),
	}},
	{"nested prefixes of one jail", Layout{Jails: []JailRules{sshJail}}, []step{
		// nftables interval sets reject nested intervals: the backend
		// keeps the wider prefix and Verify restores a narrower one the
		// ban table still holds once the wider one is gone.
		setup(), add(hour, "198.51.100.0/26", "2001:db8::/64"), add(hour, "198.51.100.0/24", "2001:db8::/48"), add(hour, "198.51.100.0/25"),
		expect(map[probe]Verdict{p4: R, p6: R}), verify(false),
		remove("198.51.100.0/24", "2001:db8::/48"), verifyAny(), expect(map[probe]Verdict{p4: R, p6: R}), verify(false),
		remove("198.51.100.0/26", "198.51.100.0/25", "2001:db8::/64"), verifyAny(), expect(map[probe]Verdict{p4: A, p6: A}),
	}},
	{"bulk: setup and add load thousands of bans", Layout{Jails: []JailRules{sshJail}}, []step{
		func(x *x) {
			for i := range 3000 {
				b := ban(x, fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), hour)
				x.table[keyOf(b)] = b
				b = ban(x, fmt.Sprintf("2001:db8:ffff::%x", i+1), hour)
				x.table[keyOf(b)] = b
			}
		},
		setup(), add(hour, "198.51.100.2"), expect(map[probe]Verdict{p4: R, p6: A}),
		func(x *x) {
			got, err := x.b.List()
			if err != nil || len(got) != 6001 {
				x.t.Fatalf("List: %d bans, %v; want 6001", len(got), err)
			}
		},
		drift(DriftLoseBans), verify(true), expect(map[probe]Verdict{p4: R}),
		func(x *x) {
			if got, _ := x.b.List(); len(got) != 6001 {
				x.t.Errorf("after repair List has %d bans, want 6001", len(got))
			}
		},
	}},
	{"a ban the kernel must not hold keeps no other out", Layout{Jails: []JailRules{sshJail}}, []step{
		// 0.0.0.0 aborted ipset's whole batch (errno 4353), and with it
		// every later ban, then every start.
		setup(), addRefused(hour, "0.0.0.0", "::", "ff02::1", "198.51.100.2", "2001:db8::2"),
		expect(map[probe]Verdict{p4: R, p6: R, o4: A}), listed("198.51.100.2", "2001:db8::2"),
		func(x *x) {
			b := ban(x, "0.0.0.0", hour)
			if err := x.b.Setup(x.layout, append(x.bans(), b)); err != nil {
				x.t.Fatalf("Setup with 0.0.0.0 among the bans: %v", err)
			}
		},
		expect(map[probe]Verdict{p4: R, p6: R}), listed("198.51.100.2", "2001:db8::2"), verify(false),
		func(x *x) {
			b := ban(x, "0.0.0.0", hour)
			if found, err := x.b.Verify(x.layout, append(x.bans(), b)); err != nil || len(found) > 0 {
				x.t.Fatalf("Verify with 0.0.0.0 among the bans = %q, %v; want nothing to repair", found, err)
			}
		},
	}},
	{"close leaves bans, teardown removes them", Layout{Jails: []JailRules{sshJail}}, []step{
		setup(), add(hour, "198.51.100.2"), reopen(), expect(map[probe]Verdict{p4: R}), listed("198.51.100.2"),
		setup(), expect(map[probe]Verdict{p4: R}), teardown(), expect(map[probe]Verdict{p4: A}),
	}},
}

// drifts: each breaks the layout, which must stop a ban from working; one
// Verify reports and repairs it, the next finds nothing.
var drifts = []Drift{DriftFlushChain, DriftDeleteJump, DriftRuleAbove, DriftDestroySets, DriftFlushRuleset, DriftLoseBans}

func init() {
	wl := []netip.Prefix{netip.MustParsePrefix("198.51.100.3/32")}
	for _, d := range drifts {
		cases = append(cases, struct {
			name   string
			layout Layout
			steps  []step
		}{"verify repairs " + string(d), Layout{Jails: []JailRules{sshJail}, Whitelist: wl}, []step{
			setup(), add(hour, "198.51.100.2", "2001:db8::/64"), expect(map[probe]Verdict{p4: R, p6: R, w4: A}),
			drift(d), expect(map[probe]Verdict{p4: A, p6: A}),
			verify(true), expect(map[probe]Verdict{p4: R, p6: R, w4: A}), listed("198.51.100.2", "2001:db8::/64"),
			verify(false),
		}})
	}
}

func runCases(t *testing.T, newEnv func(t *testing.T) env) {
	runCasesOf(t, newEnv, func(string) bool { return true })
}

// runCasesOf runs the cases whose name keep accepts.
func runCasesOf(t *testing.T, newEnv func(t *testing.T) env, keep func(name string) bool) {
	for _, c := range cases {
		if !keep(c.name) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			x := &x{t: t, e: e, layout: c.layout, table: map[banKey]Ban{}}
			x.b = e.backend(t)
			t.Cleanup(func() { x.b.Close() })
			for _, s := range c.steps {
				s(x)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func TestFake(t *testing.T) {
	runCases(t, func(*testing.T) env { return newFakeEnv() })
}

func TestIPTables(t *testing.T) {
	runCases(t, func(t *testing.T) env { return newKernelEnv(t, "iptables") })
}

func TestNFTables(t *testing.T) {
	runCases(t, func(t *testing.T) env { return newKernelEnv(t, "nftables") })
}
