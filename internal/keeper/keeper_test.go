package keeper

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// namedFake is a firewall.Fake under a backend's name, so that tests can
// switch between "iptables" and "nftables" without a kernel.
type namedFake struct {
	*firewall.Fake
	name      string
	teardowns int
}

func (n *namedFake) Name() string { return n.name }

func (n *namedFake) Teardown() error {
	n.teardowns++
	return n.Fake.Teardown()
}

// bed is a Keeper over fakes: one fake backend per name, an in-memory ban
// table, a log buffer and recorded signals.
type bed struct {
	t     *testing.T
	k     *Keeper
	table *bans.Table
	fws   map[string]*namedFake
	log   *bytes.Buffer
	sigs  *fakeAnnouncer
}

// testRuntime is a configuration of the named jails (sshd filter, port 22,
// maxretry 2, bantime 1h) on backend, with 198.51.100.3 whitelisted.
func testRuntime(t *testing.T, backend string, names ...string) *config.Runtime {
	t.Helper()
	def, err := jails.Builtin("sshd", "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := jails.Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	wl := []netip.Prefix{netip.MustParsePrefix("198.51.100.3/32")}
	rt := &config.Runtime{Backend: backend, Whitelist: jails.NewWhitelist(wl)}
	rt.Layout.Whitelist = rt.Whitelist.Prefixes()
	for _, n := range names {
		rt.Jails = append(rt.Jails, jails.Jail{Name: n, Filter: f, Units: []string{"sshd.service"},
			MaxRetry: 2, FindTime: 10 * time.Minute, BanTime: time.Hour})
		rt.Layout.Jails = append(rt.Layout.Jails, firewall.JailRules{Name: n, Ports: []uint16{22}})
	}
	return rt
}

func newBed(t *testing.T, table *bans.Table, rt *config.Runtime) *bed {
	t.Helper()
	if table == nil {
		table = bans.NewMemory()
	}
	b := &bed{t: t, table: table, log: &bytes.Buffer{}, sigs: &fakeAnnouncer{},
		fws: map[string]*namedFake{}}
	for _, n := range []string{"iptables", "nftables"} {
		b.fws[n] = &namedFake{Fake: &firewall.Fake{}, name: n}
	}
	k, err := Start(rt, table, Options{
		Log: &Logger{out: b.log},
		NewBackend: func(name string, _ firewall.Options) (firewall.Backend, error) {
			if f, ok := b.fws[name]; ok {
				return f, nil
			}
			if name == "none" {
				return &firewall.None{Logf: func(string, ...any) {}}, nil
			}
			return nil, fmt.Errorf("no backend %q", name)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	k.SetAnnouncer(b.sigs)
	b.k = k
	return b
}

// verdict is what a TCP packet from addr to port 22 meets in backend.
func (b *bed) verdict(backend, addr string) firewall.Verdict {
	return b.fws[backend].Verdict(netip.MustParseAddr(addr), firewall.ProtoTCP, 22)
}

func failure(addr string, cursor string) journal.Entry {
	return journal.Entry{Unit: "sshd.service", Identifier: "sshd", Time: time.Now(), Cursor: cursor,
		Message: "Failed password for root from " + addr + " port 4711 ssh2"}
}

func pfx(s string) netip.Prefix {
	p, err := dbusapi.ParsePrefix(s)
	if err != nil {
		panic(err)
	}
	return p
}

// TestHandleBatch: the engine's decisions reach the kernel and the table,
// with the cursor of the last entry in the same commit; batches are
// handled in order as one group; signals and the log name the address in
// the one format.
func TestHandleBatch(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	b.k.HandleBatch(
		[]journal.Entry{failure("203.0.113.9", "")},
		[]journal.Entry{failure("203.0.113.9", "c=2"), failure("198.51.100.3", "")},
		[]journal.Entry{failure("198.51.100.3", "c=3")}, // whitelisted: never banned
	)
	if v := b.verdict("iptables", "203.0.113.9"); v != firewall.VerdictReject {
		t.Errorf("203.0.113.9 meets %s, want reject", v)
	}
	if v := b.verdict("iptables", "198.51.100.3"); v != firewall.VerdictAccept {
		t.Errorf("whitelisted 198.51.100.3 meets %s", v)
	}
	if c := b.table.Cursor(); c != "c=3" {
		t.Errorf("table cursor %q, want c=3 (committed with the ban)", c)
	}
	if c := b.k.Cursor(); c != "c=3" {
		t.Errorf("keeper cursor %q", c)
	}
	active := b.table.Active(time.Now())
	if len(active) != 1 || active[0].Prefix != pfx("203.0.113.9") || active[0].Jail != "sshd" {
		t.Fatalf("table holds %+v", active)
	}
	if d := time.Until(active[0].Expires); d < 59*time.Minute || d > time.Hour {
		t.Errorf("ban expires in %v, want the jail's bantime 1h", d)
	}
	if len(b.sigs.calls) != 1 || !strings.HasPrefix(b.sigs.calls[0], fmt.Sprintf("Banned sshd 203.0.113.9/32 %d ", active[0].Expires.Unix())) {
		t.Errorf("signals %q", b.sigs.calls)
	}
	if !strings.Contains(b.log.String(), "banned 203.0.113.9 in jail sshd until ") {
		t.Errorf("log lacks the ban:\n%s", b.log)
	}
	// A ban already in place is no new ban: nothing logged, no signal.
	n := len(b.sigs.calls)
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.9", ""), failure("203.0.113.9", "c=4")})
	if len(b.sigs.calls) != n {
		t.Errorf("a repeated ban was announced: %q", b.sigs.calls[n:])
	}
	// Without a ban the cursor is saved at most once every CursorEvery.
	if c := b.k.Cursor(); c != "c=4" {
		t.Errorf("keeper cursor %q after the second batch, want c=4", c)
	}
	if c := b.table.Cursor(); c != "c=3" {
		t.Errorf("table cursor %q right after a commit, want c=3 still", c)
	}
	b.k.cursorSaved = time.Now().Add(-CursorEvery)
	b.k.HandleBatch([]journal.Entry{{Unit: "sshd.service", Message: "Accepted publickey for root", Cursor: "c=5"}})
	if c := b.table.Cursor(); c != "c=5" {
		t.Errorf("table cursor %q a second later, want c=5", c)
	}
}

// TestBanRules: the administrator's Ban validates the jail and the
// whitelist, all or nothing, and picks the duration.
func TestBanRules(t *testing.T) {
	cases := []struct {
		name     string
		jail     string
		prefixes []string
		dur      time.Duration
		err      error
		n        int
		expires  time.Duration // 0: permanent; checked for the first prefix
	}{
		{"unknown jail", "web", []string{"203.0.113.1"}, 0, dbusapi.ErrUnknownJail, 0, 0},
		{"whitelisted: nothing banned", "sshd", []string{"203.0.113.1", "198.51.100.0/24"}, 0, dbusapi.ErrWhitelisted, 0, 0},
		{"the jail's bantime", "sshd", []string{"203.0.113.1"}, 0, nil, 1, time.Hour},
		{"a given time", "sshd", []string{"203.0.113.2", "2001:db8:1::/48"}, 24 * time.Hour, nil, 2, 24 * time.Hour},
		{"permanent", "sshd", []string{"203.0.113.3"}, -1, nil, 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t, nil, testRuntime(t, "nftables", "sshd"))
			var ps []netip.Prefix
			for _, s := range c.prefixes {
				ps = append(ps, pfx(s))
			}
			n, err := b.k.Ban(c.jail, ps, c.dur)
			if !errors.Is(err, c.err) || n != c.n {
				t.Fatalf("Ban = %d, %v; want %d, %v", n, err, c.n, c.err)
			}
			active := b.table.Active(time.Now())
			if len(active) != c.n {
				t.Fatalf("table holds %d bans, want %d", len(active), c.n)
			}
			for _, s := range c.prefixes[:c.n] {
				if v := b.verdict("nftables", pfx(s).Addr().String()); v != firewall.VerdictReject {
					t.Errorf("%s meets %s", s, v)
				}
			}
			if c.n == 0 {
				if v := b.verdict("nftables", "203.0.113.1"); v != firewall.VerdictAccept {
					t.Errorf("refused ban reached the kernel: %s", v)
				}
				return
			}
			for _, a := range active {
				if a.Prefix != ps[0] {
					continue
				}
				if c.expires == 0 && !a.Permanent() {
					t.Errorf("ban expires %v, want permanent", a.Expires)
				}
				if d := time.Until(a.Expires); c.expires != 0 && (d > c.expires || d < c.expires-time.Minute) {
					t.Errorf("ban expires in %v, want %v", d, c.expires)
				}
			}
		})
	}
}

// TestBanFrom: the whitelisted prefixes are skipped and returned, the
// others banned with the reason given (or the origin's).
func TestBanFrom(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "nftables", "sshd"))
	n, skipped, err := b.k.BanFrom("sshd", []netip.Prefix{pfx("203.0.113.1"), pfx("198.51.100.0/24"), pfx("203.0.113.2")}, 0,
		"fleet: sshd on web1", "web1")
	if err != nil || n != 2 || len(skipped) != 1 || skipped[0] != pfx("198.51.100.0/24") {
		t.Fatalf("BanFrom = %d, %v, %v; want 2, [198.51.100.0/24]", n, skipped, err)
	}
	if n, skipped, err = b.k.BanFrom("sshd", []netip.Prefix{pfx("203.0.113.3")}, time.Minute, "", "web2"); err != nil || n != 1 || skipped != nil {
		t.Fatalf("BanFrom without a reason = %d, %v, %v", n, skipped, err)
	}
	if n, skipped, err = b.k.BanFrom("sshd", []netip.Prefix{pfx("198.51.100.3")}, 0, "", ""); err != nil || n != 0 || len(skipped) != 1 {
		t.Fatalf("BanFrom of only a whitelisted address = %d, %v, %v", n, skipped, err)
	}
	reasons := map[string]string{}
	for _, a := range b.k.ListBans() {
		reasons[a.Prefix] = a.Reason
	}
	want := map[string]string{"203.0.113.1": "fleet: sshd on web1", "203.0.113.2": "fleet: sshd on web1", "203.0.113.3": "banned by web2"}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Errorf("ListBans reasons = %v, want %v", reasons, want)
	}
	if v := b.verdict("nftables", "198.51.100.3"); v != firewall.VerdictAccept {
		t.Errorf("the whitelisted address meets %s", v)
	}
	if v := b.verdict("nftables", "203.0.113.2"); v != firewall.VerdictReject {
		t.Errorf("203.0.113.2 meets %s", v)
	}
}

