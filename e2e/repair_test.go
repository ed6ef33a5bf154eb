package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// msgRepair is the daemon's MESSAGE_ID for firewall repairs (docs/daemon.md).
const msgRepair = "MESSAGE_ID=8c2e4fd3b1a24a6f9d1b6a0f3c5e7a05"

// TestWatchdogRepairsDrift: someone flushes jailkeeper's chain,
// deletes its jump from INPUT, or inserts a rule above it; within one
// watchdog period the daemon puts the layout back, the banned attacker is
// refused again, the repair is logged, and the watchdog keeps pinging.
func TestWatchdogRepairsDrift(t *testing.T) {
	bed, d := startDaemon(t, "")
	h := bed.Hosts
	if out, err := bed.Bus.BusCall("Ban", "sst", "sshd", testbed.AtkAddr4, "3600"); err != nil {
		t.Fatalf("busctl Ban: %v\n%s", err, out)
	}
	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Refused {
		t.Fatalf("after Ban: %s, want %s", a.Outcome, testbed.Refused)
	}
	drifts := []struct {
		name string
		argv []string
	}{
		{"flush chain", []string{"iptables", "-F", "JAILKEEPER"}},
		{"delete jump", []string{"iptables", "-D", "INPUT", "1"}},
		{"rule above ours", []string{"iptables", "-I", "INPUT", "1", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"}},
	}
	period := d.Watchdog
	for _, drift := range drifts {
		t.Run(drift.name, func(t *testing.T) {
			before := len(bed.JournalLines(t, msgRepair))
			pings := d.Notify.Count("WATCHDOG=1")
			if out, err := h.InSrv(drift.argv[0], drift.argv[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", drift.argv, err, out)
			}
			broke := time.Now()
			if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Denied {
				t.Logf("right after the drift: %s (repair already done?)", a.Outcome)
			}
			deadline := broke.Add(period + time.Second)
			for {
				a := h.SSHAttempt(testbed.SrvAddr4, "")
				if a.Outcome == testbed.Refused {
					t.Logf("refused again %v after the drift", time.Since(broke).Round(time.Millisecond))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("still %s %v after %s (watchdog period %v)", a.Outcome, time.Since(broke), drift.name, period)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if ok, why := h.SrvLayout(false); !ok {
				t.Fatalf("layout after repair: %s", why)
			}
			// The repair is logged after it is done: the journal may
			// store the line a moment after the probe saw the refusal.
			var lines []string
			deadline = time.Now().Add(2 * time.Second)
			for {
				lines = bed.JournalLines(t, msgRepair)
				if len(lines) > before && strings.Contains(strings.Join(lines[before:], "\n"), "drift repaired") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no repair logged within 2 s of the refusal; repair lines: %q", lines)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("logged: %s", lines[len(lines)-1])
			waitUntil(t, period+time.Second, func() bool { return d.Notify.Count("WATCHDOG=1") > pings+1 })
		})
	}
}

func waitUntil(t *testing.T, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNFTablesBackend: the same daemon on the nftables backend
// bans over IPv4 and IPv6, and repairs `nft flush ruleset` within one
// watchdog period.
func TestNFTablesBackend(t *testing.T) {
	testbed.Require(t, "nft")
	bed, d := startDaemon(t, "firewall: {backend: nftables}\n")
	h := bed.Hosts
	for _, addr := range []string{testbed.AtkAddr4, testbed.AtkAddr6} {
		if out, err := bed.Bus.BusCall("Ban", "sst", "sshd", addr, "3600"); err != nil {
			t.Fatalf("busctl Ban %s: %v\n%s", addr, err, out)
		}
	}
	check := func(when string) {
		t.Helper()
		for _, target := range []string{testbed.SrvAddr4, testbed.SrvAddr6} {
			if a := h.SSHAttempt(target, ""); a.Outcome != testbed.Refused {
				t.Fatalf("%s: attempt to %s: %s, want %s; ssh said %q", when, target, a.Outcome, testbed.Refused, a.Output)
			}
		}
	}
	check("after Ban")
	if out, err := h.InSrv("nft", "list", "table", "inet", "jailkeeper").CombinedOutput(); err != nil {
		t.Fatalf("nft list table inet jailkeeper: %v\n%s", err, out)
	}
	before := len(bed.JournalLines(t, msgRepair))
	if out, err := h.InSrv("nft", "flush", "ruleset").CombinedOutput(); err != nil {
		t.Fatalf("nft flush ruleset: %v\n%s", err, out)
	}
	broke := time.Now()
	waitUntil(t, d.Watchdog+time.Second, func() bool {
		return len(bed.JournalLines(t, msgRepair)) > before
	})
	t.Logf("repair logged %v after nft flush ruleset", time.Since(broke).Round(time.Millisecond))
	check("after the repair")
}
