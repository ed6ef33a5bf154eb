package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MailCommands are the commands the mail end-to-end tests need, for
// Require (Debian's postfix, dovecot-imapd, dovecot-pop3d and curl).
var MailCommands = []string{"postfix", "dovecot", "curl", "useradd", "userdel", "chpasswd", "logger"}

// EnsureDevLog makes /dev/log the symbolic link to journald's syslog
// socket that systemd creates on every host it boots
// (/run/systemd/journal/dev-log), if /dev/log is missing. Resolved inside
// a private journald's mount namespace, the link names that journald's
// socket. A link made here is left in place: tests of other packages may
// be using it, and it is what a systemd host has anyway.
func EnsureDevLog(t testing.TB) {
	t.Helper()
	if _, err := os.Lstat("/dev/log"); err == nil {
		return
	}
	if err := os.Symlink("/run/systemd/journal/dev-log", "/dev/log"); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatalf("linking /dev/log to journald's dev-log socket: %v", err)
	}
}

// mailDir creates a directory for a mail daemon's files that the daemon's
// unprivileged users can traverse (t.TempDir is 0700 under a 0700
// parent), and removes it at cleanup.
func mailDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("creating %s directory: %v", prefix, err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod %s: %v", dir, err)
	}
	return dir
}

// MailUser is a local account with a known password, so that Debian's
// default PAM passdb of dovecot accepts it.
type MailUser struct {
	Name, Password, Home string
}

// NewMailUser creates a local user with a home directory under a fresh
// directory and the given password (chpasswd), and removes it at cleanup.
func NewMailUser(t testing.TB, name, password string) *MailUser {
	t.Helper()
	Require(t, "useradd", "userdel", "chpasswd")
	if _, err := user.Lookup(name); err == nil {
		t.Fatalf("user %s exists already", name)
	}
	home := filepath.Join(mailDir(t, "jk-mailhome-"), name)
	Run(t, "useradd", "--create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin", name)
	t.Cleanup(func() { removeUser(t, name) })
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd for %s: %v\n%s", name, err, out)
	}
	return &MailUser{Name: name, Password: password, Home: home}
}