// TestUnbanAndExpire: Unban lifts bans (an address also a prefix holding
// it), from the kernel and the table; Expire lifts those whose time is up.
func TestUnbanAndExpire(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd", "web"))
	if _, err := b.k.Ban("sshd", []netip.Prefix{pfx("203.0.113.0/24"), pfx("198.51.100.7")}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.k.Ban("web", []netip.Prefix{pfx("198.51.100.7")}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.k.Unban("ftp", pfx("198.51.100.7")); !errors.Is(err, dbusapi.ErrUnknownJail) {
		t.Errorf("Unban in an unknown jail: %v", err)
	}
	if n, err := b.k.Unban("", pfx("203.0.113.5")); err != nil || n != 1 {
		t.Errorf("Unban(203.0.113.5) = %d, %v; want the /24 lifted", n, err)
	}
	if v := b.verdict("iptables", "203.0.113.5"); v != firewall.VerdictAccept {
		t.Errorf("203.0.113.5 still meets %s", v)
	}
	if n, err := b.k.Unban("web", pfx("198.51.100.7")); err != nil || n != 1 {
		t.Errorf("Unban(web, 198.51.100.7) = %d, %v", n, err)
	}
	if v := b.verdict("iptables", "198.51.100.7"); v != firewall.VerdictReject {
		t.Errorf("the sshd ban of 198.51.100.7 went too: %s", v)
	}
	want := []string{"Unbanned sshd 203.0.113.0/24", "Unbanned web 198.51.100.7/32"}
	if got := b.sigs.calls[len(b.sigs.calls)-2:]; !slices.Equal(got, want) {
		t.Errorf("signals %q, want %q", got, want)
	}
	if _, err := b.k.Ban("sshd", []netip.Prefix{pfx("198.51.100.8")}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	b.k.Expire()
	if got := len(b.table.Active(time.Now())); got != 1 {
		t.Errorf("%d bans after expiry, want 1", got)
	}
	if !strings.Contains(b.log.String(), "ban of 198.51.100.8 in jail sshd expired") {
		t.Errorf("expiry not logged:\n%s", b.log)
	}
}

// TestStatusFormat: Status and ListBans print a single address bare and a
// real prefix in CIDR form, and name the jails on an unknown one.
func TestStatusFormat(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd", "web"))
	if _, err := b.k.Ban("sshd", []netip.Prefix{pfx("198.51.100.7/32"), pfx("203.0.113.0/24"), pfx("2001:db8::1"), pfx("2001:db8:1::/64")}, 0); err != nil {
		t.Fatal(err)
	}
	st, err := b.k.Status("sshd")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.7", "2001:db8::1", "2001:db8:1::/64", "203.0.113.0/24"}
	got := slices.Sorted(slices.Values(st[0].Banned))
	slices.Sort(want)
	if !slices.Equal(got, want) || st[0].CurrentlyBanned != 4 || st[0].TotalBanned != 4 {
		t.Errorf("Status = %+v, want banned %q", st[0], want)
	}
	var listed []string
	for _, bi := range b.k.ListBans() {
		listed = append(listed, bi.Prefix)
	}
	if slices.Sort(listed); !slices.Equal(listed, want) {
		t.Errorf("ListBans prints %q, want %q", listed, want)
	}
	if all, err := b.k.Status(""); err != nil || len(all) != 2 || all[1].Name != "web" {
		t.Errorf("Status(\"\") = %+v, %v", all, err)
	}
	if _, err := b.k.Status("ftp"); !errors.Is(err, dbusapi.ErrUnknownJail) || !strings.Contains(err.Error(), "sshd, web") {
		t.Errorf("Status(ftp) error %v", err)
	}
	if s := b.k.StatusLine(); s != "2 jails (sshd, web), 4 bans" {
		t.Errorf("StatusLine %q", s)
	}
}

// TestVerifyRepairs: drift is repaired and logged once.
func TestVerifyRepairs(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	if _, err := b.k.Ban("sshd", []netip.Prefix{pfx("203.0.113.9")}, 0); err != nil {
		t.Fatal(err)
	}
	b.fws["iptables"].Drift(firewall.DriftFlushChain)
	if v := b.verdict("iptables", "203.0.113.9"); v != firewall.VerdictAccept {
		t.Fatalf("drift not simulated: %s", v)
	}
	if err := b.k.Verify(); err != nil {
		t.Fatal(err)
	}
	if v := b.verdict("iptables", "203.0.113.9"); v != firewall.VerdictReject {
		t.Errorf("after Verify 203.0.113.9 meets %s", v)
	}
	if n := strings.Count(b.log.String(), "firewall drift repaired"); n != 1 {
		t.Errorf("repair logged %d times:\n%s", n, b.log)
	}
	b.fws["iptables"].Fail = errors.New("netlink: operation not permitted")
	b.fws["iptables"].Drift(firewall.DriftDeleteJump)
	if err := b.k.Verify(); err == nil {
		t.Error("Verify with a failing repair returned nil")
	}
}

// TestStartAndSwap: start drops expired bans and bans of jails gone; a
// reload keeps bans, lifts those of removed jails, and on a change of
// backend moves every ban into the new backend and tears the old one down.
func TestStartAndSwap(t *testing.T) {
	table := bans.NewMemory()
	now := time.Now()
	if _, err := table.Add(
		bans.Ban{Jail: "sshd", Prefix: pfx("203.0.113.1"), Start: now, Expires: now.Add(time.Hour)},
		bans.Ban{Jail: "sshd", Prefix: pfx("203.0.113.2"), Start: now},
		bans.Ban{Jail: "old", Prefix: pfx("203.0.113.3"), Start: now},
		bans.Ban{Jail: "sshd", Prefix: pfx("203.0.113.4"), Start: now.Add(-time.Hour), Expires: now.Add(-time.Minute)},
	); err != nil {
		t.Fatal(err)
	}
	b := newBed(t, table, testRuntime(t, "iptables", "sshd", "web"))
	if b.k.Restored() != 2 {
		t.Errorf("restored %d bans, want 2", b.k.Restored())
	}
	for addr, want := range map[string]firewall.Verdict{"203.0.113.1": "reject", "203.0.113.2": "reject", "203.0.113.3": "accept", "203.0.113.4": "accept"} {
		if v := b.verdict("iptables", addr); v != want {
			t.Errorf("after start %s meets %s, want %s", addr, v, want)
		}
	}
	if b.fws["nftables"].teardowns != 1 {
		t.Errorf("start tore the other backend down %d times, want 1", b.fws["nftables"].teardowns)
	}
	if _, err := b.k.Ban("web", []netip.Prefix{pfx("198.51.100.9")}, 0); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name    string
		rt      *config.Runtime
		backend string
		verdict map[string]firewall.Verdict // on backend after the swap
	}{
		{"same backend, web removed", testRuntime(t, "iptables", "sshd"), "iptables",
			map[string]firewall.Verdict{"203.0.113.1": "reject", "198.51.100.9": "accept"}},
		{"switch to nftables", testRuntime(t, "nftables", "sshd"), "nftables",
			map[string]firewall.Verdict{"203.0.113.1": "reject", "203.0.113.2": "reject"}},
		{"auto keeps a kernel backend", testRuntime(t, "auto", "sshd"), "nftables",
			map[string]firewall.Verdict{"203.0.113.2": "reject"}},
		{"back to iptables", testRuntime(t, "iptables", "sshd"), "iptables",
			map[string]firewall.Verdict{"203.0.113.1": "reject", "203.0.113.2": "reject"}},
	}
	for _, s := range steps {
		next, err := b.k.Prepare(s.rt)
		if err != nil {
			t.Fatalf("%s: Prepare: %v", s.name, err)
		}
		if err := b.k.Swap(next); err != nil {
			t.Fatalf("%s: Swap: %v", s.name, err)
		}
		if got := b.k.Backend(); got != s.backend {
			t.Errorf("%s: backend %s, want %s", s.name, got, s.backend)
		}
		for addr, want := range s.verdict {
			if v := b.verdict(s.backend, addr); v != want {
				t.Errorf("%s: %s meets %s, want %s", s.name, addr, v, want)
			}
		}
		for name, f := range b.fws {
			if name == s.backend {
				continue
			}
			if _, up := f.Layout(); up {
				t.Errorf("%s: the %s layout is still up", s.name, name)
			}
		}
	}
	// An unban after the switches lifts the ban in the only layout left.
	if n, err := b.k.Unban("", pfx("203.0.113.2")); err != nil || n != 1 {
		t.Fatalf("Unban = %d, %v", n, err)
	}
	for name := range b.fws {
		if v := b.verdict(name, "203.0.113.2"); v != firewall.VerdictAccept {
			t.Errorf("203.0.113.2 still meets %s in %s", v, name)
		}
	}

	// A layout that cannot be built keeps the running one.
	b.fws["nftables"].Fail = errors.New("no nf_tables")
	next, err := b.k.Prepare(testRuntime(t, "nftables", "sshd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.k.Swap(next); err == nil {
		t.Fatal("Swap onto a failing backend succeeded")
	}
	if b.k.Backend() != "iptables" || b.verdict("iptables", "203.0.113.1") != firewall.VerdictReject {
		t.Errorf("failed switch lost the running layout: backend %s", b.k.Backend())
	}
}

// TestConcurrentCalls runs D-Bus-like calls beside the ban path (go test
// -race finds unguarded state).
func TestConcurrentCalls(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				a := fmt.Sprintf("203.0.%d.%d", i, j)
				switch j % 4 {
				case 0:
					b.k.HandleBatch([]journal.Entry{failure(a, ""), failure(a, fmt.Sprintf("c=%d.%d", i, j))})
				case 1:
					_, _ = b.k.Ban("sshd", []netip.Prefix{pfx(a)}, 0)
				case 2:
					_, _ = b.k.Status("")
					_ = b.k.ListBans()
				case 3:
					_, _ = b.k.Unban("", pfx(a))
					b.k.Expire()
				}
			}
		}()
	}
	wg.Wait()
	if _, err := b.k.Status(""); err != nil {
		t.Fatal(err)
	}
}

