// Package faults is jailkeeper's fault and abuse suite: the real daemon,
// built from this tree, in a network namespace with a private journald and
// system bus (internal/testbed), fed bad input and bad luck — addresses
// that must never be banned from every entry point, an unprivileged peer
// flooding the D-Bus API without reading its replies, a restart of the
// bus. Each case asserts the kernel sets, `jailkeeper status` and the
// sd_notify contract (WATCHDOG=1, STATUS=). Root only (testbed.Require).
package faults

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

func TestMain(m *testing.M) {
	if os.Getenv(floodEnv) != "" {
		os.Exit(flood())
	}
	code := m.Run()
	testbed.RemoveBuild()
	os.Exit(code)
}

const (
	readyTimeout = 20 * time.Second
	banTimeout   = 5 * time.Second
	unprivUser   = "jk-faults"
)

// config is the jail of every case: sshd.service, 3 failures, 1 h.
const config = `whitelist: [198.51.100.3]
firewall: {backend: iptables}
jails:
  sshd:
    units: [sshd.service]
    filter: sshd
    maxretry: 3
    findtime: 10m
    bantime: 1h
    ports: [22]
`

// bed is what every case runs on: the two namespaces, a private journald
// and bus, and the daemon (started, ready).
type bed struct {
	h  *testbed.Hosts
	jd *testbed.Journald
	d  *testbed.Daemon
}

func newBed(t *testing.T) *bed {
	t.Helper()
	testbed.Require(t, "ip", "iptables", "ip6tables", "ipset", "dbus-daemon", "busctl", "journalctl",
		"systemd-cat", "unshare", "nsenter", "setpriv")
	b := &bed{h: testbed.NewHosts(t), jd: testbed.StartJournald(t)}
	b.d = testbed.NewDaemon(t, b.h, testbed.NewBus(t), map[string]string{"10-sshd.yaml": config})
	b.d.Journald = b.jd
	b.d.Start(t)
	b.d.WaitReady(t, readyTimeout)
	return b
}

// fail writes n sshd password failures from addr as sshd.service.
func (b *bed) fail(t *testing.T, addr string, n int) {
	t.Helper()
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("Failed password for root from %s port %d ssh2", addr, 40000+i)
	}
	if err := b.jd.WriteAsUnit("sshd.service", msgs); err != nil {
		t.Fatal(err)
	}
}

