package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// jk runs the jailkeeper CLI against the daemon's bus.
func jk(d *testbed.Daemon, stdin string, args ...string) (string, error) {
	cmd := exec.Command(d.Bin, args...)
	cmd.Env = append(os.Environ(), d.Bus.Env())
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBlocklistImportAndReload (issues 2 and 4): `jailkeeper ban JAIL -`
// bans a whole list in one batch, a bad line applies nothing and names its
// line; `jailkeeper reload` refuses a broken drop-in (the running
// configuration and its bans stay) and accepts a good one.
func TestBlocklistImportAndReload(t *testing.T) {
	bed, d := startDaemon(t, "")
	h := bed.Hosts
	var list strings.Builder
	list.WriteString("# a blocklist\n")
	for i := 0; i < 250; i++ {
		fmt.Fprintf(&list, "203.0.113.%d\n", i)
	}
	list.WriteString("2001:db8:dead::/48\n198.51.100.2\n")

	bad := "203.0.113.250\n198.51.100.2\nnot-an-address\n"
	out, err := jk(d, bad, "ban", "sshd", "-")
	if err == nil || !strings.Contains(out, "stdin line 3") {
		t.Fatalf("bad list: %v %q, want an error naming line 3", err, out)
	}
	if _, ok := h.SrvBanned(t, "203.0.113.250"); ok {
		t.Fatal("a list with a bad line was partly applied")
	}

	out, err = jk(d, list.String(), "ban", "sshd", "-", "--for", "1h")
	if err != nil {
		t.Fatalf("ban sshd -: %v\n%s", err, out)
	}
	for _, a := range []string{"203.0.113.0", "203.0.113.249", "2001:db8:dead:1::7", testbed.AtkAddr4} {
		if _, ok := h.SrvBanned(t, a); !ok {
			t.Errorf("%s not in a kernel set after the import", a)
		}
	}
	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Refused {
		t.Fatalf("imported attacker: %s, want %s", a.Outcome, testbed.Refused)
	}
	if st := d.Status(t, "sshd"); len(st) != 1 || st[0].CurrentlyBanned != 252 {
		t.Fatalf("status after the import: %+v, want 252 bans", st)
	}

	// A whitelisted address in a list refuses the whole batch.
	if out, err := jk(d, "203.0.113.251\n198.51.100.3\n", "ban", "sshd", "-"); err == nil || !strings.Contains(out, "whitelist") {
		t.Fatalf("whitelisted entry: %v %q", err, out)
	}
	if _, ok := h.SrvBanned(t, "203.0.113.251"); ok {
		t.Fatal("a batch with a whitelisted entry was partly applied")
	}

	broken := filepath.Join(d.ConfigDir, "30-broken.yaml")
	if err := os.WriteFile(broken, []byte("jails:\n  sshd:\n    maxrety: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = jk(d, "", "reload")
	if err == nil || !strings.Contains(out, "30-broken.yaml: line 3") {
		t.Fatalf("reload of a broken drop-in: %v %q, want an error naming the file and line", err, out)
	}
	if !d.Running() {
		t.Fatal("the daemon died on a bad reload")
	}
	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Refused {
		t.Fatalf("after a refused reload: %s, want %s", a.Outcome, testbed.Refused)
	}
	if err := os.WriteFile(broken, []byte("jails:\n  sshd:\n    maxretry: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := jk(d, "", "reload"); err != nil {
		t.Fatalf("reload of a good drop-in: %v\n%s", err, out)
	}
	if st := d.Status(t, "sshd"); len(st) != 1 || st[0].CurrentlyBanned != 252 {
		t.Fatalf("status after reload: %+v, want the 252 bans kept", st)
	}
	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Refused {
		t.Fatalf("after a good reload: %s, want %s", a.Outcome, testbed.Refused)
	}
	out, err = jk(d, "", "unban", testbed.AtkAddr4)
	if err != nil || !strings.Contains(out, "unbanned") {
		t.Fatalf("unban: %v %q", err, out)
	}
	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Denied {
		t.Fatalf("after unban: %s, want %s", a.Outcome, testbed.Denied)
	}
}

// TestReloadKeepsCounts: failures counted before `jailkeeper reload` still
// count after it (the reader resumes after them, so a reload that dropped
// them would give the attacker a fresh count): with maxretry 3, two failed
// logins, a reload, and a third failed login ban the attacker.
func TestReloadKeepsCounts(t *testing.T) {
	bed, d := startDaemon(t, "")
	h := bed.Hosts
	failed := func(want int) testbed.JailStatus {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := d.Status(t, "sshd")
			if len(st) == 1 && st[0].TotalFailed >= want {
				return st[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %+v: want total_failed %d within 5s", st, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := 0; i < 2; i++ {
		if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Denied {
			t.Fatalf("attempt %d: %s, want %s", i+1, a.Outcome, testbed.Denied)
		}
	}
	if st := failed(2); st.TotalFailed != 2 || st.CurrentlyFailed != 1 {
		t.Fatalf("before reload: %+v, want 2 failures of 1 address", st)
	}
	if out, err := jk(d, "", "reload"); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if st := d.Status(t, "sshd"); len(st) != 1 || st[0].TotalFailed != 2 || st[0].CurrentlyFailed != 1 {
		t.Fatalf("after reload: %+v, want the 2 failures kept", st)
	}
	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Denied {
		t.Fatalf("third attempt: %s, want %s", a.Outcome, testbed.Denied)
	}
	waitBanned(t, h, []string{testbed.AtkAddr4}, 5*time.Second)
}
