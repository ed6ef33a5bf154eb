package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestMetrics runs `jailkeeper metrics` against the real daemon on the
// bed's private bus after a real sshd attacker was banned: on stdout, as
// one socket-activated HTTP answer, and into a textfile directory; and
// with the daemon stopped.
func TestMetrics(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.BedCommands...)
	bed := testbed.NewBed(t)
	h := bed.Hosts
	d := bed.NewDaemon(t, map[string]string{"10-sshd.yaml": testbed.SSHJailConfig})
	d.Start(t)
	d.WaitReady(t, readyTimeout)
	attackUntilBanned(t, h, testbed.SrvAddr4, "", testbed.AtkAddr4)

	metrics := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(d.Bin, append([]string{"metrics"}, args...)...)
		cmd.Env = append(os.Environ(), bed.Bus.Env())
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		return string(out), err
	}
	want := []string{
		"jailkeeper_up 1\n",
		`jailkeeper_info{version="`,
		`backend="iptables"} 1`,
		"jailkeeper_banned_addresses 1\n",
		`jailkeeper_jail_banned_addresses{jail="sshd"} 1` + "\n",
		`jailkeeper_jail_bans_total{jail="sshd"} 1` + "\n",
		`jailkeeper_jail_failures_total{jail="sshd"} `,
		`jailkeeper_jail_maxretry{jail="sshd"} 3` + "\n",
		`jailkeeper_jail_findtime_seconds{jail="sshd"} 600` + "\n",
		`jailkeeper_jail_bantime_seconds{jail="sshd"} 3600` + "\n",
	}
	check := func(how, got string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: no %q in\n%s", how, w, got)
			}
		}
	}
	// The object model follows a ban within its coalescing period.
	var out string
	var err error
	for start := time.Now(); time.Since(start) < 2*time.Second; time.Sleep(50 * time.Millisecond) {
		if out, err = metrics(""); err == nil && strings.Contains(out, "jailkeeper_banned_addresses 1\n") {
			break
		}
	}
	if err != nil {
		t.Fatalf("jailkeeper metrics: %v\n%s", err, out)
	}
	check("stdout", out)

	// The daemon's own counters move: entries read when lines are
	// written, repairs after a drift repair; the watchdog's verification
	// (every second on the bed) is recent and succeeded.
	sample := func(out, name string) float64 {
		t.Helper()
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", l, err)
				}
				return f
			}
		}
		t.Fatalf("no sample %s in\n%s", name, out)
		return 0
	}
	read0 := sample(out, "jailkeeper_journal_entries_read_total")
	if read0 < 3 {
		t.Errorf("entries read %v after three failed logins, want ≥ 3", read0)
	}
	if lag := sample(out, "jailkeeper_journal_lag_seconds"); lag < 0 || lag > 5 {
		t.Errorf("journal lag %v s on an idle bed", lag)
	}
	repairs0 := sample(out, "jailkeeper_firewall_repairs_total")
	lines := []string{"Accepted publickey for root from 203.0.113.50 port 1 ssh2", "Received disconnect from 203.0.113.50 port 1:11: bye", "pam_unix(sshd:session): session closed for user root"}
	if err := bed.Journald.WriteAsUnit("sshd.service", lines); err != nil {
		t.Fatal(err)
	}
	if out, err := h.InSrv("iptables", "-F").CombinedOutput(); err != nil {
		t.Fatalf("iptables -F: %v\n%s", err, out)
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if out, err = metrics(""); err != nil {
			t.Fatalf("jailkeeper metrics: %v\n%s", err, out)
		}
		read, repairs := sample(out, "jailkeeper_journal_entries_read_total"), sample(out, "jailkeeper_firewall_repairs_total")
		if read >= read0+float64(len(lines)) && repairs > repairs0 {
			t.Logf("entries read %v → %v, repairs %v → %v", read0, read, repairs0, repairs)
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("5 s after %d lines and iptables -F: entries read %v → %v, repairs %v → %v", len(lines), read0, read, repairs0, repairs)
		}
	}
	if ok := sample(out, "jailkeeper_firewall_last_verify_success"); ok != 1 {
		t.Errorf("last verification failed: %v", ok)
	}
	if at := time.Unix(int64(sample(out, "jailkeeper_firewall_last_verify_timestamp_seconds")), 0); time.Since(at) > 10*time.Second {
		t.Errorf("last verification at %v, %v ago", at, time.Since(at))
	}

	out, err = metrics("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9542\r\nAccept: text/plain\r\n\r\n", "--http")
	if err != nil || !strings.HasPrefix(out, "HTTP/1.0 200 OK\r\n") || !strings.Contains(out, "Content-Type: text/plain; version=0.0.4") {
		t.Fatalf("--http: %v\n%s", err, out)
	}
	check("--http", out)

	dir := t.TempDir()
	if out, err := metrics("", "--textfile", dir); err != nil {
		t.Fatalf("--textfile: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "jailkeeper.prom"))
	if err != nil {
		t.Fatal(err)
	}
	check("--textfile", string(b))

	if err := d.Stop(t); err != nil {
		t.Fatal(err)
	}
	out, err = metrics("")
	if err == nil || out != "# HELP jailkeeper_up Whether the daemon answered on the system bus.\n# TYPE jailkeeper_up gauge\njailkeeper_up 0\n" {
		t.Errorf("daemon stopped: %v\n%s", err, out)
	}
	if out, err := metrics("GET / HTTP/1.0\r\n\r\n", "--http"); err != nil || !strings.HasPrefix(out, "HTTP/1.0 200 OK") || !strings.Contains(out, "jailkeeper_up 0\n") {
		t.Errorf("--http with the daemon stopped: %v\n%s", err, out)
	}
}
