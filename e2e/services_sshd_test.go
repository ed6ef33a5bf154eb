package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestCheckWarnsAboutSilentJails runs `jailkeeper check --json` against
// the bed's real journald: one jail whose unit logs failures the filter
// matches (no warning), one whose unit logs only lines the filter does not
// match, one whose unit file exists but never logged, and one whose unit
// does not exist. Warnings never change check's exit code.
func TestCheckWarnsAboutSilentJails(t *testing.T) {
	testbed.Require(t, "journalctl")
	t.Parallel()
	testbed.EnsureJournald(t)
	bin := testbed.BuildJailkeeper(t)

	id := fmt.Sprintf("jk-chk%d", os.Getpid())
	unit := func(s string) string { return id + "-" + s + ".service" }
	write := func(u string, lines ...string) {
		t.Helper()
		w, err := testbed.NewUnitWriter(u, testbed.WriterOptions{Ident: "sshd"})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if err := w.Write(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(unit("fires"), "Server listening on 198.51.100.1 port 22.",
		"Failed password for invalid user admin from 203.0.113.9 port 40000 ssh2")
	write(unit("nomatch"), "Server listening on 198.51.100.1 port 22.",
		"Accepted publickey for deploy from 198.51.100.5 port 50000 ssh2: ED25519 SHA256:x",
		"pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0)")

	// The unit files: only "silent" has one (the others are known from
	// the journal alone, as a transient unit is).
	unitDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(unitDir, unit("silent")), []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := t.TempDir()
	var b strings.Builder
	b.WriteString("firewall: {backend: none}\njails:\n  sshd: {enabled: false}\n")
	for _, j := range []string{"fires", "nomatch", "silent", "missing"} {
		fmt.Fprintf(&b, "  chk-%s: {filter: sshd, units: [%s]}\n", j, unit(j))
	}
	if err := os.WriteFile(filepath.Join(conf, "10-check.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "check", "--json", "--config-dir", conf)
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+unitDir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jailkeeper check --json: %v (warnings must not change the exit code)\n%s", err, out)
	}
	var got struct {
		Jails []struct {
			Name     string `json:"name"`
			Warnings []struct {
				Kind    string   `json:"kind"`
				Units   []string `json:"units"`
				Message string   `json:"message"`
			} `json:"warnings"`
		} `json:"jails"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("check --json output %q: %v", out, err)
	}
	want := map[string]string{"chk-fires": "", "chk-nomatch": "no-match", "chk-silent": "silent", "chk-missing": "unit-missing"}
	for _, j := range got.Jails {
		var kinds []string
		for _, w := range j.Warnings {
			kinds = append(kinds, w.Kind)
			if !slices.Equal(w.Units, []string{unit(strings.TrimPrefix(j.Name, "chk-"))}) {
				t.Errorf("jail %s: warning about units %v", j.Name, w.Units)
			}
		}
		if strings.Join(kinds, ",") != want[j.Name] {
			t.Errorf("jail %s: warnings %v, want [%s]\n%s", j.Name, kinds, want[j.Name], out)
		}
		delete(want, j.Name)
	}
	if len(want) != 0 {
		t.Errorf("check --json lists no jails %v:\n%s", want, out)
	}

	// The text form says the same, and --config-only looks at nothing.
	cmd = exec.Command(bin, "check", "--config-dir", conf)
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+unitDir)
	text, err := cmd.Output()
	if err != nil || !strings.Contains(string(text), "filter sshd (mode normal) matched none of them") ||
		!strings.Contains(string(text), "unit "+unit("missing")+" does not exist") {
		t.Errorf("jailkeeper check: %v\n%s", err, text)
	}
	text, err = exec.Command(bin, "check", "--config-only", "--config-dir", conf).Output()
	if err != nil || strings.Contains(string(text), "warning:") {
		t.Errorf("jailkeeper check --config-only: %v\n%s", err, text)
	}
}

// TestDebianSSHDBanned runs sshd as Debian's openssh-server package does
// (ssh.service, syslog to /dev/log, UsePAM yes) and the vendor's sshd jail
// enabled by name only: password guesses from the attacker over SSH are
// banned after exactly maxretry (3) failures, whatever the user (unknown,
// root, a real account), while a client of another address that logs in
// with the right password after two typos is never banned.
func TestDebianSSHDBanned(t *testing.T) {
	testbed.Require(t, append(testbed.BedCommands, "sshpass", "chpasswd", "useradd")...)
	t.Parallel()
	h := testbed.NewHosts(t)
	jd := testbed.StartJournald(t)
	bus := testbed.NewBus(t)
	testbed.StartDebianSSHD(t, h, jd)
	const user, pw = "jk-ssh-ok", "correct horse battery"
	testbed.EnsurePasswordUser(t, user, pw)
	d := testbed.NewDaemon(t, h, bus, map[string]string{"10-sshd.yaml": "firewall: {backend: iptables}\njails:\n  sshd: {maxretry: 3, bantime: 1h}\n"})
	d.Journald = jd
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := jd.Command("journalctl", "--no-pager", "-o", "verbose", "--output-fields=MESSAGE,_SYSTEMD_UNIT,_COMM,SYSLOG_IDENTIFIER", "-n", "200").CombinedOutput()
			t.Logf("the journal:\n%s", out)
		}
	})
	d.Start(t)
	d.WaitReady(t, readyTimeout)

	const good = "198.51.100.4"
	h.AddAttackerAddr(t, good+"/24")
	for i, p := range []string{"typo", "typo again", pw, pw, pw} {
		a := h.SSHPasswordAttempt(testbed.SrvAddr4, good, user, p)
		want := a.Outcome != testbed.Denied && a.Outcome != testbed.Refused
		if p != pw {
			want = a.Outcome == testbed.Denied
		}
		if !want {
			t.Fatalf("login %d from %s with password %q: %s; ssh said %q", i+1, good, p, a.Outcome, a.Output)
		}
	}

	for i, u := range []string{"admin", "root", user} {
		if set, ok := h.SrvBanned(t, testbed.AtkAddr4); ok {
			t.Fatalf("%s in set %s after %d failures", testbed.AtkAddr4, set, i)
		}
		a := h.SSHPasswordAttempt(testbed.SrvAddr4, "", u, "wrong")
		t.Logf("attempt %d (%s): %s (%v)", i+1, u, a.Outcome, a.Took.Round(time.Millisecond))
		if a.Outcome != testbed.Denied {
			t.Fatalf("attempt %d as %s: %s, want %s; ssh said %q", i+1, u, a.Outcome, testbed.Denied, a.Output)
		}
	}
	deadline := time.Now().Add(banTimeout)
	for {
		if _, ok := h.SrvBanned(t, testbed.AtkAddr4); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not banned %v after its 3rd failure", testbed.AtkAddr4, banTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a := h.SSHPasswordAttempt(testbed.SrvAddr4, "", "admin", "wrong"); a.Outcome != testbed.Refused {
		t.Errorf("attempt 4: %s, want %s; ssh said %q", a.Outcome, testbed.Refused, a.Output)
	}
	if set, ok := h.SrvBanned(t, good); ok {
		t.Errorf("%s, which logged in, is in set %s", good, set)
	}
	st := d.Status(t, "sshd")
	if len(st) != 1 || st[0].CurrentlyBanned != 1 || !containsAddr(st[0].Banned, testbed.AtkAddr4) {
		t.Errorf("jailkeeper status sshd = %+v, want %s banned alone", st, testbed.AtkAddr4)
	}

	// What sshd wrote, as journald stored it: every line of a failure
	// must carry the trusted unit, or the jail cannot see it.
	out, err := jd.Command("journalctl", "--no-pager", "-o", "json", "SYSLOG_IDENTIFIER=sshd").Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	var withUnit, without int
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var e struct {
			Message string `json:"MESSAGE"`
			Unit    string `json:"_SYSTEMD_UNIT"`
			Comm    string `json:"_COMM"`
		}
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		if e.Unit == "ssh.service" {
			withUnit++
		} else {
			without++
			t.Logf("without _SYSTEMD_UNIT (_COMM=%s): %s", e.Comm, e.Message)
		}
	}
	t.Logf("sshd wrote %d lines with _SYSTEMD_UNIT=ssh.service, %d without", withUnit, without)
}

// TestSSHDProbesAggressive checks mode aggressive against what Debian's
// sshd really writes for connections that never reach authentication: an
// HTTP request on the SSH port ("banner exchange: … invalid format"), a
// client offering only an obsolete key exchange ("Unable to negotiate …"),
// and a client that sends its banner and resets ("Connection reset by H
// port P [preauth]"). Three such probes ban. The bare "Connection closed
// by H port P" of a client that only read the banner (the bed's own
// readiness checks) never counts.
//
// Each of these lines is the last its per-connection process writes, and
// journald sometimes handles it after the process has gone, without
// _SYSTEMD_UNIT: the jail reads those by identifier and kernel-supplied
// _UID 0. A local user who writes the same lines with the same identifier
// gets nobody banned.
func TestSSHDProbesAggressive(t *testing.T) {
	testbed.Require(t, append(testbed.BedCommands, "ssh", "logger")...)
	t.Parallel()
	h := testbed.NewHosts(t)
	jd := testbed.StartJournald(t)
	bus := testbed.NewBus(t)
	testbed.StartDebianSSHD(t, h, jd)
	d := testbed.NewDaemon(t, h, bus, map[string]string{"10-sshd.yaml": "firewall: {backend: iptables}\njails:\n  sshd: {mode: aggressive, maxretry: 3, bantime: 1h}\n"})
	d.Journald = jd
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := jd.Command("journalctl", "--no-pager", "-o", "json", "--output-fields=MESSAGE,_SYSTEMD_UNIT,_COMM,_PID,_UID", "SYSLOG_IDENTIFIER=sshd").CombinedOutput()
			t.Logf("sshd's lines in the journal:\n%s", out)
		}
	})
	d.Start(t)
	d.WaitReady(t, readyTimeout)

	// An unprivileged user forges sshd's lines (no unit, _UID not 0).
	const forged = "198.51.100.9"
	uid := testbed.EnsureUser(t, unprivUser)
	for _, ident := range []string{"sshd", "sshd-session"} {
		for i := 0; i < 4; i++ {
			msg := fmt.Sprintf("Connection reset by %s port %d [preauth]", forged, 4000+i)
			cmd := jd.Command("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups", "logger", "-t", ident, msg)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("logger as %s: %v: %s", unprivUser, err, out)
			}
		}
	}

	hp := net.JoinHostPort(testbed.SrvAddr4, "22")
	probes := []struct {
		name string
		run  func() error
	}{
		{"HTTP on the SSH port", func() error {
			c, err := h.AtkDial(hp, 3*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, _ = c.Read(make([]byte, 512)) // sshd's banner, then it closes
			return nil
		}},
		{"obsolete key exchange", func() error {
			out, _ := exec.Command("ip", "netns", "exec", h.Atk, "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
				"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3", "-o", "KexAlgorithms=diffie-hellman-group1-sha1",
				"nobody@"+testbed.SrvAddr4, "true").CombinedOutput()
			if !strings.Contains(string(out), "Unable to negotiate") {
				return fmt.Errorf("ssh said %q", out)
			}
			return nil
		}},
		{"banner, then reset", func() error {
			c, err := h.AtkDial(hp, 3*time.Second)
			if err != nil {
				return err
			}
			_, _ = c.Write([]byte("SSH-2.0-probe\r\n"))
			time.Sleep(300 * time.Millisecond)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST
			}
			return c.Close()
		}},
	}
	for i, p := range probes {
		if set, ok := h.SrvBanned(t, testbed.AtkAddr4); ok {
			t.Fatalf("%s in set %s before probe %d (%s)", testbed.AtkAddr4, set, i+1, p.name)
		}
		if err := p.run(); err != nil {
			t.Fatalf("probe %d (%s): %v", i+1, p.name, err)
		}
	}
	deadline := time.Now().Add(banTimeout)
	for {
		if _, ok := h.SrvBanned(t, testbed.AtkAddr4); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not banned %v after its 3rd probe", testbed.AtkAddr4, banTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Refused {
		t.Errorf("after the ban: %s, want %s; ssh said %q", a.Outcome, testbed.Refused, a.Output)
	}
	// The forged lines are in the journal, without a unit; the daemon
	// reads in order, so it had them before the ban.
	if err := jd.Sync(); err != nil {
		t.Fatal(err)
	}
	fout, err := jd.Command("journalctl", "--no-pager", "-o", "cat", "_UID="+uid, "SYSLOG_IDENTIFIER=sshd", "SYSLOG_IDENTIFIER=sshd-session").Output()
	if err != nil || strings.Count(string(fout), forged) != 8 {
		t.Fatalf("forged lines in the journal: %v\n%s", err, fout)
	}
	if set, ok := h.SrvBanned(t, forged); ok {
		t.Errorf("%s, named only in lines a local user forged, is in set %s", forged, set)
	}
	st := d.Status(t, "sshd")
	if len(st) != 1 || st[0].TotalFailed != 3 {
		t.Errorf("jailkeeper status sshd = %+v, want 3 failures (the forged lines count none)", st)
	}

	// How many of the probes' lines journald stored without the unit.
	out, err := jd.Command("journalctl", "--no-pager", "-o", "json", "--output-fields=MESSAGE,_SYSTEMD_UNIT,_UID", "SYSLOG_IDENTIFIER=sshd", "_UID=0").Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	without := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var e struct {
			Unit string `json:"_SYSTEMD_UNIT"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Unit == "" {
			without++
		}
	}
	t.Logf("%d of sshd's lines reached the journal without _SYSTEMD_UNIT", without)
}
