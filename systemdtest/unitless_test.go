package systemdtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestUnitlessUnderSystemd checks, under a real systemd 252, what the FTP
// daemons showed on the test bed: a sender that exits right after its
// syslog line (an FTP daemon's process for one connection; here `logger`
// in a service) leaves entries without _SYSTEMD_UNIT, because journald
// reads the unit from the sender's cgroup only when it handles the line.
// The pure-ftpd jail reads such entries by identifier and _UID 0, so three
// failure lines from pure-ftpd.service ban the address whatever journald
// made of them, while an unprivileged user writing the same lines with the
// same identifier gets nobody banned.
func TestUnitlessUnderSystemd(t *testing.T) {
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
	c := bootContainer(t, root, h.Srv)
	makeInstall(t, repo, root)
	writeFile(t, root, "/etc/jailkeeper.d/30-pure-ftpd.yaml", `jails:
  pure-ftpd:
    filter: pure-ftpd
    maxretry: 3
    findtime: 10m
    bantime: 1h
    ports: [21]
`)
	c.Must(t, "systemctl", "enable", "--now", unit)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.Run("journalctl", "--no-pager", "-n", "60", "-o", "short-precise")
			t.Logf("container journal:\n%s", out)
		}
	})

	// How often does it happen? 50 short-lived senders in one service.
	c.Must(t, "systemd-run", "--unit=jk-probe.service", "--wait", "--quiet", "sh", "-c",
		`for i in $(seq 50); do logger -t jk-probe "probe $i"; done`)
	n, without := unitCounts(t, c, "SYSLOG_IDENTIFIER=jk-probe")
	t.Logf("systemd 252: %d of %d lines of short-lived senders in jk-probe.service have no _SYSTEMD_UNIT", without, n)
	if n != 50 {
		t.Fatalf("%d probe lines in the journal, want 50", n)
	}

	// Three failures from pure-ftpd.service, each from a process that
	// exits at once: banned.
	const attacker, victim = "198.51.100.2", "198.51.100.9"
	c.Must(t, "systemd-run", "--unit=pure-ftpd.service", "--wait", "--quiet", "sh", "-c",
		fmt.Sprintf(`for u in a b c; do logger -t pure-ftpd "(?@%s) [WARNING] Authentication failed for user [$u]"; done`, attacker))
	n, without = unitCounts(t, c, "SYSLOG_IDENTIFIER=pure-ftpd")
	t.Logf("pure-ftpd.service: %d of %d failure lines without _SYSTEMD_UNIT", without, n)
	waitKernelBan(t, c, attacker, 5*time.Second)

	// The same lines from an unprivileged user: no unit, its own _UID.
	c.Must(t, "useradd", "--no-create-home", testUser)
	line := fmt.Sprintf("(?@%s) [WARNING] Authentication failed for user [x]", victim)
	for i := 0; i < 5; i++ {
		c.Must(t, "setpriv", "--reuid="+testUser, "--regid="+testUser, "--clear-groups", "logger", "-t", "pure-ftpd", line)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := strings.Count(c.Journal(t, "SYSLOG_IDENTIFIER=pure-ftpd"), victim); got == 5 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d of the unprivileged user's 5 lines in the journal", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if _, ok := kernelBan(t, c, victim); ok {
		t.Errorf("%s banned by lines an unprivileged user wrote as pure-ftpd", victim)
	}
	st := jsonStatus(t, c)
	for _, j := range st.Jails {
		if j.Name == "pure-ftpd" && (j.CurrentlyBanned != 1 || len(j.Banned) != 1 || j.Banned[0] != attacker) {
			t.Errorf("pure-ftpd jail: %+v, want only %s banned", j, attacker)
		}
	}
}

// unitCounts returns how many journal entries match and how many of them
// have no _SYSTEMD_UNIT.
func unitCounts(t *testing.T, c *container, match string) (n, without int) {
	t.Helper()
	c.Must(t, "journalctl", "--sync")
	out := c.Must(t, "journalctl", "--no-pager", "-o", "json", match)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		n++
		if u, _ := e["_SYSTEMD_UNIT"].(string); u == "" {
			without++
		}
	}
	return n, without
}

// waitKernelBan waits until addr is in an ipset of the container.
func waitKernelBan(t *testing.T, c *container, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, ok := kernelBan(t, c, addr); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not banned %v after its 3rd failure", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
