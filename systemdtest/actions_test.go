package systemdtest

import (
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestActionsUnderSystemd runs jailkeeper-actions.service as installed by
// make install under a real systemd 252: Type=notify through the
// `jailkeeper actions` → jailkeeper-actions exec, the unit's hardening
// (an exec action writing into its StateDirectory, a webhook to a
// receiver in the container's network namespace), its journal fields
// under the unit, and a restart of the daemon it follows without being
// restarted itself.
func TestActionsUnderSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a container")
	}
	installPrereqs(t)
	testbed.Require(t, "debootstrap", "systemd-nspawn", "nsenter", "ip", "make", "cp")
	repo, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	root := newRootfs(t, cachedRootfs(t))
	h := testbed.NewHosts(t)
	rcv := testbed.NewWebhookReceiver(t, h, 0)
	c := bootContainer(t, root, h.Srv)
	makeInstall(t, repo, root)
	writeFile(t, root, "/etc/jailkeeper.d/30-actions.yaml", `actions:
  chat: {type: webhook, url: "`+rcv.URL+`", on: [ban, unban]}
  note:
    type: exec
    on: [ban, unban]
    argv: [/bin/sh, -c, 'echo "$JK_EVENT $JK_ADDRESS $JK_JAIL" >> "$STATE_DIRECTORY/note.log"']
`)
	defer func() {
		if t.Failed() {
			out, _ := c.Run("journalctl", "--no-pager", "-n", "60", "-u", "jailkeeper-actions", "-u", unit)
			t.Logf("container journal (jailkeeper-actions, jailkeeper):\n%s", out)
		}
	}()
	c.Must(t, "systemctl", "enable", "--now", unit, "jailkeeper-actions")
	for prop, want := range map[string]string{"ActiveState": "active", "Type": "notify", "NRestarts": "0"} {
		if got := c.Show(t, "jailkeeper-actions", prop); got != want {
			t.Fatalf("jailkeeper-actions %s = %q, want %q", prop, got, want)
		}
	}
	if st := c.Show(t, "jailkeeper-actions", "StatusText"); !strings.HasPrefix(st, "following jailkeeper") {
		t.Errorf("StatusText = %q, want the service's STATUS= line", st)
	}

	waitHook := func(event, addr string) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			hooks, bad := rcv.Hooks()
			if len(bad) > 0 {
				t.Fatalf("malformed webhooks: %q", bad)
			}
			for _, hk := range hooks {
				if hk.Event == event && hk.Address == addr {
					return
				}
			}
		}
		t.Fatalf("no webhook %s %s within 10 s", event, addr)
	}
	c.Must(t, "jailkeeper", "ban", "sshd", "203.0.113.7")
	waitHook("ban", "203.0.113.7")
	c.Must(t, "jailkeeper", "unban", "203.0.113.7")
	waitHook("unban", "203.0.113.7")

	// The daemon restarts; the actions service stays and follows it.
	pid := c.Show(t, "jailkeeper-actions", "MainPID")
	c.Must(t, "systemctl", "restart", unit)
	c.Must(t, "jailkeeper", "ban", "sshd", "203.0.113.8")
	waitHook("ban", "203.0.113.8")
	if got := c.Show(t, "jailkeeper-actions", "MainPID"); got != pid {
		t.Errorf("jailkeeper-actions restarted with the daemon (MainPID %s → %s)", pid, got)
	}

	var log string
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		log, _ = c.Run("cat", "/var/lib/jailkeeper-actions/note.log")
		if strings.Count(log, "\n") >= 3 {
			break
		}
	}
	if log != "ban 203.0.113.7 sshd\nunban 203.0.113.7 sshd\nban 203.0.113.8 sshd\n" {
		t.Errorf("exec action's log %q", log)
	}
	out := c.Must(t, "journalctl", "--no-pager", "-o", "cat", "-u", "jailkeeper-actions", "ACTION=chat", "ADDRESS=203.0.113.8", "MESSAGE_ID=5b0c7e1d2a9f4e3c8d6b4a2f1e0d9c02")
	if !strings.Contains(out, "action chat (webhook) on ban of 203.0.113.8 in sshd: done") {
		t.Errorf("journalctl -u jailkeeper-actions ACTION=chat ADDRESS=203.0.113.8: %q", out)
	}
	c.Must(t, "systemctl", "stop", "jailkeeper-actions")
	if got := c.Show(t, "jailkeeper-actions", "Result"); got != "success" {
		t.Errorf("after stop: Result = %q, want success", got)
	}
}
