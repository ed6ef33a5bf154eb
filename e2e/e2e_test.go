// Package e2e holds jailkeeper's end-to-end tests: the real daemon, built
// from this tree, against a real sshd, journald, system bus and kernel
// firewall, all inside network namespaces and a private journal built by
// internal/testbed. They run as root only (testbed.Require) and never
// touch the host's own firewall tables.
package e2e

import (
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.RemoveBuild()
	testbed.RemoveActionsBuild()
	testbed.RemoveSyncBuild()
	os.Exit(code)
}

const (
	readyTimeout = 20 * time.Second
	banTimeout   = 5 * time.Second // journal write of the 3rd failure → set
	unprivUser   = "jk-e2e"
)

// readyCheck is what the test saw in the kernel the moment READY=1 arrived.
type readyCheck struct {
	at          time.Time
	layout4     bool
	layout6     bool
	why         string
	banned      map[string]bool // probed addresses → in a jk- set
	probeErrors []string
}

// readyProbe returns an OnNotify hook that inspects the server namespace
// as soon as READY=1 arrives, and a function returning what it saw.
func readyProbe(h *testbed.Hosts, addrs ...string) (func(testbed.NotifyMsg), func() (readyCheck, bool)) {
	var (
		mu   sync.Mutex
		seen bool
		rc   readyCheck
	)
	hook := func(m testbed.NotifyMsg) {
		ready := false
		for _, l := range m.Lines {
			ready = ready || l == "READY=1"
		}
		mu.Lock()
		defer mu.Unlock()
		if !ready || seen {
			return
		}
		seen = true
		rc = readyCheck{at: m.At, banned: map[string]bool{}}
		var why4, why6 string
		rc.layout4, why4 = h.SrvLayout(false)
		rc.layout6, why6 = h.SrvLayout(true)
		rc.why = strings.TrimSpace(why4 + " " + why6)
		sets, err := h.ListSrvSets()
		if err != nil {
			rc.probeErrors = append(rc.probeErrors, err.Error())
		}
		for _, a := range addrs {
			for _, s := range sets {
				if !s.IsWhitelist() && s.Contains(netip.MustParseAddr(a)) {
					rc.banned[a] = true
				}
			}
		}
	}
	get := func() (readyCheck, bool) {
		mu.Lock()
		defer mu.Unlock()
		return rc, seen
	}
	return hook, get
}

