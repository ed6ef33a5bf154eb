package testbed

import (
	"strings"
	"testing"
)

// Bed is the whole end-to-end bed: the server and attacker
// namespaces, a private journald (so that failures logged by other tests
// on this machine are never counted, even with the daemon's look-back of
// findtime), a private system bus with the project's policy, and a real
// sshd in the server namespace logging as sshd.service into that journal.
type Bed struct {
	Hosts    *Hosts
	Journald *Journald
	Bus      *Bus
	SSHD     *SSHD
}

// BedCommands are the commands a Bed needs, for Require.
var BedCommands = []string{"ip", "iptables", "ip6tables", "ipset", "sshd", "ssh", "ssh-keygen",
	"dbus-daemon", "busctl", "systemd-cat", "journalctl", "unshare", "nsenter", "setpriv"}

// NewBed builds a Bed; everything is torn down at cleanup.
func NewBed(t testing.TB) *Bed {
	t.Helper()
	Require(t, BedCommands...)
	b := &Bed{}
	b.Hosts = NewHosts(t)
	b.Journald = StartJournald(t)
	b.Bus = NewBus(t)
	b.SSHD = StartSSHDIn(t, b.Hosts, b.Journald)
	return b
}

// NewDaemon returns a jailkeeper daemon for this bed (see NewDaemon),
// reading the bed's private journal. It is not started.
func (b *Bed) NewDaemon(t testing.TB, configs map[string]string) *Daemon {
	t.Helper()
	d := NewDaemon(t, b.Hosts, b.Bus, configs)
	d.Journald = b.Journald
	t.Cleanup(func() {
		// Runs before the daemon is stopped and the journald goes away.
		if t.Failed() {
			out, _ := b.Journald.Command("journalctl", "--no-pager", "-o", "short-precise", "-n", "300").CombinedOutput()
			t.Logf("the bed's journal (last 300 entries):\n%s", out)
		}
	})
	return d
}

// JournalLines returns the MESSAGE of every entry in the bed's journal
// matching the journalctl matches given (e.g. "_SYSTEMD_UNIT=sshd.service").
func (b *Bed) JournalLines(t testing.TB, matches ...string) []string {
	t.Helper()
	args := append([]string{"--no-pager", "-o", "cat"}, matches...)
	out, err := b.Journald.Command("journalctl", args...).Output()
	if err != nil {
		t.Fatalf("journalctl %v: %v", matches, err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
