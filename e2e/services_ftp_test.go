package e2e

import (
	"encoding/json"
	"fmt"
	osuser "os/user"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// ftpCase is one real FTP daemon, configured one way, attacked with curl.
type ftpCase struct {
	kind   string
	ownLog bool   // testbed.FTPOptions.OwnLogToJournal
	target string // server address attacked
	// users tried in turn by the attacker, each with a wrong password;
	// "" stands for the test's real account.
	users []string
}

// TestFTPServices: vsftpd, proftpd and pure-ftpd from Debian's
// packages, each in its unit's cgroup in the server namespace, logging as
// the package does by default (and, for vsftpd and proftpd, with the change
// docs/services.md gives for their own lines). From the attacker namespace
// curl fails to log in until refused: the address is banned after exactly
// maxretry (3) failures, each counted once, while a successful login from
// another address is never banned.
func TestFTPServices(t *testing.T) {
	testbed.Require(t, testbed.BedCommands...)
	// Created here, not in the parallel subtests: they all write as it.
	testbed.EnsureUser(t, unprivUser)
	for _, c := range []ftpCase{
		// Default: only PAM's line reaches the journal; vsftpd writes it
		// for unknown users too.
		{kind: "vsftpd", target: testbed.SrvAddr4, users: []string{"", "nosuch", ""}},
		// syslog_enable=YES: vsftpd's FAIL LOGIN beside PAM's line.
		{kind: "vsftpd", ownLog: true, target: testbed.SrvAddr6, users: []string{"", "", "nosuch"}},
		// Default (SystemLog file): PAM's line, for existing accounts only.
		{kind: "proftpd", target: testbed.SrvAddr4, users: []string{"", "", ""}},
		// syslog: its own lines too; an unknown user and root count once
		// by its own line, a wrong password once by PAM's.
		{kind: "proftpd", ownLog: true, target: testbed.SrvAddr4, users: []string{"nosuch", "", "root"}},
		// Its own line (PAM's names no client), over IPv6; most of its
		// failure lines reach the journal without _SYSTEMD_UNIT.
		{kind: "pure-ftpd", target: testbed.SrvAddr6, users: []string{"", "nosuch", ""}},
	} {
		name := c.kind
		if c.ownLog {
			name += "-syslog"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testFTPService(t, c)
		})
	}
}

const ftpJailConfig = `firewall: {backend: iptables}
jails:
  %[1]s:
    filter: %[1]s
    maxretry: 3
    findtime: 10m
    bantime: 1h
    ports: [21]
`

