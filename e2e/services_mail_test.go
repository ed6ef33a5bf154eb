package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// mailBed is the bed of the mail tests: the two hosts (the attacker with
// a second address, legitAddr), a private journald, a private bus, and a
// local user with a known password; each test starts its daemons.
type mailBed struct {
	hosts *testbed.Hosts
	jd    *testbed.Journald
	bus   *testbed.Bus
	user  *testbed.MailUser
}

// mailMaxRetry is the maxretry of the mail jails under test.
const mailMaxRetry = 3

// legitAddr is an address of the attacker's host that only ever logs in
// successfully (not whitelisted: it must not be banned on its merits).
const legitAddr = "198.51.100.4"

// newMailBed builds a mailBed; with userName "" it creates no user.
func newMailBed(t *testing.T, userName string, commands ...string) *mailBed {
	t.Helper()
	testbed.Require(t, append(append([]string{}, testbed.BedCommands...), commands...)...)
	b := &mailBed{}
	b.hosts = testbed.NewHosts(t)
	b.hosts.AddAttackerAddr(t, legitAddr+"/24")
	b.jd = testbed.StartJournald(t)
	t.Cleanup(func() {
		// Runs after the daemons stop (their last lines included) and
		// before the journald does.
		if t.Failed() {
			out, _ := b.jd.Command("journalctl", "--no-pager", "-o", "verbose",
				"--output-fields=MESSAGE,_SYSTEMD_UNIT,SYSLOG_IDENTIFIER,_PID,_COMM").CombinedOutput()
			t.Logf("the bed's journal:\n%s", out)
		}
	})
	b.bus = testbed.NewBus(t)
	if userName != "" {
		b.user = testbed.NewMailUser(t, userName, "right-"+testbed.Suffix())
	}
	return b
}

// journalLines returns the MESSAGEs of the bed's journal entries matching
// match (a journalctl FIELD=VALUE) that contain substr.
func (b *mailBed) journalLines(t *testing.T, match, substr string) []string {
	t.Helper()
	out, err := b.jd.Command("journalctl", "--no-pager", "-o", "cat", match).Output()
	if err != nil {
		t.Fatalf("journalctl %s: %v", match, err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, substr) {
			lines = append(lines, l)
		}
	}
	return lines
}

// startMailDaemon starts jailkeeper with one jail per name, written as an
// admin enables a built-in service: the jail's name alone (filter, units
// and ports from the built-in of that name), plus maxretry 3.
func (b *mailBed) startMailDaemon(t *testing.T, names ...string) *testbed.Daemon {
	t.Helper()
	var cfg strings.Builder
	cfg.WriteString("firewall: {backend: iptables}\njails:\n")
	for _, name := range names {
		fmt.Fprintf(&cfg, "  %s: {maxretry: %d}\n", name, mailMaxRetry)
	}
	d := testbed.NewDaemon(t, b.hosts, b.bus, map[string]string{"20-mail.yaml": cfg.String()})
	d.Journald = b.jd
	d.Start(t)
	d.WaitReady(t, readyTimeout)
	return d
}

// failUntilBanned makes exactly mailMaxRetry failed logins with scheme
// from src (each must reach the daemon and be denied), then checks that
// src is in a ban set, that a further login is refused, and that
// `jailkeeper status` lists it under jail.
func (b *mailBed) failUntilBanned(t *testing.T, d *testbed.Daemon, jail, scheme, dst, src string) {
	b.failUntilBannedAs(t, d, jail, scheme, dst, src, b.user.Name)
}

// failUntilBannedAs is failUntilBanned failing as user name (for "smtp",
// the recipient).
func (b *mailBed) failUntilBannedAs(t *testing.T, d *testbed.Daemon, jail, scheme, dst, src, name string) {
	t.Helper()
	h := b.hosts
	for i := 1; i <= mailMaxRetry; i++ {
		if set, ok := h.SrvBanned(t, src); ok {
			t.Fatalf("%s: %s banned (set %s) before failure %d of %d", scheme, src, set, i, mailMaxRetry)
		}
		a := h.MailLogin(scheme, dst, src, name, "wrong")
		if a.Outcome != testbed.MailDenied {
			t.Fatalf("%s: failure %d from %s: %s (curl exit %d), want %s; curl said %q", scheme, i, src, a.Outcome, a.Exit, testbed.MailDenied, a.Output)
		}
		if i < mailMaxRetry {
			// The failure lines are in the journal well before the next
			// attempt would be refused; give the daemon time to act on
			// them, so a ban that comes too early is caught here.
			_ = b.jd.Sync()
			time.Sleep(300 * time.Millisecond)
		}
	}
	waitBanned(t, h, []string{src}, banTimeout)
	if a := h.MailLogin(scheme, dst, src, b.user.Name, b.user.Password); a.Outcome != testbed.MailRefused {
		t.Errorf("%s: login from banned %s: %s (curl exit %d), want %s; curl said %q", scheme, src, a.Outcome, a.Exit, testbed.MailRefused, a.Output)
	}
	st := d.Status(t, jail)
	if len(st) != 1 || !containsAddr(st[0].Banned, src) {
		t.Errorf("jailkeeper status %s: %+v, want %s banned", jail, st, src)
	}
}

