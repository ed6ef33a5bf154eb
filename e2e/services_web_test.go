package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// webBed is one web server from Debian's package with its own namespaces,
// private journald and bus, and a jailkeeper daemon watching it.
type webBed struct {
	h   *testbed.Hosts
	jd  *testbed.Journald
	srv *testbed.WebServer
	d   *testbed.Daemon
}

// webMaxRetry is every web jail's maxretry in these tests.
const webMaxRetry = 3

// startWebBed starts the web server kind and a daemon with one jail per
// name in jails, enabled as docs/services.md says (the name alone: filter,
// units and ports from the built-in), with maxretry webMaxRetry.
func startWebBed(t *testing.T, kind string, o testbed.WebOptions, jails ...string) *webBed {
	t.Helper()
	testbed.Require(t, "ip", "iptables", "ip6tables", "ipset", "dbus-daemon", "busctl", "journalctl", "unshare", "nsenter", "curl")
	b := &webBed{h: testbed.NewHosts(t)}
	b.jd = testbed.StartJournald(t)
	bus := testbed.NewBus(t)
	b.srv = testbed.StartWeb(t, b.h, b.jd, kind, o)
	var cfg strings.Builder
	cfg.WriteString("firewall: {backend: iptables}\njails:\n")
	for _, j := range jails {
		fmt.Fprintf(&cfg, "  %s: {maxretry: %d}\n", j, webMaxRetry)
	}
	b.d = testbed.NewDaemon(t, b.h, bus, map[string]string{"10-web.yaml": cfg.String()})
	b.d.Journald = b.jd
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := b.jd.Command("journalctl", "--no-pager", "-o", "short-precise", "-n", "100", "_SYSTEMD_UNIT="+b.srv.Unit).CombinedOutput()
			t.Logf("%s's journal:\n%s", b.srv.Unit, out)
		}
	})
	b.d.Start(t)
	b.d.WaitReady(t, readyTimeout)
	return b
}

// attack sends requests from src until maxretry of them failed (each must
// fail, none may be refused before), then checks that src is banned within
// banTimeout, that the next request is refused, and that `jailkeeper
// status` lists src in jail.
func (b *webBed) attack(t *testing.T, jail, src, path, user, password string) {
	t.Helper()
	dst := testbed.SrvAddr4
	if strings.Contains(src, ":") {
		dst = testbed.SrvAddr6
	}
	for i := 1; i <= webMaxRetry; i++ {
		if set, ok := b.h.SrvBanned(t, src); ok {
			t.Fatalf("%s: %s banned (set %s) before failure %d", jail, src, set, i)
		}
		r := b.h.HTTPGet(dst, src, path, user, password)
		if r.Outcome != testbed.Denied {
			t.Fatalf("%s: failure %d from %s: %s (HTTP %d), want an HTTP error; curl said %q", jail, i, src, r.Outcome, r.Status, r.Output)
		}
	}
	waitBanned(t, b.h, []string{src}, banTimeout)
	if r := b.h.HTTPGet(dst, src, path, user, password); r.Outcome != testbed.Refused {
		t.Errorf("%s: request %d from %s: %s (HTTP %d), want %s; curl said %q", jail, webMaxRetry+1, src, r.Outcome, r.Status, testbed.Refused, r.Output)
	}
	st := b.d.Status(t, jail)
	if len(st) != 1 || !containsAddr(st[0].Banned, src) {
		t.Errorf("%s: status = %+v, want %s banned", jail, st, src)
	}
}

// injectionAttack fails to log in from the attacker's IPv6 address with a
// user name holding quotes and another address, until the attacker is
// banned; the address inside the name never is.
func (b *webBed) injectionAttack(t *testing.T, jail, user string) {
	t.Helper()
	b.attack(t, jail, testbed.AtkAddr6, "/private/index.html", user, "wrong")
	if set, ok := b.h.SrvBanned(t, webInjected); ok {
		t.Errorf("%s: %s, written in the user name %q, is banned (set %s)", jail, webInjected, user, set)
	}
}

// webInjected is the address the injection attacks write into user names.
const webInjected = "203.0.113.66"

// loginOK logs in successfully from src more often than maxretry and checks
// that src is never banned.
func (b *webBed) loginOK(t *testing.T, src string) {
	t.Helper()
	for i := 1; i <= webMaxRetry+1; i++ {
		r := b.h.HTTPGet(testbed.SrvAddr4, src, "/private/index.html", testbed.WebUser, testbed.WebPassword)
		if r.Status != 200 {
			t.Fatalf("login %d from %s: %s (HTTP %d), want HTTP 200; curl said %q", i, src, r.Outcome, r.Status, r.Output)
		}
	}
	time.Sleep(300 * time.Millisecond) // the daemon's reader is well under this behind
	if set, ok := b.h.SrvBanned(t, src); ok {
		t.Errorf("%s banned (set %s) after successful logins only", src, set)
	}
}

// authAttack: wrong passwords from the attacker's main address until it is
// banned, and a successful login from another address, never banned.
func (b *webBed) authAttack(t *testing.T, jail string) {
	t.Helper()
	const good = "198.51.100.4"
	b.h.AddAttackerAddr(t, good+"/24")
	b.loginOK(t, good)
	b.attack(t, jail, testbed.AtkAddr4, "/private/index.html", testbed.WebUser, "wrong")
	// The ban covers the attacker only.
	if _, ok := b.h.SrvBanned(t, good); ok {
		t.Errorf("%s banned with %s", good, testbed.AtkAddr4)
	}
	if r := b.h.HTTPGet(testbed.SrvAddr4, good, "/private/index.html", testbed.WebUser, testbed.WebPassword); r.Status != 200 {
		t.Errorf("login from %s after the ban of %s: %s (HTTP %d)", good, testbed.AtkAddr4, r.Outcome, r.Status)
	}
}

