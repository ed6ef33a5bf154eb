package faults

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// msgSave is the MESSAGE_ID of bans that could not be saved.
const msgSave = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a0a"

// TestDiskFullThenFreed: the state file system fills up. Bans
// still reach the kernel; the failure is visible (an error entry with its
// MESSAGE_ID, STATUS=, WATCHDOG=1 withheld); once space is freed the bans
// are saved without a restart, and a restart afterwards restores every
// one of them.
func TestDiskFullThenFreed(t *testing.T) {
	t.Parallel()
	testbed.Require(t, "ip", "iptables", "ipset", "dbus-daemon", "journalctl", "systemd-cat", "unshare", "nsenter", "mount", "umount")
	h := testbed.NewHosts(t)
	jd := testbed.StartJournald(t)
	d := testbed.NewDaemon(t, h, testbed.NewBus(t), map[string]string{"10-sshd.yaml": config})
	d.Journald = jd
	// A 4 MB file system for the state, in the journald's mount namespace
	// (where the daemon runs): the host never sees it.
	ns := func(args ...string) string {
		t.Helper()
		out, err := jd.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ns("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "jk-state", d.StateDir)
	t.Cleanup(func() { jd.Command("umount", "-l", d.StateDir).Run() })
	d.Start(t)
	d.WaitReady(t, readyTimeout)
	b := &bed{h: h, jd: jd, d: d}

	fill := filepath.Join(d.StateDir, "fill")
	jd.Command("sh", "-c", "cat /dev/zero > "+fill).Run() // ENOSPC ends it
	// 300 attackers in one write: their commit needs more room than the
	// pages bbolt may still have free in its file.
	var addrs, msgs []string
	for i := range 300 {
		a := fmt.Sprintf("10.9.%d.%d", i/250, i%250+1)
		addrs = append(addrs, a)
		for j := range 3 {
			msgs = append(msgs, fmt.Sprintf("Failed password for root from %s port %d ssh2", a, 40000+j))
		}
	}
	if err := jd.WriteAsUnit("sshd.service", msgs); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{addrs[0], addrs[299]} {
		b.waitBanned(t, a, banTimeout)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(b.journal(t, "MESSAGE_ID="+msgSave, "-p", "err"), "no space left on device") {
		if time.Now().After(deadline) {
			t.Fatalf("no error entry with MESSAGE_ID %s:\n%s", msgSave, b.journal(t, "MESSAGE_ID="+msgSave))
		}
		time.Sleep(100 * time.Millisecond)
	}
	full := time.Now()
	if st := b.lastStatus(); !strings.Contains(st, "NOT SAVED") {
		t.Errorf("STATUS= does not say bans are not saved: %s", st)
	}
	time.Sleep(2 * d.Watchdog)
	if n := b.pings(full.Add(d.Watchdog / 2)); n != 0 {
		t.Errorf("%d WATCHDOG=1 while bans could not be saved", n)
	}

	ns("rm", "-f", fill)
	freed := time.Now()
	deadline = freed.Add(10 * time.Second)
	for !strings.Contains(b.journal(t, "MESSAGE_ID="+msgSave, "-p", "notice"), "that could not be saved before") {
		if time.Now().After(deadline) {
			t.Fatalf("the bans were not saved within 10 s of freeing space:\n%s", b.journal(t, "MESSAGE_ID="+msgSave))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("saved %v after space was freed", time.Since(freed).Round(time.Millisecond))
	time.Sleep(2 * d.Watchdog)
	if b.pings(freed) == 0 {
		t.Error("WATCHDOG=1 did not resume once the bans were saved")
	}
	if st := b.lastStatus(); strings.Contains(st, "NOT SAVED") {
		t.Errorf("STATUS= still says bans are not saved: %s", st)
	}

	// A restart restores every ban from the table (the table, not the
	// kernel: Setup loads exactly what the table holds).
	if err := d.Stop(t); err != nil {
		t.Fatal(err)
	}
	d.Start(t)
	d.WaitReady(t, readyTimeout)
	st := d.Status(t, "sshd")
	if len(st) != 1 || st[0].CurrentlyBanned != len(addrs) {
		t.Fatalf("after restart status = %+v, want %d bans", st, len(addrs))
	}
	for _, a := range addrs {
		if _, ok := h.SrvBanned(t, a); !ok {
			t.Errorf("%s not in the kernel after restart", a)
		}
	}
}