// TestCountsSurviveRestart: with maxretry 2, one failure, a restart of the
// keeper on the same state file (Close, or a crash after the cursor was
// saved), one failure → banned, and the failure total carries on.
func TestCountsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), bans.FileName)
	open := func() *bans.Table {
		tb, err := bans.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	table := open()
	b := newBed(t, table, testRuntime(t, "iptables", "sshd"))
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.7", "c1")})
	// A crash right after the cursor's save: no Close.
	if err := table.Close(); err != nil {
		t.Fatal(err)
	}

	table = open()
	defer table.Close()
	b = newBed(t, table, testRuntime(t, "iptables", "sshd"))
	// Start restores the counts in the background: the first batch
	// waits for them.
	e := failure("203.0.113.7", "c2")
	e.Message = strings.Replace(e.Message, "4711", "4712", 1)
	b.k.HandleBatch([]journal.Entry{e})
	if n := b.k.CountsRestored(); n != 1 {
		t.Fatalf("CountsRestored = %d, want 1", n)
	}
	if v := b.verdict("iptables", "203.0.113.7"); v != firewall.VerdictReject {
		t.Fatalf("after a failure, a restart and a failure: %s, want reject", v)
	}
	st, err := b.k.Status("sshd")
	if err != nil || st[0].TotalFailed != 2 || st[0].TotalBanned != 1 {
		t.Fatalf("Status = %+v, %v; want 2 failures, 1 ban in total", st, err)
	}
}