// TestMailDovecotBanned: Debian's dovecot with its default PAM passdb;
// IMAP failures from 198.51.100.2 and POP3 failures from 2001:db8::2 are
// each banned after exactly maxretry failed logins (dovecot writes two
// lines per attempt: they count once), while a user logging in with the
// right password over both protocols is never banned, nor an address that
// an unprivileged user names in forged dovecot lines.
func TestMailDovecotBanned(t *testing.T) {
	t.Parallel()
	b := newMailBed(t, "jkmail"+testbed.Suffix(), testbed.MailCommands...)
	testbed.StartDovecot(t, b.hosts, b.jd, "")
	d := b.startMailDaemon(t, "dovecot")
	for _, scheme := range []string{"imap", "pop3"} {
		if a := b.hosts.MailLogin(scheme, testbed.SrvAddr4, legitAddr, b.user.Name, b.user.Password); a.Outcome != testbed.MailOK {
			t.Fatalf("%s login with the right password: %s (curl exit %d): %q", scheme, a.Outcome, a.Exit, a.Output)
		}
	}
	// An unprivileged local user forges dovecot's lines (syslog tag
	// "dovecot", /dev/log) naming a victim: entries outside dovecot.service's
	// cgroup are not the jail's, so the victim is never banned.
	spoofer := "jkspoof" + testbed.Suffix()
	testbed.EnsureUser(t, spoofer)
	const victim = "198.51.100.77"
	for i := 0; i < 2*mailMaxRetry; i++ {
		msg := fmt.Sprintf("imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u%d>, method=PLAIN, rip=%s, lip=198.51.100.1, session=<x>", i, victim)
		if out, err := b.jd.Command("setpriv", "--reuid="+spoofer, "--regid="+spoofer, "--clear-groups", "logger", "-t", "dovecot", msg).CombinedOutput(); err != nil {
			t.Fatalf("logger as %s: %v: %s", spoofer, err, out)
		}
	}
	b.failUntilBanned(t, d, "dovecot", "imap", testbed.SrvAddr4, testbed.AtkAddr4)
	b.failUntilBanned(t, d, "dovecot", "pop3", testbed.SrvAddr6, testbed.AtkAddr6)
	if set, ok := b.hosts.SrvBanned(t, victim); ok {
		t.Errorf("%s, named only by %s's forged lines, is banned (set %s)", victim, spoofer, set)
	}
	if n := len(b.journalLines(t, "SYSLOG_IDENTIFIER=dovecot", victim)); n != 2*mailMaxRetry {
		t.Errorf("the journal holds %d forged lines naming %s, want %d", n, victim, 2*mailMaxRetry)
	}
	for _, scheme := range []string{"imap", "pop3"} {
		if a := b.hosts.MailLogin(scheme, testbed.SrvAddr4, legitAddr, b.user.Name, b.user.Password); a.Outcome != testbed.MailOK {
			t.Errorf("%s login with the right password after the attacks: %s (curl exit %d): %q", scheme, a.Outcome, a.Exit, a.Output)
		}
	}
	if set, ok := b.hosts.SrvBanned(t, legitAddr); ok {
		t.Errorf("%s, which only logged in successfully, is banned (set %s)", legitAddr, set)
	}
}

// TestMailPostfixSubmissionBanned: Debian's postfix, SMTP AUTH on
// submission through dovecot's SASL: failures from 198.51.100.2 are
// banned after exactly maxretry failed AUTHs, mail to unknown users on
// port 25 from 2001:db8::2 after exactly maxretry rejected recipients,
// and a client that authenticates and sends is never banned.
func TestMailPostfixSubmissionBanned(t *testing.T) {
	t.Parallel()
	b := newMailBed(t, "jksmtp"+testbed.Suffix(), testbed.MailCommands...)
	pf := testbed.NewPostfix(t)
	testbed.StartDovecot(t, b.hosts, b.jd, pf.SASLSocket())
	pf.Start(t, b.hosts, b.jd)
	d := b.startMailDaemon(t, "postfix")
	if a := b.hosts.MailLogin("submission", testbed.SrvAddr4, legitAddr, b.user.Name, b.user.Password); a.Outcome != testbed.MailOK {
		t.Fatalf("submission with the right password: %s (curl exit %d): %q", a.Outcome, a.Exit, a.Output)
	}
	b.failUntilBanned(t, d, "postfix", "submission", testbed.SrvAddr4, testbed.AtkAddr4)
	// Port 25 from 2001:db8::2: mail to a user that does not exist
	// ("Recipient address rejected: User unknown in local recipient table").
	b.failUntilBannedAs(t, d, "postfix", "smtp", testbed.SrvAddr6, testbed.AtkAddr6, "nosuch"+testbed.Suffix())
	if a := b.hosts.MailLogin("submission", testbed.SrvAddr4, legitAddr, b.user.Name, b.user.Password); a.Outcome != testbed.MailOK {
		t.Errorf("submission with the right password after the attack: %s (curl exit %d): %q", a.Outcome, a.Exit, a.Output)
	}
	if set, ok := b.hosts.SrvBanned(t, legitAddr); ok {
		t.Errorf("%s, which only authenticated successfully, is banned (set %s)", legitAddr, set)
	}
}

