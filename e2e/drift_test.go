package e2e

import (
	"errors"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// repairBound is the longest a flushed ban may stay open: the firewall's
// Watcher wakes the daemon on the kernel's nftables notification, or at
// its next ipset check (every 250 ms), instead of at the next watchdog
// period.
const repairBound = time.Second

// driftRounds is how often each kind of flush is repeated.
const driftRounds = 5

// TestDriftRepairedWithinASecond flushes, for each backend, every kind of
// jailkeeper's kernel objects a user or a firewall script may flush, and
// measures from the end of the command to the banned attacker being
// refused again. Each repair must take under a second and be logged
// exactly once.
func TestDriftRepairedWithinASecond(t *testing.T) {
	cases := []struct {
		backend string
		flushes map[string][]string
	}{
		{"iptables", map[string][]string{
			"iptables -F":            {"iptables", "-F"},
			"iptables -F JAILKEEPER": {"iptables", "-F", "JAILKEEPER"},
			"ipset flush":            {"ipset", "flush", "jk-sshd-4"},
			"nft flush ruleset":      {"nft", "flush", "ruleset"},
		}},
		{"nftables", map[string][]string{
			"nft flush ruleset": {"nft", "flush", "ruleset"},
			"nft flush chain":   {"nft", "flush", "chain", "inet", "jailkeeper", "input"},
			"nft flush set":     {"nft", "flush", "set", "inet", "jailkeeper", "sshd-4"},
			"nft delete table":  {"nft", "delete", "table", "inet", "jailkeeper"},
		}},
	}
	for _, c := range cases {
		t.Run(c.backend, func(t *testing.T) {
			t.Parallel()
			testbed.Require(t, append(testbed.BedCommands, "nft")...)
			bed := testbed.NewBed(t)
			h := bed.Hosts
			d := bed.NewDaemon(t, map[string]string{
				"10-sshd.yaml":  testbed.SSHJailConfig,
				"20-extra.yaml": "firewall: {backend: " + c.backend + "}\n",
			})
			// A watchdog period as long as a real unit's: the repairs
			// measured here must not be the watchdog's.
			d.Watchdog = 10 * time.Second
			d.Start(t)
			d.WaitReady(t, readyTimeout)
			if out, err := bed.Bus.BusCall("Ban", "sst", "sshd", testbed.AtkAddr4, "3600"); err != nil {
				t.Fatalf("busctl Ban: %v\n%s", err, out)
			}
			if !refused(t, h) {
				t.Fatal("not refused after Ban")
			}
			names := make([]string, 0, len(c.flushes))
			for n := range c.flushes {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, name := range names {
				argv := c.flushes[name]
				var took []time.Duration
				opened := 0
				before := len(repairLines(t, bed))
				for round := range driftRounds {
					// Timed from the start of the command: the nftables
					// repair is often done before the command has exited.
					flushed := time.Now()
					if out, err := h.InSrv(argv[0], argv[1:]...).CombinedOutput(); err != nil {
						t.Fatalf("%s: %v\n%s", name, err, out)
					}
					for !refused(t, h) {
						if opened++; time.Since(flushed) > d.Watchdog {
							t.Fatalf("%s (%s): still open %v after the flush", name, c.backend, time.Since(flushed))
						}
						time.Sleep(5 * time.Millisecond)
					}
					took = append(took, time.Since(flushed))
					// The probe sees the IPv4 half closed; the repair may
					// still be at work on IPv6 (seconds on a loaded
					// machine). The next flush waits for its log line:
					// a flush in the middle of a repair is another drift.
					for wait := time.Now().Add(3 * time.Second); len(repairLines(t, bed))-before <= round && time.Now().Before(wait); {
						time.Sleep(20 * time.Millisecond)
					}
					// Let a follow-up check (our own repair is a change
					// too) run before the next round.
					time.Sleep(300 * time.Millisecond)
				}
				slices.Sort(took)
				t.Logf("%-22s %s: closed again within median %v, max %v of the command's start (%d probes found it open)", name, c.backend,
					took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), opened)
				if took[len(took)-1] > repairBound {
					t.Errorf("%s (%s): a repair took %v, want under %v (all: %v)", name, c.backend, took[len(took)-1], repairBound, took)
				}
				// Each flush was repaired (the repair is often too quick
				// for a probe to see the hole) and logged once: wait for
				// the journal to have them all, then for a straggler.
				deadline := time.Now().Add(2 * time.Second)
				var lines []string
				for {
					lines = repairLines(t, bed)[before:]
					if len(lines) >= driftRounds || time.Now().After(deadline) {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if len(lines) != driftRounds {
					t.Errorf("%s (%s): %d repair log lines for %d flushes, want one each:\n%s", name, c.backend, len(lines), driftRounds, strings.Join(lines, "\n"))
				}
			}
			if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Refused {
				t.Fatalf("after every flush: %s, want %s", a.Outcome, testbed.Refused)
			}
		})
	}
}

// refused reports whether a TCP connection from the attacker to the
// server's sshd is refused (the ban's reject rule). Accepted, or not
// answered in time (sshd throttles a probe every few milliseconds while
// the hole is open), it is not.
func refused(t *testing.T, h *testbed.Hosts) bool {
	t.Helper()
	c, err := h.AtkDial(net.JoinHostPort(testbed.SrvAddr4, "22"), 100*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// repairLines returns the daemon's log lines about a repair (the
// daemon's "firewall drift repaired: …", and any other line saying
// "repaired").
func repairLines(t *testing.T, bed *testbed.Bed) []string {
	t.Helper()
	var out []string
	for _, l := range bed.JournalLines(t, msgRepair) {
		if strings.Contains(l, "repaired") {
			out = append(out, l)
		}
	}
	return out
}