// waitBanned waits until addr is in a ban set of the server's kernel.
func (b *bed) waitBanned(t *testing.T, addr string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if _, ok := b.h.SrvBanned(t, addr); ok {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not in the kernel's ban sets %v after its failures", addr, within)
	return 0
}

// cli runs the jailkeeper CLI against the bed's bus, as root.
func (b *bed) cli(args ...string) (string, error) {
	cmd := exec.Command(b.d.Bin, args...)
	cmd.Env = append(os.Environ(), b.d.Bus.Env())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// pings counts WATCHDOG=1 since t0.
func (b *bed) pings(since time.Time) int {
	n := 0
	for _, m := range b.d.Notify.Messages() {
		for _, l := range m.Lines {
			if l == "WATCHDOG=1" && m.At.After(since) {
				n++
			}
		}
	}
	return n
}

// journal returns the messages of the bed's journal matching matches.
func (b *bed) journal(t *testing.T, matches ...string) string {
	t.Helper()
	out, err := b.jd.Command("journalctl", append([]string{"--no-pager", "-o", "cat"}, matches...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("journalctl %v: %v\n%s", matches, err, out)
	}
	return string(out)
}

// lastStatus is the last STATUS= line received.
func (b *bed) lastStatus() string {
	s := ""
	for _, m := range b.d.Notify.Messages() {
		for _, l := range m.Lines {
			if strings.HasPrefix(l, "STATUS=") {
				s = l
			}
		}
	}
	return s
}

// checkWatchdog asserts WATCHDOG=1 kept coming over the last span: at least
// one per WATCHDOG_USEC.
func (b *bed) checkWatchdog(t *testing.T, since time.Time) {
	t.Helper()
	span := time.Since(since)
	if want := int(span / b.d.Watchdog); b.pings(since) < want {
		t.Errorf("%d WATCHDOG=1 in %v, want ≥ %d", b.pings(since), span.Round(time.Millisecond), want)
	}
}

// TestSpecialAddresses: 0.0.0.0, ::, multicast, broadcast, link-local and
// loopback are refused from the log, the CLI and D-Bus with a clear error;
// the kernel never sees them, later bans still reach it, status and the
// kernel agree, and the watchdog keeps pinging.
func TestSpecialAddresses(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	since := time.Now()
	specials := []string{"0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "169.254.1.1", "fe80::1", "127.0.0.1"}
	for _, a := range specials {
		out, err := b.cli("ban", "sshd", a)
		if err == nil || !strings.Contains(out, "not bannable") {
			t.Errorf("jailkeeper ban sshd %s = %q, %v; want refused as not bannable", a, out, err)
		}
		out, err = b.d.Bus.BusCall("Ban", "sst", "sshd", a, "0")
		if err == nil || !strings.Contains(out, "not bannable") {
			t.Errorf("D-Bus Ban %s = %q, %v; want refused as not bannable", a, out, err)
		}
	}
	out, err := b.d.Bus.BusCall("BanMany", "sast", "sshd", "2", "203.0.113.50", "0.0.0.0", "0")
	if err == nil || !strings.Contains(out, "not bannable") {
		t.Errorf("D-Bus BanMany with 0.0.0.0 = %q, %v", out, err)
	}
	for _, a := range []string{"0.0.0.0", "::", "ff02::1", "fe80::1", "255.255.255.255"} {
		b.fail(t, a, 3)
	}
	// A real attacker after them is banned at once.
	b.fail(t, "203.0.113.9", 3)
	b.waitBanned(t, "203.0.113.9", banTimeout)
	if out, err := b.cli("ban", "sshd", "203.0.113.10"); err != nil {
		t.Fatalf("a good ban after the refused ones: %q, %v", out, err)
	}
	for _, s := range b.h.SrvSets(t) {
		if s.IsWhitelist() {
			continue
		}
		for _, m := range s.Members {
			if err := prefix.Refuse(m, nil); err != nil {
				t.Errorf("kernel set %s holds %s: %v", s.Name, m, err)
			}
		}
	}
	st := b.d.Status(t, "sshd")
	if len(st) != 1 || st[0].CurrentlyBanned != 2 {
		t.Fatalf("status = %+v, want 2 bans (203.0.113.9, 203.0.113.10)", st)
	}
	for _, a := range st[0].Banned {
		if _, ok := b.h.SrvBanned(t, a); !ok {
			t.Errorf("status lists %s, the kernel does not hold it", a)
		}
	}
	// The log says why the log lines banned nothing.
	time.Sleep(2 * b.d.Watchdog)
	if j := b.journal(t, "JAIL=sshd", "ADDRESS=0.0.0.0"); !strings.Contains(j, "not banning in jail sshd: not bannable: 0.0.0.0 is the unspecified address") {
		t.Errorf("the journal lacks the refusal of 0.0.0.0 from the log:\n%s", j)
	}
	b.checkWatchdog(t, since)
	// A restart loads what the table holds, and nothing else.
	if err := b.d.Stop(t); err != nil {
		t.Fatal(err)
	}
	b.d.Start(t)
	b.d.WaitReady(t, readyTimeout)
	if st := b.d.Status(t, "sshd"); st[0].CurrentlyBanned != 2 {
		t.Errorf("after restart status = %+v", st)
	}
}

// TestBusRestart: after dbus-daemon restarts, the daemon keeps
// banning and pinging, says in STATUS= that its API is down, then takes
// org.jailkeeper back (with backoff) and the CLI works again.
func TestBusRestart(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	since := time.Now()
	b.d.Bus.Restart(t)
	// Banning goes on without the bus.
	b.fail(t, "203.0.113.31", 3)
	b.waitBanned(t, "203.0.113.31", banTimeout)
	// Back within the backoff (1 s, 2 s, …) plus the bus's start.
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := b.cli("status", "sshd", "--json")
		if err == nil && strings.Contains(out, "203.0.113.31") {
			t.Logf("the API answered again %v after the bus restarted", time.Since(since).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jailkeeper status after the bus restarted: %q, %v", out, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	sawDown := false
	for _, m := range b.d.Notify.Messages() {
		for _, l := range m.Lines {
			sawDown = sawDown || (m.At.After(since) && strings.HasPrefix(l, "STATUS=") && strings.Contains(l, "D-Bus API down, retrying"))
		}
	}
	if !sawDown {
		t.Errorf("no STATUS= said the D-Bus API was down; last: %s", b.lastStatus())
	}
	if st := b.lastStatus(); strings.Contains(st, "D-Bus API down") {
		t.Errorf("STATUS= still says the API is down once it is back: %s", st)
	}
	if j := b.journal(t, "-n", "50"); !strings.Contains(j, "system bus up: took org.jailkeeper") {
		t.Errorf("the journal does not say the API was exported again:\n%s", j)
	}
	b.checkWatchdog(t, since)
}

// TestWhitelistDNSDownAtStart: a whitelist host name and no
// DNS (the server namespace reaches no resolver) at start. The daemon
// starts with the rest of the whitelist instead of exiting 78, says what
// did not resolve, and bans; the whitelisted address still is exempt.
func TestWhitelistDNSDownAtStart(t *testing.T) {
	t.Parallel()
	testbed.Require(t, "ip", "iptables", "ipset", "dbus-daemon", "journalctl", "systemd-cat", "unshare", "nsenter")
	h := testbed.NewHosts(t)
	jd := testbed.StartJournald(t)
	cfg := strings.Replace(config, "whitelist: [198.51.100.3]", "whitelist: [admin-box.example.com, 198.51.100.3]", 1)
	d := testbed.NewDaemon(t, h, testbed.NewBus(t), map[string]string{"10-sshd.yaml": cfg})
	d.Journald = jd
	d.Start(t)
	start := time.Now()
	d.WaitReady(t, readyTimeout)
	t.Logf("READY=1 %v after start with DNS down", time.Since(start).Round(time.Millisecond))
	b := &bed{h: h, jd: jd, d: d}
	if j := b.journal(t, "-p", "warning"); !strings.Contains(j, `"admin-box.example.com"`) || !strings.Contains(j, "retrying in the background") {
		t.Errorf("no warning names the host that did not resolve:\n%s", j)
	}
	b.fail(t, "198.51.100.3", 3)
	b.fail(t, "203.0.113.41", 3)
	b.waitBanned(t, "203.0.113.41", banTimeout)
	if _, ok := h.SrvBanned(t, "198.51.100.3"); ok {
		t.Error("the whitelisted 198.51.100.3 was banned")
	}
	since := time.Now()
	time.Sleep(2 * d.Watchdog)
	b.checkWatchdog(t, since)
}