// TestStartFromKernel: a table started empty because its file was
// corrupt is filled from the kernel's sets before the layout is built, so
// no ban is lost; bans of jails no longer configured are lifted as usual.
func TestStartFromKernel(t *testing.T) {
	fw := &namedFake{Fake: &firewall.Fake{}, name: "iptables"}
	old := testRuntime(t, "iptables", "sshd", "gone")
	exp := time.Now().Add(time.Hour)
	if err := fw.Setup(old.Layout, []firewall.Ban{
		{Jail: "sshd", Prefix: pfx("203.0.113.7"), Expires: exp},
		{Jail: "sshd", Prefix: pfx("2001:db8::/64")},
		{Jail: "gone", Prefix: pfx("203.0.113.8"), Expires: exp},
	}); err != nil {
		t.Fatal(err)
	}
	table := bans.NewMemory()
	var log bytes.Buffer
	k, err := Start(testRuntime(t, "iptables", "sshd"), table, Options{
		Log:        &Logger{out: &log},
		NewBackend: func(string, firewall.Options) (firewall.Backend, error) { return fw, nil },
		FromKernel: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var got []string
	for _, b := range table.Active(time.Now()) {
		got = append(got, b.Jail+" "+b.Prefix.String())
		if b.Prefix.Bits() == 32 && b.Expires.Sub(exp).Abs() > 2*time.Second {
			t.Errorf("%s expires %v, want about %v", b.Prefix, b.Expires, exp)
		}
	}
	want := []string{"sshd 203.0.113.7/32", "sshd 2001:db8::/64"} // IPv4 first (bans.Table.Active)
	if !slices.Equal(got, want) {
		t.Fatalf("table after a start from the kernel: %q, want %q", got, want)
	}
	for _, a := range []string{"203.0.113.7", "2001:db8::9"} {
		if v := fw.Verdict(netip.MustParseAddr(a), firewall.ProtoTCP, 22); v != firewall.VerdictReject {
			t.Errorf("%s after the start: %s, want reject", a, v)
		}
	}
	if !strings.Contains(log.String(), "ban table rebuilt from the kernel: 3 bans") {
		t.Errorf("log lacks the rebuild:\n%s", log.String())
	}
}

// TestKernelFailureOnBanPath: when the kernel refuses a ban the engine
// decided, the ban is still recorded with its cursor (the log says the
// watchdog will retry), and the next Verify puts it into the kernel.
func TestKernelFailureOnBanPath(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	fw := b.fws["iptables"]
	fw.Fail = errors.New("ipset: out of memory")
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.9", ""), failure("203.0.113.9", "c=9")})
	if got := b.table.Active(time.Now()); len(got) != 1 || b.table.Cursor() != "c=9" {
		t.Fatalf("table %v, cursor %q: want the ban and c=9 recorded", got, b.table.Cursor())
	}
	if !strings.Contains(b.log.String(), "the watchdog will retry") {
		t.Errorf("the failed push is not logged:\n%s", b.log)
	}
	fw.Fail = nil
	if v := b.verdict("iptables", "203.0.113.9"); v != firewall.VerdictAccept {
		t.Fatalf("the refused ban is in the fake kernel: %s", v)
	}
	if err := b.k.Verify(); err != nil {
		t.Fatal(err)
	}
	if v := b.verdict("iptables", "203.0.113.9"); v != firewall.VerdictReject {
		t.Errorf("after Verify 203.0.113.9 meets %s, want reject", v)
	}
}

// TestSwapOntoNone: a reload onto "none" removes the layout of the kernel
// backend it leaves (its bans could not be lifted otherwise); a start on
// "none" touches no kernel backend.
func TestSwapOntoNone(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "nftables", "sshd"))
	if _, err := b.k.Ban("sshd", []netip.Prefix{pfx("203.0.113.9")}, -1); err != nil {
		t.Fatal(err)
	}
	next, err := b.k.Prepare(testRuntime(t, "none", "sshd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.k.Swap(next); err != nil {
		t.Fatal(err)
	}
	if _, up := b.fws["nftables"].Layout(); up || b.k.Backend() != "none" {
		t.Errorf("after the reload onto none: nftables layout up %v, backend %s", up, b.k.Backend())
	}
	if len(b.table.Active(time.Now())) != 1 {
		t.Error("the ban left the table")
	}
	n := newBed(t, nil, testRuntime(t, "none", "sshd"))
	for name, f := range n.fws {
		if f.teardowns != 0 || len(f.Calls()) != 0 {
			t.Errorf("a start on none called the %s backend: %q", name, f.Calls())
		}
	}
}

// TestAPIOnlyJail: a jail without filter and units takes bans from the API
// (BanFrom, Ban) with its own bantime and ports; a configuration of such
// jails alone reads no journal, and a journal entry reaches none of them.
func TestAPIOnlyJail(t *testing.T) {
	rt := testRuntime(t, "nftables")
	rt.Jails = append(rt.Jails, jails.Jail{Name: "fleet", APIOnly: true, BanTime: 24 * time.Hour})
	rt.Layout.Jails = append(rt.Layout.Jails, firewall.JailRules{Name: "fleet", Ports: []uint16{22}})
	b := newBed(t, nil, rt)
	if b.k.ReadsJournal() {
		t.Errorf("ReadsJournal = true with only an API-only jail (units %v)", b.k.Units())
	}
	if n, skipped, err := b.k.BanFrom("fleet", []netip.Prefix{pfx("203.0.113.1"), pfx("198.51.100.3")}, time.Hour, "fleet: sshd on web1", "web1"); err != nil || n != 1 || len(skipped) != 1 {
		t.Fatalf("BanFrom into the API-only jail = %d, %v, %v; want 1 banned, the whitelisted one skipped", n, skipped, err)
	}
	if _, err := b.k.Ban("fleet", []netip.Prefix{pfx("203.0.113.2")}, 0); err != nil {
		t.Fatalf("Ban into the API-only jail: %v", err)
	}
	for _, a := range []string{"203.0.113.1", "203.0.113.2"} {
		if v := b.verdict("nftables", a); v != firewall.VerdictReject {
			t.Errorf("%s meets %s, want reject", a, v)
		}
	}
	for _, a := range b.k.ListBans() {
		if a.Prefix == "203.0.113.2" && a.Expires-a.Start != int64(24*time.Hour/time.Second) {
			t.Errorf("Ban without a duration: %d s, want the jail's bantime 1d", a.Expires-a.Start)
		}
	}
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.9", "c1"), failure("203.0.113.9", "c2"), failure("203.0.113.9", "c3")})
	if v := b.verdict("nftables", "203.0.113.9"); v != firewall.VerdictAccept {
		t.Errorf("sshd failures reached the API-only jail: 203.0.113.9 meets %s", v)
	}

	b2 := newBed(t, nil, testRuntime(t, "nftables", "sshd"))
	if !b2.k.ReadsJournal() {
		t.Error("ReadsJournal = false with the sshd jail")
	}
}

// TestSaveCursorIdle: the cursor and the failures counted since the last
// save are written once the journal is quiet (the daemon's call), not only
// when the next batch comes; at most every IdleSaveGap (sooner it says how
// long to wait), and nothing when nothing was handled since.
func TestSaveCursorIdle(t *testing.T) {
	table, err := bans.Open(filepath.Join(t.TempDir(), bans.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { table.Close() })
	b := newBed(t, table, testRuntime(t, "iptables", "sshd"))
	records := func() int {
		n := 0
		if err := table.EachState(func(_, _ []byte) { n++ }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	age := func(d time.Duration) {
		b.k.mu.Lock()
		b.k.cursorSaved = time.Now().Add(-d)
		b.k.mu.Unlock()
	}
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.9", "c=1")}) // the first save
	if c := table.Cursor(); c != "c=1" {
		t.Fatalf("table cursor %q after the first batch, want c=1", c)
	}
	before := records()
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.10", "c=2")}) // within CursorEvery: not saved
	if c := table.Cursor(); c != "c=1" {
		t.Fatalf("table cursor %q right after a save, want c=1 still", c)
	}
	age(IdleSaveGap / 2)
	if w := b.k.SaveCursorIdle(); w <= 0 || w > IdleSaveGap/2 {
		t.Errorf("SaveCursorIdle %v after a save says wait %v, want up to %v", IdleSaveGap/2, w, IdleSaveGap/2)
	}
	if c := table.Cursor(); c != "c=1" {
		t.Errorf("table cursor %q: saved within IdleSaveGap", c)
	}
	age(IdleSaveGap)
	if w := b.k.SaveCursorIdle(); w != 0 {
		t.Errorf("SaveCursorIdle says wait %v when due", w)
	}
	if c := table.Cursor(); c != "c=2" {
		t.Errorf("table cursor %q once quiet with no new batch, want c=2", c)
	}
	if n := records(); n <= before {
		t.Errorf("%d state records after the idle save, %d before: 203.0.113.10's failure not written", n, before)
	}
	// Nothing handled since: nothing written.
	age(CursorEvery)
	b.k.mu.Lock()
	saved := b.k.cursorSaved
	b.k.mu.Unlock()
	if w := b.k.SaveCursorIdle(); w != 0 || b.k.cursorSaved != saved {
		t.Errorf("an idle save (wait %v) with nothing handled since the last one", w)
	}
}
