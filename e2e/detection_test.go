package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// startDaemon builds a bed and starts the daemon with the drop-in of
// the detection cases plus extra (a later drop-in, overriding key by key).
func startDaemon(t *testing.T, extra string) (*testbed.Bed, *testbed.Daemon) {
	t.Helper()
	testbed.Require(t, testbed.BedCommands...)
	bed := testbed.NewBed(t)
	cfg := map[string]string{"10-sshd.yaml": testbed.SSHJailConfig}
	if extra != "" {
		cfg["20-extra.yaml"] = extra
	}
	d := bed.NewDaemon(t, cfg)
	d.Start(t)
	d.WaitReady(t, readyTimeout)
	return bed, d
}

// waitBanned waits until every address is in a ban set, or fails listing
// the ones that are not.
func waitBanned(t *testing.T, h *testbed.Hosts, addrs []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, a := range addrs {
			if _, ok := h.SrvBanned(t, a); !ok {
				missing = append(missing, a)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not banned %v after the attack: %v", timeout, missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIPv6RotationInsidePrefix: an attacker rotating addresses
// inside its /64, each failing once or twice, is banned as the /64 once
// the prefix reaches maxretry failures; a fresh address of that /64 is
// refused, and an address outside it is not.
func TestIPv6RotationInsidePrefix(t *testing.T) {
	bed, d := startDaemon(t, "")
	h := bed.Hosts
	const net = "2001:db8:0:1::/64"
	h.RouteToAttacker(t, net)
	addrs := []string{"2001:db8:0:1::10", "2001:db8:0:1::11", "2001:db8:0:1::12"}
	for _, a := range addrs {
		h.AddAttackerAddr(t, a+"/64")
	}
	// ::10 fails twice, ::11 once: the 3rd failure of the /64.
	for i, src := range []string{addrs[0], addrs[0], addrs[1]} {
		if _, ok := h.SrvBanned(t, src); ok {
			t.Fatalf("%s banned before failure %d of its /64", src, i+1)
		}
		a := h.SSHAttempt(testbed.SrvAddr6, src)
		if a.Outcome != testbed.Denied {
			t.Fatalf("failure %d from %s: %s, want %s; ssh said %q", i+1, src, a.Outcome, testbed.Denied, a.Output)
		}
	}
	waitBanned(t, h, addrs, banTimeout) // the whole /64, ::12 included
	if a := h.SSHAttempt(testbed.SrvAddr6, addrs[2]); a.Outcome != testbed.Refused {
		t.Errorf("fresh address %s of the banned /64: %s, want %s; ssh said %q", addrs[2], a.Outcome, testbed.Refused, a.Output)
	}
	if a := h.SSHAttempt(testbed.SrvAddr6, testbed.AtkAddr6); a.Outcome != testbed.Denied {
		t.Errorf("%s outside the banned /64: %s, want %s", testbed.AtkAddr6, a.Outcome, testbed.Denied)
	}
	st := d.Status(t, "sshd")
	if len(st) != 1 || !containsAddr(st[0].Banned, addrs[2]) || st[0].CurrentlyBanned != 1 {
		t.Errorf("status = %+v, want exactly one ban covering %s", st, net)
	}
}

// TestDistributedAttack: 20 addresses × 2 tries on one account
// stay below maxretry (3) each, but with distributed detection every
// address taking part is banned.
func TestDistributedAttack(t *testing.T) {
	bed, d := startDaemon(t, `jails:
  sshd:
    distributed: {window: 10m, min_addresses: 10, maxretry: 2}
`)
	h := bed.Hosts
	var addrs []string
	for i := 100; i < 120; i++ {
		a := fmt.Sprintf("198.51.100.%d", i)
		addrs = append(addrs, a)
		h.AddAttackerAddr(t, a+"/24")
	}
	for _, src := range addrs {
		for try := 1; try <= 2; try++ {
			a := h.SSHAttempt(testbed.SrvAddr4, src)
			if a.Outcome != testbed.Denied {
				t.Fatalf("try %d from %s: %s, want %s; ssh said %q", try, src, a.Outcome, testbed.Denied, a.Output)
			}
		}
	}
	waitBanned(t, h, addrs, banTimeout)
	for _, src := range addrs {
		if a := h.SSHAttempt(testbed.SrvAddr4, src); a.Outcome != testbed.Refused {
			t.Errorf("3rd try from %s: %s, want %s", src, a.Outcome, testbed.Refused)
		}
	}
	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Denied {
		t.Errorf("%s, which took no part: %s, want %s", testbed.AtkAddr4, a.Outcome, testbed.Denied)
	}
	if st := d.Status(t, "sshd"); len(st) != 1 || st[0].CurrentlyBanned != len(addrs) {
		t.Errorf("status = %+v, want %d banned", st, len(addrs))
	}
}
