package testbed

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// ActionsMTA is Debian's postfix in the server namespace with a
// configuration directory of its own, delivering every mail for the
// domains jk-test.example and example.net into one maildir, so that a test
// reads what `jailkeeper actions` sent through `sendmail -t -i`. Point the
// sendmail of a process at it with Env (MAIL_CONFIG). Its log goes to
// its output, not to a journal.
type ActionsMTA struct {
	Dir     string // config directory (main.cf, master.cf)
	Maildir string // where every mail ends up (new/, cur/)

	cmd  *exec.Cmd
	out  bytes.Buffer
	omu  sync.Mutex
	done chan struct{}
}

// MTACommands are the commands StartActionsMTA needs, for Require.
var MTACommands = []string{"postfix", "sendmail"}

// StartActionsMTA writes the configuration, starts `postfix start-fg` in
// the server namespace and stops it at cleanup.
func StartActionsMTA(t testing.TB, h *Hosts) *ActionsMTA {
	t.Helper()
	Require(t, MTACommands...)
	root, err := os.MkdirTemp("", "jk-mta-")
	if err != nil {
		t.Fatalf("creating the MTA's directory: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	// postfix's own users must traverse it.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &ActionsMTA{Dir: filepath.Join(root, "etc"), Maildir: filepath.Join(root, "mail", "inbox")}
	for _, d := range []string{m.Dir, filepath.Join(root, "spool"), filepath.Join(root, "mail")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// virtual(8) delivers as nobody (65534).
	if err := os.Chown(filepath.Join(root, "mail"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	mainCf := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/lib
myhostname = jk-test.example
mydomain = jk-test.example
myorigin = jk-test.example
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
alias_maps =
alias_database =
virtual_mailbox_domains = jk-test.example, example.net
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_tls_security_level = none
maillog_file = /dev/stdout
`, root)
	if err := os.WriteFile(filepath.Join(m.Dir, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		t.Fatalf("reading Debian's master.cf: %v", err)
	}
	if err := os.WriteFile(filepath.Join(m.Dir, "master.cf"), master, 0o644); err != nil {
		t.Fatal(err)
	}
	m.cmd = h.InSrv("/usr/sbin/postfix", "-c", m.Dir, "start-fg")
	w := &lockedWriter{mu: &m.omu, w: &m.out}
	m.cmd.Stdout, m.cmd.Stderr = w, w
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("starting postfix: %v", err)
	}
	m.done = make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "exec", h.Srv, "/usr/sbin/postfix", "-c", m.Dir, "stop").Run()
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
		if t.Failed() {
			t.Logf("postfix output:\n%s", m.Output())
		}
	})
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if strings.Contains(m.Output(), "daemon started") {
			return m
		}
		select {
		case <-m.done:
			t.Fatalf("postfix exited at start:\n%s", m.Output())
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("postfix did not start within 20 s:\n%s", m.Output())
		}
	}
}

// Env points sendmail at this postfix.
func (m *ActionsMTA) Env() string { return "MAIL_CONFIG=" + m.Dir }

// Output is what postfix logged.
func (m *ActionsMTA) Output() string {
	m.omu.Lock()
	defer m.omu.Unlock()
	return m.out.String()
}

// Mails returns every delivered mail (headers and body), oldest first.
func (m *ActionsMTA) Mails(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, sub := range []string{"new", "cur"} {
		f, _ := filepath.Glob(filepath.Join(m.Maildir, sub, "*"))
		files = append(files, f...)
	}
	sort.Slice(files, func(i, j int) bool { return filepath.Base(files[i]) < filepath.Base(files[j]) })
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("reading %s: %v", f, err)
		}
		out = append(out, string(b))
	}
	return out
}

// WaitMail waits for a mail containing every one of want and returns it.
func (m *ActionsMTA) WaitMail(t testing.TB, timeout time.Duration, want ...string) string {
	t.Helper()
	for end := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		for _, mail := range m.Mails(t) {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(mail, w)
			}
			if ok {
				return mail
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no mail with %q within %s; %d mails delivered:\n%s", want, timeout, len(m.Mails(t)), strings.Join(m.Mails(t), "\n-----\n"))
		}
	}
}