// TestWebNginx: nginx logging to syslog as docs/services.md says, with its
// host name in MESSAGE (no ",nohostname") and the access log in the journal:
// wrong passwords (nginx-http-auth), limit_req refusals (nginx-limit-req)
// and scanner probes (nginx-botsearch, from the access log) each ban their
// source after exactly maxretry.
func TestWebNginx(t *testing.T) {
	t.Parallel()
	b := startWebBed(t, testbed.Nginx, testbed.WebOptions{NginxAccessLog: true}, "nginx-http-auth", "nginx-limit-req", "nginx-botsearch")
	b.authAttack(t, "nginx-http-auth")

	const limited, prober = "198.51.100.5", "198.51.100.6"
	b.h.AddAttackerAddr(t, limited+"/24")
	b.h.AddAttackerAddr(t, prober+"/24")
	// One request a minute passes; the next ones are refused with 503.
	if r := b.h.HTTPGet(testbed.SrvAddr4, limited, "/limited/index.html", "", ""); r.Status != 200 {
		t.Fatalf("first request from %s: HTTP %d, want 200; curl said %q", limited, r.Status, r.Output)
	}
	b.attack(t, "nginx-limit-req", limited, "/limited/index.html", "", "")
	b.attack(t, "nginx-botsearch", prober, "/wp-login.php", "", "")

	// What nginx wrote: the host name and tag stay in MESSAGE.
	lines := b.jdLines(t, "_SYSTEMD_UNIT=nginx.service")
	if !anyHas(lines, " nginx: ", `user "alice": password mismatch, client: `+testbed.AtkAddr4) {
		t.Errorf("no 'HOSTNAME nginx: … password mismatch' line in the journal:\n%s", strings.Join(lines, "\n"))
	}
}

// TestWebNginxNoHostname: nginx with ",nohostname" as docs/services.md
// recommends, no access log: wrong passwords (over IPv6 with a user name
// that imitates the rest of the line), and scanner probes counted from the
// error log's "open() … failed (2: No such file or directory)".
func TestWebNginxNoHostname(t *testing.T) {
	t.Parallel()
	b := startWebBed(t, testbed.Nginx, testbed.WebOptions{NginxNoHostname: true}, "nginx-http-auth", "nginx-botsearch")
	b.authAttack(t, "nginx-http-auth")
	// A basic-auth user name holds no ':', but may hold quotes and the
	// rest of what nginx writes after it.
	b.injectionAttack(t, "nginx-http-auth", `eve" was not found in "/x", client `+webInjected+`, server `)
	const prober = "198.51.100.6"
	b.h.AddAttackerAddr(t, prober+"/24")
	b.attack(t, "nginx-botsearch", prober, "/phpmyadmin/index.php", "", "")
	lines := b.jdLines(t, "_SYSTEMD_UNIT=nginx.service", "SYSLOG_IDENTIFIER=nginx")
	if !anyHas(lines, "", `user "alice": password mismatch, client: `+testbed.AtkAddr4) {
		t.Errorf("no 'password mismatch' line with SYSLOG_IDENTIFIER=nginx in the journal:\n%s", strings.Join(lines, "\n"))
	}
}

// TestWebApache: apache2 with "ErrorLog syslog:daemon" and "LogLevel warn
// core:info" (docs/services.md): wrong passwords over IPv4 and IPv6 (Apache
// writes "[client 2001:db8::2:PORT]"; the user name holds another
// "[client H]") and probes for scanner paths each ban their source after
// exactly maxretry.
func TestWebApache(t *testing.T) {
	t.Parallel()
	b := startWebBed(t, testbed.Apache, testbed.WebOptions{}, "apache-auth", "apache-botsearch")
	b.authAttack(t, "apache-auth")
	b.injectionAttack(t, "apache-auth", `mallory" [client `+webInjected+`] x`)
	const prober = "198.51.100.6"
	b.h.AddAttackerAddr(t, prober+"/24")
	b.attack(t, "apache-botsearch", prober, "/wp-login.php", "", "")
	lines := b.jdLines(t, "_SYSTEMD_UNIT=apache2.service", "SYSLOG_IDENTIFIER=apache2")
	if !anyHas(lines, "[client "+testbed.AtkAddr6+":", `AH01618: user mallory" [client `+webInjected+`] x not found`) {
		t.Errorf("no AH01618 line from [client %s:PORT] in the journal:\n%s", testbed.AtkAddr6, strings.Join(lines, "\n"))
	}
}

// TestWebLighttpd: lighttpd with its error log on stderr into the journal
// (docs/services.md): wrong passwords over IPv4 and IPv6 (with a user name
// holding another address) ban after exactly maxretry.
func TestWebLighttpd(t *testing.T) {
	t.Parallel()
	b := startWebBed(t, testbed.Lighttpd, testbed.WebOptions{}, "lighttpd-auth")
	b.authAttack(t, "lighttpd-auth")
	b.injectionAttack(t, "lighttpd-auth", `eve" IP `+webInjected+` username`)
}

// jdLines returns the MESSAGE of the bed's journal entries matching the
// journalctl matches.
func (b *webBed) jdLines(t *testing.T, matches ...string) []string {
	t.Helper()
	_ = b.jd.Sync()
	args := append([]string{"--no-pager", "-o", "cat"}, matches...)
	out, err := b.jd.Command("journalctl", args...).Output()
	if err != nil {
		t.Fatalf("journalctl %v: %v", matches, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// anyHas reports whether a line contains both a and b.
func anyHas(lines []string, a, b string) bool {
	for _, l := range lines {
		if strings.Contains(l, a) && strings.Contains(l, b) {
			return true
		}
	}
	return false
}