// TestMailCourierIMAPBanned: Debian's courier-imap with its authdaemon
// (authpam), as the packages start them: IMAP failures from 198.51.100.2
// are banned after exactly maxretry failed logins, and a user logging in
// with the right password is never banned.
func TestMailCourierIMAPBanned(t *testing.T) {
	t.Parallel()
	b := newMailBed(t, "jkcour"+testbed.Suffix(), testbed.MailCommands...)
	b.user.MakeMaildir(t)
	testbed.StartCourierIMAP(t, b.hosts, b.jd)
	d := b.startMailDaemon(t, "courier-auth")
	if a := b.hosts.MailLogin("imap", testbed.SrvAddr4, legitAddr, b.user.Name, b.user.Password); a.Outcome != testbed.MailOK {
		t.Fatalf("imap login with the right password: %s (curl exit %d): %q", a.Outcome, a.Exit, a.Output)
	}
	b.failUntilBanned(t, d, "courier-auth", "imap", testbed.SrvAddr4, testbed.AtkAddr4)
	if set, ok := b.hosts.SrvBanned(t, legitAddr); ok {
		t.Errorf("%s, which only logged in successfully, is banned (set %s)", legitAddr, set)
	}
}

// TestMailRBLSMTPDBanned: ucspi-tcp's rblsmtpd (qmail's RBL front end)
// refusing a listed client: the client is banned after exactly maxretry
// refused connections, and a client not listed is never banned.
func TestMailRBLSMTPDBanned(t *testing.T) {
	t.Parallel()
	b := newMailBed(t, "", "tcpserver", "rblsmtpd", "tcprules")
	testbed.StartRBLSMTPD(t, b.hosts, b.jd, legitAddr, testbed.AtkAddr4)
	d := b.startMailDaemon(t, "qmail")
	hp := testbed.SrvAddr4 + ":25"
	greet := func(src string) (string, error) {
		return b.hosts.AtkBannerFrom(hp, src, 3*time.Second)
	}
	if g, err := greet(legitAddr); err != nil || !strings.HasPrefix(g, "220") {
		t.Fatalf("client not listed: %q %v, want 220", g, err)
	}
	for i := 1; i <= mailMaxRetry; i++ {
		if set, ok := b.hosts.SrvBanned(t, testbed.AtkAddr4); ok {
			t.Fatalf("%s banned (set %s) before refusal %d of %d", testbed.AtkAddr4, set, i, mailMaxRetry)
		}
		if g, err := greet(testbed.AtkAddr4); err != nil || !strings.HasPrefix(g, "220 rblsmtpd") && !strings.HasPrefix(g, "553") {
			t.Fatalf("listed client, connection %d: %q %v, want rblsmtpd's answer", i, g, err)
		}
		_ = b.jd.Sync()
		time.Sleep(300 * time.Millisecond)
	}
	waitBanned(t, b.hosts, []string{testbed.AtkAddr4}, banTimeout)
	if g, err := greet(testbed.AtkAddr4); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("banned client: %q %v, want connection refused", g, err)
	}
	if st := d.Status(t, "qmail"); len(st) != 1 || !containsAddr(st[0].Banned, testbed.AtkAddr4) {
		t.Errorf("jailkeeper status qmail: %+v, want %s banned", st, testbed.AtkAddr4)
	}
	if g, err := greet(legitAddr); err != nil || !strings.HasPrefix(g, "220") {
		t.Errorf("client not listed, after the ban: %q %v", g, err)
	}
	if set, ok := b.hosts.SrvBanned(t, legitAddr); ok {
		t.Errorf("%s, not listed, is banned (set %s)", legitAddr, set)
	}
	for _, l := range b.journalLines(t, "_SYSTEMD_UNIT=qmail-smtpd.service", "rblsmtpd") {
		t.Logf("journal: %s", l)
	}
}