// removeUser runs userdel, retrying for up to 5 s while it fails (the
// user's last processes exiting, or another test holding the lock on
// /etc/passwd), and reports a user it could not remove.
func removeUser(t testing.TB, name string) {
	var out []byte
	var err error
	for i := 0; i < 50; i++ {
		if out, err = exec.Command("userdel", name).CombinedOutput(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("removing test user %s: %v: %s", name, err, out)
}

// Dovecot is Debian's dovecot (IMAP on 143, POP3 on 110) in the server
// namespace, inside the dovecot.service cgroup, logging through syslog(3)
// to /dev/log as the package does by default, authenticating against PAM
// (Debian's default passdb, /etc/pam.d/dovecot) and serving SASL to
// Postfix on a socket inside Postfix's queue directory.
type Dovecot struct {
	Dir  string
	Conf string
	Proc *UnitProcess
}

// StartDovecot writes a dovecot.conf with Debian's default passdb and
// userdb (pam, passwd), no TLS (the clients send passwords in clear text
// over the test's veth), a SASL listener at saslSocket (skipped when
// empty), and starts `dovecot -F` in the server namespace and jd's mount
// namespace. It returns once IMAP and POP3 answer on 198.51.100.1.
func StartDovecot(t testing.TB, h *Hosts, jd *Journald, saslSocket string) *Dovecot {
	t.Helper()
	Require(t, "dovecot")
	EnsureDevLog(t)
	dir := mailDir(t, "jk-dovecot-")
	d := &Dovecot{Dir: dir, Conf: filepath.Join(dir, "dovecot.conf")}
	sasl := ""
	if saslSocket != "" {
		sasl = fmt.Sprintf(`service auth {
  unix_listener %s {
    mode = 0660
    user = postfix
    group = postfix
  }
}
`, saslSocket)
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
protocols = imap pop3
listen = %[2]s, %[3]s
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
passdb {
  driver = pam
}
userdb {
  driver = passwd
}
%[4]s`, dir, SrvAddr4, SrvAddr6, sasl)
	if err := os.WriteFile(d.Conf, []byte(conf), 0o644); err != nil {
		t.Fatalf("writing dovecot.conf: %v", err)
	}
	d.Proc = StartInUnit(t, "dovecot.service", shellJoin(h.SrvArgv(jd, "/usr/sbin/dovecot", "-F", "-c", d.Conf)))
	for _, port := range []int{143, 110} {
		if err := h.waitMailBanner(SrvAddr4, port, 15*time.Second); err != nil {
			t.Fatalf("dovecot: %v; its output:\n%s", err, d.Proc.Output())
		}
	}
	return d
}

// Postfix is Debian's postfix in the server namespace, inside the
// postfix@-.service cgroup (the unit of Debian's default instance),
// logging through syslog(3) to /dev/log as the package does by default,
// with SMTP on 25 and submission on 587 (SASL through dovecot).
type Postfix struct {
	Dir      string // config directory (main.cf, master.cf)
	QueueDir string
	Proc     *UnitProcess
}

// NewPostfix writes main.cf and master.cf (Debian's master.cf.dist plus
// the submission service as Debian's commented template has it, without
// TLS) into a fresh config directory and creates the queue directory's
// private/ (postfix creates the rest when it starts). It does not start
// postfix: dovecot's SASL socket goes to SASLSocket first.
func NewPostfix(t testing.TB) *Postfix {
	t.Helper()
	Require(t, "postfix")
	dir := mailDir(t, "jk-postfix-")
	p := &Postfix{Dir: filepath.Join(dir, "etc"), QueueDir: filepath.Join(dir, "spool")}
	for _, d := range []string{p.Dir, p.QueueDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("creating %s: %v", d, err)
		}
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %s
data_directory = %s
myhostname = mail.example.com
mydomain = example.com
mydestination = mail.example.com, localhost
inet_interfaces = %s, %s
inet_protocols = all
alias_maps =
alias_database =
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_tls_security_level = none
`, p.QueueDir, filepath.Join(dir, "lib"), SrvAddr4, SrvAddr6)
	if err := os.WriteFile(filepath.Join(p.Dir, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatalf("writing main.cf: %v", err)
	}
	master, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		t.Fatalf("reading Debian's master.cf: %v", err)
	}
	master = append(master, []byte(`submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
`)...)
	if err := os.WriteFile(filepath.Join(p.Dir, "master.cf"), master, 0o644); err != nil {
		t.Fatalf("writing master.cf: %v", err)
	}
	// Postfix creates the rest of its queue at start (start-fg runs its
	// checks); private/ must exist before dovecot puts its SASL socket in.
	private := filepath.Join(p.QueueDir, "private")
	u, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("looking up user postfix: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatalf("creating %s: %v", private, err)
	}
	if err := os.Chown(private, uid, -1); err != nil {
		t.Fatalf("chown %s: %v", private, err)
	}
	return p
}

// SASLSocket is where dovecot's SASL listener must be: private/auth in
// the queue directory (smtpd runs chrooted there).
func (p *Postfix) SASLSocket() string { return filepath.Join(p.QueueDir, "private", "auth") }

// Start runs `postfix start-fg` inside the postfix@-.service cgroup, in
// the server namespace and jd's mount namespace, and returns once port 25
// and 587 answer.
func (p *Postfix) Start(t testing.TB, h *Hosts, jd *Journald) {
	t.Helper()
	EnsureDevLog(t)
	p.Proc = StartInUnit(t, "postfix@-.service", shellJoin(h.SrvArgv(jd, "/usr/sbin/postfix", "-c", p.Dir, "start-fg")))
	t.Cleanup(p.stop) // runs before the UnitProcess cleanup
	for _, port := range []int{25, 587} {
		if err := h.waitMailBanner(SrvAddr4, port, 20*time.Second); err != nil {
			t.Fatalf("postfix: %v; its output:\n%s", err, p.Proc.Output())
		}
	}
}

// stop sends SIGTERM to postfix's master (by the PID in its pid file),
// which stops its children: the master runs in a session of its own, out
// of reach of the script's process group, and holds the script's output
// pipe. It waits up to 5 s for the master to go.
func (p *Postfix) stop() {
	b, err := os.ReadFile(filepath.Join(p.QueueDir, "pid", "master.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// waitMailBanner waits until addr:port, dialled from the attacker
// namespace, sends a greeting ("* OK", "+OK" or "220").
func (h *Hosts) waitMailBanner(addr string, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hp := net.JoinHostPort(addr, strconv.Itoa(port))
	for {
		banner, err := h.AtkBanner(hp, time.Second)
		if err == nil && (strings.HasPrefix(banner, "* OK") || strings.HasPrefix(banner, "+OK") || strings.HasPrefix(banner, "220")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s sent no greeting within %v: %v %q", hp, timeout, err, banner)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// MailOutcome classifies one mail login as the client sees it.
type MailOutcome string

// Outcomes of a mail login.
const (
	MailOK      MailOutcome = "logged in"
	MailDenied  MailOutcome = "login denied"       // curl exit 67 (55: SMTP recipient refused)
	MailRefused MailOutcome = "connection refused" // curl exit 7: banned
	MailOther   MailOutcome = "other"
)

// MailAttempt is the result of one login with curl.
type MailAttempt struct {
	Outcome MailOutcome
	Exit    int
	Output  string
}

// MailLogin logs in with curl from the attacker namespace, from address
// src when it is not empty: scheme "imap" (143), "pop3" (110),
// "submission" (SMTP AUTH on 587, then MAIL FROM, RCPT TO and a short
// message to the user itself) or "smtp" (no AUTH: a message to name on
// port 25; password is not used, and a refused recipient is MailDenied).
func (h *Hosts) MailLogin(scheme, addr, src, name, password string) MailAttempt {
	host := addr
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
		host = "[" + addr + "]"
	}
	args := []string{"netns", "exec", h.Atk, "curl", "-sS", "--max-time", "15"}
	if scheme != "smtp" {
		args = append(args, "--user", name+":"+password)
	}
	if src != "" {
		args = append(args, "--interface", src)
	}
	switch scheme {
	case "smtp":
		// No AUTH: name@ is the recipient of a message sent on port 25.
		args = append(args, "--mail-from", "sender@client.example.net", "--mail-rcpt", name+"@mail.example.com",
			"--upload-file", "-", "smtp://"+host+":25/client.example.net")
	case "submission":
		args = append(args, "--mail-from", name+"@mail.example.com", "--mail-rcpt", name+"@mail.example.com",
			"--upload-file", "-", "smtp://"+host+":587/client.example.net")
	default:
		args = append(args, scheme+"://"+host+"/")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader("Subject: test\r\n\r\ntest\r\n")
	out, err := cmd.CombinedOutput()
	a := MailAttempt{Output: strings.TrimSpace(string(out))}
	var ee *exec.ExitError
	switch {
	case err == nil:
		a.Outcome = MailOK
	case errors.As(err, &ee):
		a.Exit = ee.ExitCode()
		switch a.Exit {
		case 67, 55: // login denied; SMTP: RCPT refused
			a.Outcome = MailDenied
		case 7:
			a.Outcome = MailRefused
		default:
			a.Outcome = MailOther
		}
	default:
		a.Exit = -1
		a.Outcome = MailOther
	}
	return a
}

// MakeMaildir creates ~/Maildir (cur, new, tmp) owned by the user, which
// courier's imapd needs to serve a login (dovecot creates its own).
func (u *MailUser) MakeMaildir(t testing.TB) {
	t.Helper()
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(u.Home, "Maildir", d), 0o700); err != nil {
			t.Fatalf("creating Maildir: %v", err)
		}
	}
	Run(t, "chown", "-R", u.Name+":", filepath.Join(u.Home, "Maildir"))
}
