package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestCorruptStateFile: the daemon is stopped, its state file damaged,
// and started again, once per kind of damage. It must start (no panic,
// no exit), move the file aside, say so at priority crit, and keep every
// ban the kernel held: in the sets, in status, refusing the attacker.
func TestCorruptStateFile(t *testing.T) {
	t.Parallel()
	bed, d := startDaemon(t, "")
	h := bed.Hosts
	if out, err := bed.Bus.BusCall("Ban", "sst", "sshd", testbed.AtkAddr4, "3600"); err != nil {
		t.Fatalf("busctl Ban: %v\n%s", err, out)
	}
	db := filepath.Join(d.StateDir, "jailkeeper.db")
	damages := []struct {
		name   string
		damage func() error
	}{
		{"truncated to zero", func() error { return os.Truncate(db, 0) }},
		{"truncated to half", func() error {
			fi, err := os.Stat(db)
			if err != nil {
				return err
			}
			return os.Truncate(db, fi.Size()/2)
		}},
		{"overwritten", func() error { return os.WriteFile(db, []byte("not a database\n"), 0o600) }},
	}
	for i, dm := range damages {
		if err := d.Stop(t); err != nil {
			t.Fatalf("%s: stopping: %v", dm.name, err)
		}
		if err := dm.damage(); err != nil {
			t.Fatal(err)
		}
		d.Start(t)
		d.WaitReady(t, readyTimeout)
		aside, _ := filepath.Glob(db + ".corrupt-*")
		if len(aside) != i+1 {
			t.Fatalf("%s: %d files moved aside (%q), want %d", dm.name, len(aside), aside, i+1)
		}
		if _, ok := h.SrvBanned(t, testbed.AtkAddr4); !ok {
			t.Fatalf("%s: %s no longer in a ban set", dm.name, testbed.AtkAddr4)
		}
		if st := d.Status(t, "sshd"); len(st) != 1 || !containsAddr(st[0].Banned, testbed.AtkAddr4) {
			t.Fatalf("%s: status %+v, want %s banned", dm.name, st, testbed.AtkAddr4)
		}
		if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Refused {
			t.Fatalf("%s: attempt after the start: %s, want %s", dm.name, a.Outcome, testbed.Refused)
		}
		out, err := bed.Journald.Command("journalctl", "--no-pager", "-o", "cat", "-p", "crit", msgRepair).Output()
		if err != nil || strings.Count(string(out), "starting from the bans the kernel holds") != i+1 {
			t.Fatalf("%s: crit lines %q (%v), want %d saying the state file was moved aside", dm.name, out, err, i+1)
		}
		t.Logf("%s: %s", dm.name, strings.TrimSpace(lastLine(string(out))))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