// attackUntilBanned runs the attacker loop from src (empty: the veth's
// primary address) against addr: attempts 1..3 must be denied by sshd, the
// address must then appear in a jailkeeper set, and attempts 4..6 must be
// refused. It returns the time from the end of attempt 3 to the address
// being seen in the set.
func attackUntilBanned(t *testing.T, h *testbed.Hosts, addr, src, attacker string) time.Duration {
	t.Helper()
	for i := 1; i <= 3; i++ {
		if set, ok := h.SrvBanned(t, attacker); ok {
			t.Fatalf("%s in set %s before attempt %d", attacker, set, i)
		}
		a := h.SSHAttempt(addr, src)
		t.Logf("attempt %d from %s to %s: %s (%v)", i, attacker, addr, a.Outcome, a.Took.Round(time.Millisecond))
		if a.Outcome != testbed.Denied {
			t.Fatalf("attempt %d from %s to %s: %s, want %s; ssh said %q", i, attacker, addr, a.Outcome, testbed.Denied, a.Output)
		}
	}
	third := time.Now()
	var latency time.Duration
	for {
		if _, ok := h.SrvBanned(t, attacker); ok {
			latency = time.Since(third)
			break
		}
		if time.Since(third) > banTimeout {
			t.Fatalf("%s not in any %s* set %v after its 3rd failure", attacker, testbed.SetPrefix, banTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%s banned %v after attempt 3 ended", attacker, latency.Round(time.Millisecond))
	for i := 4; i <= 6; i++ {
		a := h.SSHAttempt(addr, src)
		t.Logf("attempt %d from %s to %s: %s (%v)", i, attacker, addr, a.Outcome, a.Took.Round(time.Millisecond))
		if a.Outcome != testbed.Refused {
			t.Fatalf("attempt %d from %s to %s: %s, want %s; ssh said %q", i, attacker, addr, a.Outcome, testbed.Refused, a.Output)
		}
	}
	return latency
}

// TestSSHBruteForceBanned is the seed's own test: an ssh brute
// force from the attacker namespace is banned after exactly maxretry
// failures over IPv4 and IPv6, a whitelisted address never is, Unban over
// D-Bus works for root and is refused by the bus for anyone else, READY=1
// comes only once the firewall layout is in place, the watchdog pings,
// and a restart keeps every ban in force throughout.
func TestSSHBruteForceBanned(t *testing.T) {
	testbed.Require(t, append(testbed.BedCommands, "nft", "dbus-send")...)
	checkHostFirewallUntouched(t)
	bed := testbed.NewBed(t)
	h := bed.Hosts
	d := bed.NewDaemon(t, map[string]string{"10-sshd.yaml": testbed.SSHJailConfig})
	hook, readySeen := readyProbe(h, testbed.AtkAddr4, testbed.AtkAddr6)
	d.OnNotify = hook

	// Nothing of jailkeeper's exists before the first start, so a layout
	// seen at READY=1 is the daemon's own.
	for _, v6 := range []bool{false, true} {
		if ok, _ := h.SrvLayout(v6); ok {
			t.Fatalf("layout present before the daemon started (v6=%v)", v6)
		}
	}
	if sets := h.SrvSets(t); len(sets) != 0 {
		t.Fatalf("sets present before the daemon started: %+v", sets)
	}

	d.Start(t)
	d.WaitReady(t, readyTimeout)
	t.Run("ready after layout", func(t *testing.T) {
		rc, ok := readySeen()
		if !ok {
			t.Fatal("READY=1 hook did not run")
		}
		if !rc.layout4 || !rc.layout6 {
			t.Errorf("at READY=1 (%v after start) the layout was incomplete: %s", rc.at.Sub(d.Started).Round(time.Millisecond), rc.why)
		}
		if _, _, found := d.Notify.Find("STATUS="); !found {
			t.Errorf("no STATUS= line received")
		}
		t.Logf("READY=1 %v after start", rc.at.Sub(d.Started).Round(time.Millisecond))
	})

	t.Run("watchdog", func(t *testing.T) {
		// WATCHDOG_USEC is 2 s: pings every second.
		deadline := time.Now().Add(4 * d.Watchdog)
		for d.Notify.Count("WATCHDOG=1") < 3 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		var pings []time.Time
		for _, m := range d.Notify.Messages() {
			for _, l := range m.Lines {
				if l == "WATCHDOG=1" {
					pings = append(pings, m.At)
				}
			}
		}
		if len(pings) < 3 {
			t.Fatalf("%d WATCHDOG=1 pings within %v, want ≥ 3", len(pings), 4*d.Watchdog)
		}
		for i := 1; i < len(pings); i++ {
			if gap := pings[i].Sub(pings[i-1]); gap > d.Watchdog {
				t.Errorf("watchdog gap %v exceeds WATCHDOG_USEC %v", gap, d.Watchdog)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	if !t.Run("ipv4 banned after 3 failures", func(t *testing.T) {
		attackUntilBanned(t, h, testbed.SrvAddr4, "", testbed.AtkAddr4)
	}) {
		t.FailNow()
	}
	if !t.Run("ipv6 banned after 3 failures", func(t *testing.T) {
		attackUntilBanned(t, h, testbed.SrvAddr6, "", testbed.AtkAddr6)
	}) {
		t.FailNow()
	}

	t.Run("status", func(t *testing.T) {
		st := d.Status(t, "sshd")
		if len(st) != 1 || st[0].Name != "sshd" {
			t.Fatalf("status sshd = %+v", st)
		}
		s := st[0]
		if s.CurrentlyBanned != 2 || s.TotalBanned != 2 || s.TotalFailed < 6 {
			t.Errorf("status sshd = %+v; want 2 banned now, 2 in total, ≥ 6 failures", s)
		}
		for _, a := range []string{testbed.AtkAddr4, testbed.AtkAddr6} {
			if !containsAddr(s.Banned, a) {
				t.Errorf("status sshd banned = %q, missing %s", s.Banned, a)
			}
		}
	})

	t.Run("whitelisted never refused", func(t *testing.T) {
		const wl = "198.51.100.3"
		h.AddAttackerAddr(t, wl+"/24")
		for i := 1; i <= 6; i++ {
			a := h.SSHAttempt(testbed.SrvAddr4, wl)
			if a.Outcome != testbed.Denied {
				t.Fatalf("whitelisted attempt %d: %s, want %s; ssh said %q", i, a.Outcome, testbed.Denied, a.Output)
			}
		}
		// Give the daemon time to act on the 6 failures, then try again.
		time.Sleep(time.Second)
		if a := h.SSHAttempt(testbed.SrvAddr4, wl); a.Outcome != testbed.Denied {
			t.Fatalf("whitelisted attempt 7: %s, want %s; ssh said %q", a.Outcome, testbed.Denied, a.Output)
		}
		if set, ok := h.SrvBanned(t, wl); ok {
			t.Errorf("whitelisted %s is in set %s", wl, set)
		}
	})

	t.Run("unban refused for unprivileged user", func(t *testing.T) {
		testbed.EnsureUser(t, unprivUser)
		out, err := bed.Bus.BusCallAs(unprivUser, "Unban", "s", testbed.AtkAddr4)
		if err == nil || !strings.Contains(out, "may not change bans") {
			t.Errorf("busctl Unban as %s: err %v, output %q; want the daemon's refusal", unprivUser, err, out)
		}
		// dbus-send names the error: the bus lets the call through and the
		// daemon refuses it (uid not 0, and no polkit on the test's bus).
		out, err = bed.Bus.BusSendAs(unprivUser, "Unban", "string:"+testbed.AtkAddr4)
		if err == nil || !strings.Contains(out, "org.jailkeeper.Error.PermissionDenied") {
			t.Errorf("dbus-send Unban as %s: err %v, output %q; want org.jailkeeper.Error.PermissionDenied", unprivUser, err, out)
		}
		if _, ok := h.SrvBanned(t, testbed.AtkAddr4); !ok {
			t.Errorf("%s no longer banned after a refused Unban", testbed.AtkAddr4)
		}
		if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Refused {
			t.Errorf("after refused Unban: %s, want %s", a.Outcome, testbed.Refused)
		}
	})

	t.Run("unban as root", func(t *testing.T) {
		// Exactly the README's command line.
		out, err := bed.Bus.BusCall("Unban", "s", testbed.AtkAddr4)
		if err != nil {
			t.Fatalf("busctl call … Unban s %s: %v\n%s", testbed.AtkAddr4, err, out)
		}
		if set, ok := h.SrvBanned(t, testbed.AtkAddr4); ok {
			t.Errorf("%s still in set %s after Unban returned", testbed.AtkAddr4, set)
		}
		if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Denied {
			t.Errorf("after Unban: %s, want %s; ssh said %q", a.Outcome, testbed.Denied, a.Output)
		}
		if _, ok := h.SrvBanned(t, testbed.AtkAddr6); !ok {
			t.Errorf("Unban of %s also lifted %s", testbed.AtkAddr4, testbed.AtkAddr6)
		}
	})

	t.Run("restart keeps bans", func(t *testing.T) {
		// 2001:db8::2 is still banned. Probe it without pause from before
		// SIGTERM until READY=1 of the next run.
		if _, ok := h.SrvBanned(t, testbed.AtkAddr6); !ok {
			t.Fatalf("%s not banned before the restart", testbed.AtkAddr6)
		}
		old := d.Notify
		stopProbe := make(chan struct{})
		type probe struct {
			at time.Time
			a  testbed.Attempt
		}
		probes := make(chan probe, 1024)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(probes)
			for {
				select {
				case <-stopProbe:
					return
				default:
				}
				probes <- probe{time.Now(), h.SSHAttempt(testbed.SrvAddr6, "")}
			}
		}()
		time.Sleep(200 * time.Millisecond)
		if err := d.Stop(t); err != nil {
			t.Errorf("daemon exit on SIGTERM: %v", err)
		}
		stopped := time.Now()
		if _, _, found := old.Find("STOPPING=1"); !found {
			t.Errorf("no STOPPING=1 on SIGTERM")
		}
		for _, v6 := range []bool{false, true} {
			if ok, why := h.SrvLayout(v6); !ok {
				t.Errorf("layout gone while stopped: %s", why)
			}
		}
		time.Sleep(time.Second) // the gap: no daemon at all
		hook, readySeen := readyProbe(h, testbed.AtkAddr6)
		d.OnNotify = hook
		d.Start(t)
		d.WaitReady(t, readyTimeout)
		close(stopProbe)
		wg.Wait()
		n, inGap := 0, 0
		for p := range probes {
			n++
			if p.at.After(stopped) && p.at.Before(d.Started) {
				inGap++
			}
			if p.a.Outcome != testbed.Refused {
				t.Errorf("probe at %v: %s, want %s; ssh said %q", p.at.Format("15:04:05.000"), p.a.Outcome, testbed.Refused, p.a.Output)
			}
		}
		if inGap == 0 {
			t.Errorf("no probe ran while the daemon was stopped (%d probes)", n)
		}
		t.Logf("%d probes across the restart, %d while no daemon ran: all refused", n, inGap)
		rc, ok := readySeen()
		if !ok {
			t.Fatal("READY=1 hook did not run after the restart")
		}
		if !rc.banned[testbed.AtkAddr6] {
			t.Errorf("at READY=1 after the restart, %s was not in any set (%v)", testbed.AtkAddr6, rc.probeErrors)
		}
		if !rc.layout4 || !rc.layout6 {
			t.Errorf("at READY=1 after the restart the layout was incomplete: %s", rc.why)
		}
		st := d.Status(t, "sshd")
		if len(st) != 1 || !containsAddr(st[0].Banned, testbed.AtkAddr6) {
			t.Errorf("status after restart = %+v, want %s banned", st, testbed.AtkAddr6)
		}
	})
}

// containsAddr reports whether list holds addr, as an address or as a
// prefix covering it (status may print "2001:db8::/64").
func containsAddr(list []string, addr string) bool {
	a := netip.MustParseAddr(addr)
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(a) {
			return true
		}
		if b, err := netip.ParseAddr(s); err == nil && b == a {
			return true
		}
	}
	return false
}

// checkHostFirewallUntouched snapshots the host's own firewall now and
// compares at the very end of the test (this cleanup is registered first,
// so it runs after every namespace and process of the bed is gone).
func checkHostFirewallUntouched(t *testing.T) {
	t.Helper()
	before, err := testbed.HostFirewall()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		after, err := testbed.HostFirewall()
		if err != nil {
			t.Error(err)
			return
		}
		if after != before {
			t.Errorf("the host's own firewall changed during the test:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}
