package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// cockpitWS is where Debian's cockpit-ws package puts the web service.
const cockpitWS = "/usr/lib/cockpit/cockpit-ws"

// TestCockpitPage serves the Cockpit page of packaging/cockpit with
// Debian's cockpit-ws (a local session: cockpit-bridge as root, no login)
// in the server namespace, talking to the real daemon on the test's
// private system bus, and drives headless Chromium through the DevTools
// protocol: a real sshd attacker appears in the bans table within 2 s of
// its ban, a click on its Unban button lifts the ban in the kernel, and the
// jail's counters follow. It saves a screenshot (JAILKEEPER_SCREENSHOT, or
// the test's temporary directory).
func TestCockpitPage(t *testing.T) {
	t.Parallel()
	testbed.Require(t, append(append(testbed.BedCommands, testbed.BrowserCommands...), "cockpit-bridge")...)
	if _, err := os.Stat(cockpitWS); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("missing prerequisite %s (CI is set: failing instead of skipping)", cockpitWS)
		}
		t.Skipf("missing prerequisite %s", cockpitWS)
	}
	bed := testbed.NewBed(t)
	h := bed.Hosts
	d := bed.NewDaemon(t, map[string]string{"10-sshd.yaml": testbed.SSHJailConfig})
	d.Start(t)
	d.WaitReady(t, readyTimeout)

	// A ban made before the page opens comes from its first read of the
	// table (ListBansPage), not from a signal.
	if out, err := d.Bus.BusCall("Ban", "sst", "sshd", "203.0.113.77", "0"); err != nil {
		t.Fatalf("ban before the page opens: %v: %s", err, out)
	}

	// The package, found through XDG_DATA_DIRS as an installed one is.
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "cockpit"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "packaging/cockpit/jailkeeper"), filepath.Join(data, "cockpit/jailkeeper")); err != nil {
		t.Fatal(err)
	}
	const port = "9090"
	startCockpitWS(t, bed, data, port, "")
	br := testbed.StartBrowser(t, h.SrvArgv(nil)...)
	url := pageURL(port)
	var navErr error
	for i := 0; i < 50; i++ { // cockpit-ws listening
		if navErr = br.Navigate(url); navErr == nil {
			if _, err := br.WaitFor(`document.querySelector("#jails tr[data-jail=sshd]")`, 2*time.Second); err == nil {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := br.WaitFor(`document.querySelector("#jails tr[data-jail=sshd]") && document.querySelector("#service.running")`, 10*time.Second); err != nil {
		t.Fatalf("the page did not show the running daemon's jail: %v (navigate: %v)", err, navErr)
	}
	if _, err := br.WaitFor(`/^jailkeeper \S+ is running, firewall backend iptables/.test(document.querySelector("#service").textContent)`, 5*time.Second); err != nil {
		var service string
		br.Eval(`document.querySelector("#service").textContent`, &service)
		t.Errorf("service state shows %q: %v", service, err)
	}

	if _, err := br.WaitFor(`document.querySelector('#bans tr[data-address="203.0.113.77"][data-jail="sshd"]')`, 5*time.Second); err != nil {
		var errText string
		br.Eval(`document.querySelector("#error").textContent`, &errText)
		t.Errorf("the ban made before the page opened is not in its table: %v (page error: %q)", err, errText)
	}

	// A real attacker: three failed logins over IPv4.
	attacker := testbed.AtkAddr4
	row := fmt.Sprintf(`document.querySelector('#bans tr[data-address="%s"][data-jail="sshd"]')`, attacker)
	seen := make(chan time.Time, 1)
	go func() {
		if _, err := br.WaitFor(row, 30*time.Second); err == nil {
			seen <- time.Now()
		}
		close(seen)
	}()
	for i := 1; i <= 3; i++ {
		if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Denied {
			t.Fatalf("attempt %d: %s, want %s; ssh said %q", i, a.Outcome, testbed.Denied, a.Output)
		}
	}
	var banned time.Time
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		if _, ok := h.SrvBanned(t, attacker); ok {
			banned = time.Now()
			break
		}
		if time.Since(start) > banTimeout {
			t.Fatalf("%s not banned %v after its 3rd failure", attacker, banTimeout)
		}
	}
	at, ok := <-seen
	if !ok {
		t.Fatalf("%s never appeared in the page's bans table", attacker)
	}
	lag := at.Sub(banned)
	t.Logf("%s in the bans table %v after it was in the kernel set", attacker, lag.Round(time.Millisecond))
	if lag > 2*time.Second {
		t.Errorf("the page showed the ban %v after the kernel had it; want ≤ 2 s", lag)
	}
	if _, err := br.WaitFor(`document.querySelector("#jails tr[data-jail=sshd] td:nth-child(9)").textContent === "2"`, 3*time.Second); err != nil {
		t.Errorf("the jail's CurrentlyBanned did not reach 2 (the attacker and the ban made before): %v", err)
	}
	// The history shows the ban with its reason and origin, live.
	histRow := func(kind string) string {
		return fmt.Sprintf(`document.querySelector('#history tr[data-address="%s"][data-jail="sshd"][data-kind="%s"]')`, attacker, kind)
	}
	var reason string
	if _, err := br.WaitFor(histRow("ban"), 3*time.Second); err != nil {
		t.Errorf("no history row of the ban: %v", err)
	} else if err := br.Eval(histRow("ban")+`.querySelector("td:nth-child(5)").textContent`, &reason); err != nil || !strings.Contains(reason, "3 failures within") {
		t.Errorf("the history row's reason is %q (%v), want the filter's reason", reason, err)
	} else {
		var cells []string
		br.Eval(`Array.from(`+histRow("ban")+`.cells).map(c => c.textContent)`, &cells)
		t.Logf("history row: %q", cells)
		if len(cells) != 6 || !strings.HasPrefix(cells[3], "banned until ") || cells[5] != "the jail's filter" {
			t.Errorf("history row %q: want the event \"banned until …\" and the origin \"the jail's filter\"", cells)
		}
	}
	shot := os.Getenv("JAILKEEPER_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "cockpit.png")
	}
	if err := br.Screenshot(shot); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		t.Logf("screenshot in %s", shot)
	}

	// Unban by clicking.
	if err := br.Eval(row+`.querySelector("button.unban").click()`, nil); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := h.SrvBanned(t, attacker); !ok {
			t.Logf("unbanned in the kernel %v after the click", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 5*time.Second {
			var errText string
			br.Eval(`document.querySelector("#error").textContent`, &errText)
			t.Fatalf("%s still in the kernel set 5 s after the click on Unban (page error: %q)", attacker, errText)
		}
	}
	if _, err := br.WaitFor("!"+row, 3*time.Second); err != nil {
		t.Errorf("the unbanned row stayed in the table: %v", err)
	}
	if _, err := br.WaitFor(histRow("unban")+` && `+histRow("unban")+`.cells[5].textContent === "an administrator"`, 3*time.Second); err != nil {
		t.Errorf("no history row of the unban by an administrator: %v", err)
	}

	// A refused call shows the daemon's text: a whitelisted address.
	if err := br.Eval(`(() => { document.querySelector("#ban-address").value = "198.51.100.3";
		document.querySelector("#ban-button").click(); })()`, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := br.WaitFor(`document.querySelector("#error").textContent.includes("whitelist")`, 5*time.Second); err != nil {
		var errText string
		br.Eval(`document.querySelector("#error").textContent`, &errText)
		t.Errorf("refused ban: page error %q: %v", errText, err)
	}

	// A session without administrative access (cockpit-ws and its bridge
	// as nobody, no sudo): read-only, no ban form, no unban buttons.
	startCockpitWS(t, bed, data, "9091", "65534")
	ro := testbed.StartBrowser(t, h.SrvArgv(nil)...)
	for i := 0; i < 50; i++ {
		if ro.Navigate(pageURL("9091")) == nil {
			if _, err := ro.WaitFor(`document.querySelector("#jails tr[data-jail=sshd]")`, 2*time.Second); err == nil {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := ro.WaitFor(`document.body.classList.contains("read-only") && document.querySelector("#ban-section").hidden && document.querySelector("#jails tr[data-jail=sshd]")`, 10*time.Second); err != nil {
		var access string
		ro.Eval(`document.querySelector("#access").textContent`, &access)
		t.Errorf("nobody's page is not read-only (%q): %v", access, err)
	}
	// The history is open to read; user names in reasons are root's only.
	if _, err := ro.WaitFor(histRow("ban"), 5*time.Second); err != nil {
		t.Errorf("nobody's page shows no history row of the ban: %v", err)
	} else if strings.Contains(reason, `user "`) {
		var roReason string
		ro.Eval(histRow("ban")+`.cells[4].textContent`, &roReason)
		if !strings.Contains(roReason, "user (hidden)") {
			t.Errorf("nobody sees the reason %q; want the user name hidden (root sees %q)", roReason, reason)
		}
	}
}

func pageURL(port string) string {
	return "http://127.0.0.1:" + port + "/cockpit/@localhost/jailkeeper/index.html"
}

// startCockpitWS runs cockpit-ws with a local session (its bridge as the
// same user; uid "" = root) in bed's server namespace on 127.0.0.1:port,
// finding packages in data first, and stops it at cleanup.
func startCockpitWS(t *testing.T, bed *testbed.Bed, data, port, uid string) {
	t.Helper()
	cmdline := []string{cockpitWS, "--no-tls", "--local-session=cockpit-bridge", "--address=127.0.0.1", "--port=" + port}
	if uid != "" {
		cmdline = append([]string{"setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups"}, cmdline...)
	}
	argv := bed.Hosts.SrvArgv(nil, cmdline...)
	ws := exec.Command(argv[0], argv[1:]...)
	// An address that connects nowhere: without one, the bridge's libdbus
	// autolaunches a session dbus-daemon that outlives the test.
	ws.Env = append(os.Environ(), bed.Bus.Env(), "XDG_DATA_DIRS="+data+":/usr/local/share:/usr/share",
		"DBUS_SESSION_BUS_ADDRESS=disabled:")
	if uid != "" {
		// The package's directory must be readable by the session's user.
		os.Chmod(filepath.Dir(data), 0o755)
		os.Chmod(data, 0o755)
	}
	var out strings.Builder
	ws.Stdout, ws.Stderr = &out, &out
	if err := ws.Start(); err != nil {
		t.Fatalf("starting cockpit-ws: %v", err)
	}
	t.Cleanup(func() {
		ws.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { ws.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			ws.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("cockpit-ws (port %s) output:\n%s", port, out.String())
		}
	})
}
