package systemdtest

import (
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestMetricsUnderSystemd scrapes jailkeeper-metrics.socket as installed
// by make install under a real systemd 252: one jailkeeper-metrics@
// instance per connection (Accept=yes), running as its own system user with
// the unit's hardening, reads the daemon's object model over the system
// bus.
func TestMetricsUnderSystemd(t *testing.T) {
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
	// What make install does on a live system (and a package's postinst).
	c.Must(t, "systemd-sysusers", "/usr/lib/sysusers.d/jailkeeper-metrics.conf")
	defer func() {
		if t.Failed() {
			out, _ := c.Run("journalctl", "--no-pager", "-n", "60", "-u", "jailkeeper-metrics@*", "-u", "jailkeeper-metrics.socket", "-u", unit)
			t.Logf("container journal (jailkeeper-metrics, jailkeeper):\n%s", out)
		}
	}()
	c.Must(t, "systemctl", "enable", "--now", unit, "jailkeeper-metrics.socket")
	c.Must(t, "jailkeeper", "ban", "sshd", "203.0.113.7")

	scrape := `exec 3<>/dev/tcp/127.0.0.1/9542 && printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&3 && timeout 10 cat <&3`
	var out string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		out, err = c.Run("bash", "-c", scrape)
		if err == nil && strings.Contains(out, `jailkeeper_jail_banned_addresses{jail="sshd"} 1`) {
			break
		}
	}
	for _, want := range []string{"HTTP/1.0 200 OK\r\n", "jailkeeper_up 1\n", `jailkeeper_jail_banned_addresses{jail="sshd"} 1`, `jailkeeper_jail_bans_total{jail="sshd"} 1`} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q: %v\n%s", want, err, out)
		}
	}
	if n := c.Show(t, "jailkeeper-metrics.socket", "NAccepted"); n == "0" {
		t.Errorf("the socket accepted no connection")
	}
}
