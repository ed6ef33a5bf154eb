package systemdtest

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// cockpitPackages are the Debian packages of Cockpit the page runs in;
// sudo, through which Cockpit gives an administrator administrative
// access; and dbus-user-session, which debootstrap does not pick by itself
// for the "default-dbus-session-bus | dbus-session-bus" that dconf-service
// (pulled in by glib-networking) depends on.
var cockpitPackages = []string{"cockpit-ws", "cockpit-bridge", "cockpit-system", "sudo", "dbus-user-session"}

// TestCockpitUnderSystemd runs the Cockpit page as a user meets it: Debian's
// Cockpit in a container under a real systemd 252, cockpit.socket started,
// the page installed by make install, and headless Chromium logging in
// through Cockpit's own login page (PAM, cockpit-session) as two local
// users with passwords: one without administrative rights sees the ban
// read-only, one in the sudo group (Cockpit's administrative access
// through sudo with the login password) unbans it with a click.
func TestCockpitUnderSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a container")
	}
	installPrereqs(t)
	testbed.Require(t, append([]string{"debootstrap", "systemd-nspawn", "nsenter", "ip", "make", "cp"}, testbed.BrowserCommands...)...)
	repo, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	root := newRootfs(t, cachedRootfsWith(t, cockpitPackages...))
	h := testbed.NewHosts(t)
	c := bootContainer(t, root, h.Srv)
	makeInstall(t, repo, root)
	defer func() {
		if t.Failed() {
			out, _ := c.Run("journalctl", "--no-pager", "-n", "100")
			t.Logf("container journal:\n%s", out)
		}
	}()
	// Plain HTTP on the container's loopback: the browser runs in its
	// network namespace, and a test has no certificate to trust.
	writeFile(t, root, "/etc/cockpit/cockpit.conf", "[WebService]\nAllowUnencrypted = true\n")
	for _, u := range []struct{ name, groups string }{{"watcher", ""}, {"keeper", "sudo"}} {
		args := []string{"useradd", "--create-home", "--shell", "/bin/bash"}
		if u.groups != "" {
			args = append(args, "--groups", u.groups)
		}
		c.Must(t, append(args, u.name)...)
		c.Must(t, "sh", "-c", fmt.Sprintf("echo '%s:pw-%s-7Qx' | chpasswd", u.name, u.name))
	}
	c.Must(t, "systemctl", "enable", "--now", unit)
	c.Must(t, "systemctl", "start", "cockpit.socket")
	const addr = "203.0.113.7"
	c.Must(t, "jailkeeper", "ban", "sshd", addr, "--for", "1h")

	page := "http://127.0.0.1:9090/cockpit/@localhost/jailkeeper/index.html"
	row := fmt.Sprintf(`document.querySelector('#bans tr[data-address="%s"][data-jail="sshd"]')`, addr)
	// login logs in through Cockpit's login page. admin: as a user who
	// turned on administrative access before — Cockpit keeps that choice
	// in the browser (localStorage "superuser:USER"), and its login page
	// then asks for it at once (X-Superuser: any), through sudo with the
	// login password; a first login starts in limited access.
	login := func(user string, admin bool) *testbed.Browser {
		t.Helper()
		br := testbed.StartBrowser(t, h.SrvArgv(nil)...)
		var err error
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if err = br.Navigate("http://127.0.0.1:9090/"); err != nil {
				continue
			}
			if _, err = br.WaitFor(`document.querySelector("#login-user-input") && document.querySelector("#login-user-input").offsetParent !== null`, 2*time.Second); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s: no Cockpit login page on 127.0.0.1:9090: %v", user, err)
		}
		if admin {
			if err := br.Eval(fmt.Sprintf(`localStorage.setItem("superuser:%s", "any")`, user), nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := br.Eval(fmt.Sprintf(`(() => {
			document.querySelector("#login-user-input").value = %q;
			document.querySelector("#login-password-input").value = %q;
			document.querySelector("#login-button").click();
		})()`, user, "pw-"+user+"-7Qx"), nil); err != nil {
			t.Fatal(err)
		}
		// Logged in: the shell replaces the login page.
		if _, err := br.WaitFor(`document.readyState === "complete" && document.body && !document.querySelector("#login-user-input")`, 20*time.Second); err != nil {
			var msg string
			br.Eval(`document.body.innerText`, &msg)
			t.Fatalf("%s: login did not complete: %v (the page says %q)", user, err, msg)
		}
		if err := br.Navigate(page); err != nil {
			t.Fatal(err)
		}
		if _, err := br.WaitFor(`document.querySelector("#service.running") && `+row, 20*time.Second); err != nil {
			var service string
			br.Eval(`(document.querySelector("#service") || {}).textContent || document.title`, &service)
			t.Fatalf("%s: the page did not show the running daemon and the ban of %s: %v (service line %q)", user, addr, err, service)
		}
		return br
	}

	ro := login("watcher", false)
	if _, err := ro.WaitFor(`document.body.classList.contains("read-only") && document.querySelector("#ban-section").hidden`, 10*time.Second); err != nil {
		var access string
		ro.Eval(`document.querySelector("#access").textContent`, &access)
		t.Errorf("watcher's page is not read-only (%q): %v", access, err)
	}

	admin := login("keeper", true)
	if _, err := admin.WaitFor(`!document.body.classList.contains("read-only") && `+row+`.querySelector("button.unban:not([disabled])")`, 15*time.Second); err != nil {
		var access string
		admin.Eval(`document.querySelector("#access").textContent`, &access)
		t.Fatalf("keeper (sudo) has no administrative access on the page (%q): %v", access, err)
	}
	shot := filepath.Join(t.TempDir(), "cockpit-systemd.png")
	if err := admin.Screenshot(shot); err == nil {
		t.Logf("screenshot in %s", shot)
	}
	if err := admin.Eval(row+`.querySelector("button.unban").click()`, nil); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st := jsonStatus(t, c)
		if len(st.Jails) > 0 && st.Jails[0].CurrentlyBanned == 0 {
			break
		}
		if time.Now().After(end) {
			var errText string
			admin.Eval(`document.querySelector("#error").textContent`, &errText)
			t.Fatalf("%s still banned 10 s after keeper's click on Unban (page error %q)", addr, errText)
		}
	}
	if _, ok := h.SrvBanned(t, addr); ok {
		t.Errorf("%s is still in a kernel set after the unban", addr)
	}
	// The history (readable by both) shows the unban; the read-only page
	// follows the change live.
	unbanRow := fmt.Sprintf(`document.querySelector('#history tr[data-address="%s"][data-kind="unban"]')`, addr)
	for name, br := range map[string]*testbed.Browser{"keeper": admin, "watcher": ro} {
		if _, err := br.WaitFor("!"+row+" && "+unbanRow, 5*time.Second); err != nil {
			t.Errorf("%s's page does not show the unban: %v", name, err)
		}
	}
	if out, _ := c.Run("journalctl", "--no-pager", "-o", "cat", "-u", unit, "ADDRESS="+addr); !strings.Contains(out, "unbanned "+addr) {
		t.Errorf("journal of the unban: %q", out)
	}
}