func testFTPService(t *testing.T, c ftpCase) {
	testbed.RequireFTP(t, c.kind)
	h := testbed.NewHosts(t)
	jd := testbed.StartJournald(t)
	bus := testbed.NewBus(t)
	const goodPass = "Right-Pass-42"
	user := testbed.FTPUser(t, goodPass)
	srv := testbed.StartFTP(t, h, jd, c.kind, testbed.FTPOptions{OwnLogToJournal: c.ownLog})
	d := testbed.NewDaemon(t, h, bus, map[string]string{"10-ftp.yaml": fmt.Sprintf(ftpJailConfig, c.kind)})
	d.Journald = jd
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := jd.Command("journalctl", "--no-pager", "-o", "short-precise", "-n", "200").CombinedOutput()
			t.Logf("the bed's journal:\n%s", out)
			t.Logf("%s output:\n%s", c.kind, srv.Proc.Output())
		}
	})
	d.Start(t)
	d.WaitReady(t, readyTimeout)

	attacker, good := testbed.AtkAddr4, "198.51.100.4"
	if strings.Contains(c.target, ":") {
		attacker = testbed.AtkAddr6
	}
	h.AddAttackerAddr(t, good+"/24")

	var third time.Time
	for i, u := range c.users {
		if _, ok := h.SrvBanned(t, attacker); ok {
			t.Fatalf("%s banned before its failure %d (maxretry 3): a failure counted twice?", attacker, i+1)
		}
		if u == "" {
			u = user
		}
		a := h.FTPAttempt(c.target, "", u, "wrong-password")
		if a.Outcome != testbed.Denied {
			t.Fatalf("failure %d (%s): %s, want %s; curl said %q", i+1, u, a.Outcome, testbed.Denied, a.Output)
		}
		third = time.Now()
	}
	waitBanned(t, h, []string{attacker}, banTimeout)
	t.Logf("banned %v after the 3rd failure's answer", time.Since(third).Round(time.Millisecond))
	if a := h.FTPAttempt(c.target, "", user, goodPass); a.Outcome != testbed.Refused {
		t.Errorf("4th attempt from %s (right password): %s, want %s; curl said %q", attacker, a.Outcome, testbed.Refused, a.Output)
	}
	if a := h.FTPAttempt(testbed.SrvAddr4, good, user, goodPass); a.Outcome != testbed.FTPLoggedIn {
		t.Errorf("login from %s with the right password: %s, want %s; curl said %q", good, a.Outcome, testbed.FTPLoggedIn, a.Output)
	}
	st := d.Status(t, c.kind)
	if len(st) != 1 || st[0].CurrentlyBanned != 1 || !containsAddr(st[0].Banned, attacker) {
		t.Errorf("status = %+v, want %s banned and nothing else", st, attacker)
	}
	if _, ok := h.SrvBanned(t, good); ok {
		t.Errorf("%s, which logged in, is banned", good)
	}

	logUnitless(t, jd, c.kind)

	// An unprivileged user writing the daemon's failure line, with its
	// identifier and no unit, gets nobody banned: entries without a unit
	// count only with the kernel-supplied _UID 0.
	forged := forgedFTPLine(c.kind, good, user)
	jd.WriteOutsideUnits(t, unprivUser, c.kind, []string{forged, forged, forged, forged, forged})
	out, _ := jd.Command("journalctl", "--no-pager", "-o", "json", "SYSLOG_IDENTIFIER="+c.kind, "_UID="+uidOf(t, unprivUser)).Output()
	if strings.Count(string(out), `"_SYSTEMD_UNIT"`) > 0 || strings.Count(string(out), `"MESSAGE"`) != 5 {
		t.Fatalf("want 5 forged entries without _SYSTEMD_UNIT, journal has:\n%s", out)
	}
	time.Sleep(time.Second)
	if _, ok := h.SrvBanned(t, good); ok {
		t.Errorf("%s banned by lines an unprivileged user wrote as %s", good, c.kind)
	}
	if st := d.Status(t, c.kind); len(st) != 1 || st[0].CurrentlyBanned != 1 {
		t.Errorf("status after the forged lines = %+v, want only %s banned", st, attacker)
	}
}

// forgedFTPLine is a failure line of kind naming addr.
func forgedFTPLine(kind, addr, user string) string {
	switch kind {
	case "pure-ftpd":
		return fmt.Sprintf("(?@%s) [WARNING] Authentication failed for user [%s]", addr, user)
	case "proftpd":
		return fmt.Sprintf("vm (%[1]s[%[1]s]) - USER nosuch: no such user found from %[1]s [%[1]s] to ::ffff:198.51.100.1:21", addr)
	}
	return fmt.Sprintf("pam_unix(%s:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser=%s rhost=%s  user=%s", kind, user, addr, user)
}

func uidOf(t *testing.T, name string) string {
	t.Helper()
	u, err := osuser.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u.Uid
}

// logUnitless logs how many of the daemon's journal entries lack
// _SYSTEMD_UNIT (journald could not read the cgroup of a sender that had
// exited) and which of them the jail's filter would count.
func logUnitless(t *testing.T, jd *testbed.Journald, ident string) {
	t.Helper()
	if err := jd.Sync(); err != nil {
		t.Log(err)
		return
	}
	out, err := jd.Command("journalctl", "--no-pager", "-o", "json", "SYSLOG_IDENTIFIER="+ident).Output()
	if err != nil {
		t.Logf("journalctl: %v", err)
		return
	}
	total, unitless := 0, 0
	var lost []string
	units := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		total++
		units[fmt.Sprint(e["_SYSTEMD_UNIT"])]++
		if u, ok := e["_SYSTEMD_UNIT"]; !ok || u == "" {
			unitless++
			lost = append(lost, fmt.Sprint(e["MESSAGE"]))
		}
	}
	t.Logf("%s: %d of %d journal entries without _SYSTEMD_UNIT: %q (units seen: %v)", ident, unitless, total, lost, units)
}
