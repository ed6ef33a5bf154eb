package systemdtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

const (
	unit = "jailkeeper"
	// chain is the chain jailkeeper jumps to from INPUT (docs/daemon.md).
	chain = "JAILKEEPER"
	// testUser is an unprivileged user created in the container.
	testUser = "jk-user"
	// testAdmin is a user created in the container whom a polkit rule
	// grants org.jailkeeper.manage.
	testAdmin = "jk-admin"
)

// TestSystemdService runs jailkeeper under a real systemd exactly as the
// README has a user run it, and checks each promise the unit makes.
func TestSystemdService(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a container (about a minute, more on the first run)")
	}
	installPrereqs(t)
	testbed.Require(t, "debootstrap", "systemd-nspawn", "nsenter", "ip", "make", "cp")
	begin := time.Now()
	repo, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}

	root := newRootfs(t, cachedRootfs(t))
	h := testbed.NewHosts(t)
	c := bootContainer(t, root, h.Srv)
	// Installed into the running system, as on a real server.
	makeInstall(t, repo, root)
	// Deferred, not a cleanup: it must run before the container's
	// poweroff, which is a cleanup of whichever container booted last.
	defer func() {
		if t.Failed() {
			// Structured lines only: a watchdog's SIGABRT makes the Go
			// runtime dump every goroutine on stderr.
			out, _ := c.Run("journalctl", "--no-pager", "-n", "80", "-u", unit, "-u", "dbus", "_TRANSPORT=journal")
			t.Logf("container journal (jailkeeper, dbus):\n%s", out)
		}
	}()

	// step runs one check as a subtest; the scenario stops at the first
	// failure, since later steps build on earlier ones.
	ok := true
	step := func(name string, f func(t *testing.T)) {
		if !ok {
			return
		}
		s := time.Now()
		if ok = t.Run(name, f); ok {
			t.Logf("%-22s %v", name, time.Since(s).Round(time.Millisecond))
		}
	}

	step("enable --now", func(t *testing.T) {
		if got := strings.TrimSpace(c.Must(t, "readlink", "-f", "/usr/local/bin/jailkeeper")); got != "/usr/local/bin/jailkeeper" {
			t.Fatalf("make install: /usr/local/bin/jailkeeper resolves to %q", got)
		}
		s := time.Now()
		c.Must(t, "systemctl", "enable", "--now", unit)
		t.Logf("systemctl enable --now returned after %v (Type=notify: after READY=1)", time.Since(s).Round(time.Millisecond))
		// READY=1 comes after the firewall layout is built.
		if first := firstRule(c.Must(t, "iptables", "-S", "INPUT")); first != "-A INPUT -j "+chain {
			t.Errorf("when enable --now returned: first INPUT rule %q, want the jump to %s", first, chain)
		}
		for _, q := range [][2]string{{"is-enabled", "enabled"}, {"is-active", "active"}} {
			if got := strings.TrimSpace(c.Must(t, "systemctl", q[0], unit)); got != q[1] {
				t.Errorf("systemctl %s %s = %q, want %q", q[0], unit, got, q[1])
			}
		}
		for prop, want := range map[string]string{"Type": "notify", "WatchdogUSec": "30s", "BusName": "org.jailkeeper", "NRestarts": "0"} {
			if got := c.Show(t, unit, prop); got != want {
				t.Errorf("%s = %q, want %q", prop, got, want)
			}
		}
		// The daemon's STATUS= line, e.g. "1 jails (sshd), 0 bans".
		if st := c.Show(t, unit, "StatusText"); !strings.Contains(st, "sshd") {
			t.Errorf("StatusText = %q, want the daemon's STATUS= line naming the sshd jail", st)
		}
		// ExecStart's `jailkeeper daemon` exec'd jailkeeperd in place: the
		// main PID runs the daemon's own executable.
		pid := c.Show(t, unit, "MainPID")
		if exe, err := c.Run("readlink", "/proc/"+pid+"/exe"); err != nil || strings.TrimSpace(exe) != "/usr/local/bin/jailkeeperd" {
			t.Errorf("MainPID %s runs %q (%v), want /usr/local/bin/jailkeeperd", pid, strings.TrimSpace(exe), err)
		}
	})

	step("status", func(t *testing.T) {
		st := jsonStatus(t, c)
		if len(st.Jails) != 1 || st.Jails[0].Name != "sshd" {
			t.Errorf("jailkeeper status --json: jails %+v, want one named sshd", st.Jails)
		}
		if out := c.Must(t, "jailkeeper", "status"); !strings.Contains(out, "sshd") {
			t.Errorf("jailkeeper status does not name sshd:\n%s", out)
		}
	})

	step("firewall layout", func(t *testing.T) {
		for _, tool := range []string{"iptables", "ip6tables"} {
			first := firstRule(c.Must(t, tool, "-S", "INPUT"))
			if first != "-A INPUT -j "+chain {
				t.Errorf("%s -S INPUT: first rule %q, want the jump to %s", tool, first, chain)
			}
		}
	})

	step("ban, unban over D-Bus", func(t *testing.T) {
		const addr = "203.0.113.7"
		c.Must(t, "jailkeeper", "ban", "sshd", addr)
		if _, ok := kernelBan(t, c, addr); !ok {
			t.Fatalf("after jailkeeper ban: %s in no ipset", addr)
		}
		out := c.Must(t, "busctl", "call", "org.jailkeeper", "/org/jailkeeper", "org.jailkeeper.Manager1", "Unban", "s", addr)
		if strings.TrimSpace(out) != "u 1" {
			t.Errorf("busctl call … Unban s %s = %q, want \"u 1\"", addr, out)
		}
		if _, ok := kernelBan(t, c, addr); ok {
			t.Errorf("after Unban: %s still in an ipset", addr)
		}
	})

	step("journal", func(t *testing.T) {
		const addr = "203.0.113.7"
		want := []string{"^banned " + addr, "^unbanned " + addr}
		c.WaitJournal(t, want, "-u", unit)
		c.WaitJournal(t, want, "-u", unit, "JAIL=sshd")
		c.WaitJournal(t, want, "-u", unit, "ADDRESS="+addr)
	})

	step("traffic", func(t *testing.T) {
		// The container's own sshd (ssh.service), dialled from the
		// attacker: the ban must refuse it, the unban let it in again.
		if b, err := h.AtkBanner("198.51.100.1:22", 2*time.Second); err != nil || !strings.HasPrefix(b, "SSH-") {
			t.Fatalf("before the ban: banner %q, %v; want sshd's", b, err)
		}
		c.Must(t, "jailkeeper", "ban", "sshd", "198.51.100.2")
		if err := atkDial(h); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("after banning the attacker: dial = %v, want connection refused (tcp-reset)", err)
		}
		c.Must(t, "busctl", "call", "org.jailkeeper", "/org/jailkeeper", "org.jailkeeper.Manager1", "Unban", "s", "198.51.100.2")
		if b, err := h.AtkBanner("198.51.100.1:22", 2*time.Second); err != nil || !strings.HasPrefix(b, "SSH-") {
			t.Fatalf("after Unban: banner %q, %v; want sshd's", b, err)
		}
	})

	step("polkit", func(t *testing.T) {
		// The bus lets everyone's changing calls through to the daemon,
		// which asks polkit about callers other than root: refused
		// without a rule, granted to the one user a rule names.
		const addr = "203.0.113.9"
		c.Must(t, "useradd", "--no-create-home", testUser)
		c.Must(t, "useradd", "--no-create-home", testAdmin)
		as := func(user string, argv ...string) (string, error) {
			return c.Run(append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--clear-groups"}, argv...)...)
		}
		// refused checks that user can neither ban nor unban addr nor
		// reload, and that addr stays banned or not as it was.
		refused := func(user string, banned bool) {
			t.Helper()
			verb := []string{"jailkeeper", "ban", "sshd", addr}
			if banned {
				verb = []string{"jailkeeper", "unban", addr}
			}
			out, err := as(user, verb...)
			if err == nil || !strings.Contains(out, "uid ") || !strings.Contains(out, "polkit does not grant org.jailkeeper.manage") {
				t.Errorf("%s as %s: %v, want the daemon's refusal naming polkit's action:\n%s", strings.Join(verb, " "), user, err, out)
			}
			out, err = as(user, "dbus-send", "--system", "--print-reply", "--dest=org.jailkeeper",
				"/org/jailkeeper", "org.jailkeeper.Manager1.Reload")
			if err == nil || testbed.RefusedByBus(out) || !strings.Contains(out, "org.jailkeeper.Error.PermissionDenied") {
				t.Errorf("Reload by %s: %v, want org.jailkeeper.Error.PermissionDenied from the daemon:\n%s", user, err, out)
			}
			if _, ok := kernelBan(t, c, addr); ok != banned {
				t.Fatalf("in the kernel after refused calls by %s: %s %v, want %v", user, addr, ok, banned)
			}
		}
		refused(testAdmin, false)
		refused(testUser, false)

		writeFile(t, root, "/etc/polkit-1/rules.d/50-jailkeeper-test.rules", `polkit.addRule(function(action, subject) {
    if (action.id == "org.jailkeeper.manage" && subject.user == "`+testAdmin+`") {
        return polkit.Result.YES;
    }
});
`)
		// polkitd reloads its rules when the directory changes.
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := as(testAdmin, "jailkeeper", "ban", "sshd", addr)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("jailkeeper ban as %s with a polkit rule granting it: %v\n%s", testAdmin, err, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if _, ok := kernelBan(t, c, addr); !ok {
			t.Fatalf("after jailkeeper ban by %s: %s in no ipset", testAdmin, addr)
		}
		refused(testUser, true) // the rule names one user
		if out, err := as(testAdmin, "jailkeeper", "unban", addr); err != nil {
			t.Fatalf("jailkeeper unban as %s: %v\n%s", testAdmin, err, out)
		}
		if _, ok := kernelBan(t, c, addr); ok {
			t.Errorf("after jailkeeper unban by %s: %s still in an ipset", testAdmin, addr)
		}
		if out, err := as(testAdmin, "jailkeeper", "reload"); err != nil {
			t.Errorf("jailkeeper reload as %s: %v\n%s", testAdmin, err, out)
		}
		if out, err := as(testUser, "jailkeeper", "status", "--json"); err != nil || !strings.Contains(out, `"sshd"`) {
			t.Errorf("jailkeeper status by an unprivileged user: %v\n%s", err, out)
		}

		// A rule asking for authentication: a call without the
		// ALLOW_INTERACTIVE_AUTHORIZATION flag (dbus-send sets none) is
		// told so; one with it (jailkeeper's) lets polkit try an agent,
		// and there is none here.
		const authRule = "/etc/polkit-1/rules.d/50-jailkeeper-test-auth.rules"
		writeFile(t, root, authRule, `polkit.addRule(function(action, subject) {
    if (action.id == "org.jailkeeper.manage" && subject.user == "`+testUser+`") {
        return polkit.Result.AUTH_ADMIN;
    }
});
`)
		deadline = time.Now().Add(10 * time.Second)
		for {
			out, _ := as(testUser, "dbus-send", "--system", "--print-reply", "--dest=org.jailkeeper",
				"/org/jailkeeper", "org.jailkeeper.Manager1.Reload")
			if strings.Contains(out, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Reload by %s under an AUTH_ADMIN rule, no interactive flag: want InteractiveAuthorizationRequired:\n%s", testUser, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
		start := time.Now()
		out, err := as(testUser, "jailkeeper", "ban", "sshd", addr)
		t.Logf("jailkeeper ban by %s under an AUTH_ADMIN rule, interactive, no agent (%v): %v: %s", testUser, time.Since(start).Round(time.Millisecond), err, out)
		if err == nil || !strings.Contains(out, "did not authenticate for org.jailkeeper.manage") {
			t.Errorf("jailkeeper ban by %s under an AUTH_ADMIN rule without an agent: %v, want refused as not authenticated:\n%s", testUser, err, out)
		}
		if _, ok := kernelBan(t, c, addr); ok {
			t.Errorf("%s banned by an unauthenticated user", addr)
		}
		if err := os.Remove(filepath.Join(root, authRule)); err != nil {
			t.Fatal(err)
		}
	})

	// Reboot with persisted bans, the network namespace recreated empty as
	// after a real reboot: from the first packet on, banned sources (a
	// permanent ban and a timed one) must never reach the container's
	// sshd, probed every 10 ms from before nspawn starts until well after
	// ssh.service is up. An address not banned reaches it, so the probes
	// could have seen a window.
	const permBanned, timedBanned, notBanned = "198.51.100.2", "198.51.100.4", "198.51.100.5"
	step("reboot: bans persisted", func(t *testing.T) {
		h.AddAttackerAddr(t, timedBanned+"/24")
		h.AddAttackerAddr(t, notBanned+"/24")
		c.Must(t, "jailkeeper", "ban", "sshd", permBanned, "--for", "permanent")
		c.Must(t, "jailkeeper", "ban", "sshd", timedBanned, "--for", "1h")
		for _, a := range []string{permBanned, timedBanned} {
			if _, ok := kernelBan(t, c, a); !ok {
				t.Fatalf("%s not in the kernel before the reboot", a)
			}
		}
		c.poweroff(t)
	})
	var (
		stopProbes chan struct{}
		probes     []<-chan *probe
		booted     time.Time
	)
	if ok {
		recreateSrvNetns(t, h, timedBanned+"/24", notBanned+"/24")
		stopProbes = make(chan struct{})
		for _, src := range []string{permBanned, timedBanned} {
			probes = append(probes, startProbe(h, src, "198.51.100.1:22", 10*time.Millisecond, stopProbes))
		}
		time.Sleep(50 * time.Millisecond) // probing before the boot starts
		booted = time.Now()
		c = bootContainer(t, root, h.Srv)
	}
	step("reboot: no banned connection reaches sshd", func(t *testing.T) {
		waitActive(t, c, 30*time.Second, unit, "ssh.service")
		time.Sleep(500 * time.Millisecond)
		close(stopProbes)
		for _, ch := range probes {
			p := <-ch
			t.Logf("probe %v", p)
			if len(p.reached) > 0 {
				t.Errorf("banned %s reached sshd %d times after the reboot, the first %v after systemd-nspawn started",
					p.src, len(p.reached), p.reached[0].Sub(booted).Round(time.Millisecond))
			}
			if p.tries < 50 || p.refused < p.tries*9/10 {
				t.Errorf("probe from %s: %v; want at least 50 attempts, nearly all refused", p.src, p)
			}
		}
		jk := monotonic(t, c, unit, "ActiveEnterTimestampMonotonic")
		ssh := monotonic(t, c, "ssh.service", "ExecMainStartTimestampMonotonic")
		t.Logf("after boot: jailkeeper ready at %.3f s, sshd started at %.3f s (monotonic)", float64(jk)/1e6, float64(ssh)/1e6)
		if jk > ssh {
			t.Errorf("jailkeeper ready at %d µs, after sshd started at %d µs", jk, ssh)
		}
		if b, err := bannerFrom(h, notBanned); err != nil || !strings.HasPrefix(b, "SSH-") {
			t.Errorf("from %s, not banned, after the reboot: banner %q, %v; want sshd's", notBanned, b, err)
		}
		for _, a := range []string{permBanned, timedBanned} {
			timeout, ok := kernelBan(t, c, a)
			if !ok {
				t.Errorf("after the reboot: %s not in the kernel", a)
			}
			if a == permBanned && timeout != 0 {
				t.Errorf("after the reboot: permanent ban of %s has timeout %d", a, timeout)
			}
		}
		// journalctl --grep exits 1 when nothing matches.
		if out, err := c.Run("journalctl", "--no-pager", "-o", "cat", "-b", "--grep", "ordering cycle"); err == nil {
			t.Errorf("the boot found an ordering cycle:\n%s", out)
		}
		// Started before dbus at boot, the daemon takes its name later.
		bus, _ := c.Run("journalctl", "--no-pager", "-o", "cat", "-b", "-u", unit, "--grep", "bus")
		t.Logf("the daemon's lines about the bus at boot:\n%s", bus)
		c.Must(t, "jailkeeper", "unban", permBanned)
		c.Must(t, "jailkeeper", "unban", timedBanned)
	})

	const kept = "203.0.113.8"
	step("stop and restart keep bans", func(t *testing.T) {
		c.Must(t, "jailkeeper", "ban", "sshd", kept, "--for", "1h")
		pid := c.Show(t, unit, "MainPID")
		c.Must(t, "systemctl", "stop", unit)
		// Stopped: the layout and the ban stay in the kernel.
		if first := firstRule(c.Must(t, "iptables", "-S", "INPUT")); first != "-A INPUT -j "+chain {
			t.Errorf("stopped: first INPUT rule %q, want the jump to %s to stay", first, chain)
		}
		if _, ok := kernelBan(t, c, kept); !ok {
			t.Errorf("stopped: %s no longer in the kernel", kept)
		}
		c.Must(t, "systemctl", "start", unit)
		s := time.Now()
		c.Must(t, "systemctl", "restart", unit)
		t.Logf("systemctl restart took %v", time.Since(s).Round(time.Millisecond))
		if now := c.Show(t, unit, "MainPID"); now == pid || now == "0" {
			t.Errorf("MainPID %s after stop/start/restart, was %s: not restarted", now, pid)
		}
		timeout, ok := kernelBan(t, c, kept)
		if !ok {
			t.Fatalf("after restart: %s not in the kernel", kept)
		}
		if timeout < 3500 || timeout > 3600 {
			t.Errorf("after restart: %s has timeout %d s, want its remaining hour", kept, timeout)
		}
		if st := jsonStatus(t, c); len(st.Jails) != 1 || !slices.Contains(st.Jails[0].Banned, kept) {
			t.Errorf("after restart: status %+v does not list %s", st.Jails, kept)
		}
	})

	step("reload", func(t *testing.T) {
		pid := c.Show(t, unit, "MainPID")
		cur := c.Cursor(t)
		c.Must(t, "systemctl", "reload", unit)
		c.WaitJournal(t, []string{"^configuration reloaded"}, "-u", unit, "--after-cursor="+cur)
		if now := c.Show(t, unit, "MainPID"); now != pid {
			t.Errorf("MainPID %s after reload, was %s", now, pid)
		}
	})

	step("reload refuses a broken drop-in", func(t *testing.T) {
		const file = "/etc/jailkeeper.d/20-broken.yaml"
		writeFile(t, root, file, "jails:\n  sshd:\n    maxrety: 3\n")
		pid := c.Show(t, unit, "MainPID")
		cur := c.Cursor(t)
		if out, err := c.Run("systemctl", "reload", unit); err == nil {
			t.Errorf("systemctl reload with %s succeeded:\n%s", file, out)
		}
		if got := strings.TrimSpace(c.Must(t, "systemctl", "is-active", unit)); got != "active" {
			t.Errorf("after the refused reload: is-active = %q", got)
		}
		if now := c.Show(t, unit, "MainPID"); now != pid {
			t.Errorf("MainPID %s after the refused reload, was %s", now, pid)
		}
		out := c.WaitJournal(t, []string{file + ": line 3"}, "-u", unit, "--after-cursor="+cur)
		if !hasLine(out, "maxrety") {
			t.Errorf("journal does not name the key:\n%s", out)
		}
		if out, err := c.Run("jailkeeper", "check"); err == nil || !strings.Contains(out, file+": line 3") {
			t.Errorf("jailkeeper check: %v, want an error naming %s line 3:\n%s", err, file, out)
		}
		if err := os.Remove(filepath.Join(root, file)); err != nil {
			t.Fatal(err)
		}
		c.Must(t, "systemctl", "reload", unit)
		if _, ok := kernelBan(t, c, kept); !ok {
			t.Errorf("after the reloads: %s not in the kernel", kept)
		}
	})

	step("start refuses a broken drop-in", func(t *testing.T) {
		const file = "/etc/jailkeeper.d/20-broken.yaml"
		writeFile(t, root, file, "jails:\n  sshd:\n    bantime: 3 fortnights\n")
		if out, err := c.Run("systemctl", "restart", unit); err == nil {
			t.Errorf("systemctl restart with %s succeeded:\n%s", file, out)
		}
		// Priority err, naming the file and line, from the daemon itself.
		// The daemon's last word goes to its stderr stream (a native entry
		// sent right before exit can lose _SYSTEMD_UNIT). journalctl 252
		// with --after-cursor missed that stream entry here although it is
		// in the journal, so match on this step's own text instead.
		c.WaitJournal(t, []string{file + `: line 3: bad duration "3 fortnights"`}, "-u", unit, "-p", "err", "SYSLOG_IDENTIFIER=jailkeeper")
		if st := c.Show(t, unit, "StatusText"); !strings.Contains(st, file) {
			t.Errorf("StatusText = %q, want the error naming %s", st, file)
		}
		// It exits before touching the firewall: the layout and bans stay.
		if first := firstRule(c.Must(t, "iptables", "-S", "INPUT")); first != "-A INPUT -j "+chain {
			t.Errorf("after the refused start: first INPUT rule %q", first)
		}
		if _, ok := kernelBan(t, c, kept); !ok {
			t.Errorf("after the refused start: %s not in the kernel", kept)
		}
		time.Sleep(3 * time.Second)
		t.Logf("NRestarts %s, state %s 3 s after the refused start (Restart=on-failure, RestartSec=2s)",
			c.Show(t, unit, "NRestarts"), c.Show(t, unit, "ActiveState"))
		if err := os.Remove(filepath.Join(root, file)); err != nil {
			t.Fatal(err)
		}
		c.Must(t, "systemctl", "reset-failed", unit)
		c.Must(t, "systemctl", "restart", unit)
		if st := jsonStatus(t, c); len(st.Jails) != 1 || !slices.Contains(st.Jails[0].Banned, kept) {
			t.Errorf("after the refused start and a good one: status %+v does not list %s", st.Jails, kept)
		}
	})

	step("bus activation", func(t *testing.T) {
		c.Must(t, "systemctl", "stop", unit)
		out := c.Must(t, "busctl", "call", "org.jailkeeper", "/org/jailkeeper", "org.jailkeeper.Manager1", "Status", "s", "")
		if !strings.HasPrefix(out, `a(suuuuas) 1 "sshd"`) {
			t.Errorf("Status while stopped: %q, want the sshd jail from a bus-activated daemon", out)
		}
		// The daemon answers once it holds its name, shortly before
		// READY=1 (it opens the journal in between).
		waitActive(t, c, 5*time.Second, unit)
	})

	step("watchdog", func(t *testing.T) {
		const sec = 3
		writeFile(t, root, "/etc/systemd/system/jailkeeper.service.d/test.conf", fmt.Sprintf("[Service]\nWatchdogSec=%ds\n", sec))
		c.Must(t, "systemctl", "daemon-reload")
		c.Must(t, "systemctl", "restart", unit)
		if got := c.Show(t, unit, "WatchdogUSec"); got != fmt.Sprintf("%ds", sec) {
			t.Fatalf("WatchdogUSec = %q after the drop-in", got)
		}
		pid := c.Show(t, unit, "MainPID")
		restarts := c.Show(t, unit, "NRestarts")
		// Healthy: pings keep it alive past WatchdogSec.
		time.Sleep(sec*time.Second + 1500*time.Millisecond)
		if now, n := c.Show(t, unit, "MainPID"), c.Show(t, unit, "NRestarts"); now != pid || n != restarts {
			t.Fatalf("a healthy daemon was restarted (MainPID %s→%s, NRestarts %s→%s): no WATCHDOG=1 within %ds", pid, now, restarts, n, sec)
		}
		cur := c.Cursor(t)
		c.Must(t, "systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", unit)
		stopped := time.Now()
		for {
			n := c.Show(t, unit, "NRestarts")
			now := c.Show(t, unit, "MainPID")
			state, _ := c.Run("systemctl", "is-active", unit) // exits 3 while not active
			active := strings.TrimSpace(state) == "active"
			if n != restarts && now != pid && now != "0" && active {
				break
			}
			if time.Since(stopped) > 20*time.Second {
				t.Fatalf("20s after SIGSTOP: NRestarts %s (was %s), MainPID %s (was %s), active %v", n, restarts, now, pid, active)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("stopped daemon replaced %v after SIGSTOP (WatchdogSec=%ds, RestartSec=2s)", time.Since(stopped).Round(time.Millisecond), sec)
		c.WaitJournal(t, []string{"Watchdog timeout", "Failed with result 'watchdog'"}, "-u", unit, "--after-cursor="+cur)
		if _, ok := kernelBan(t, c, kept); !ok {
			t.Errorf("after the watchdog restart: %s not in the kernel", kept)
		}
	})

	step("system bus after the daemon", func(t *testing.T) {
		// As at boot, where jailkeeper starts before dbus: started without
		// a bus it runs, and takes org.jailkeeper once the bus is up.
		c.Must(t, "systemctl", "stop", "dbus.socket", "dbus.service")
		cur := c.Cursor(t)
		c.Must(t, "systemctl", "restart", unit)
		c.WaitJournal(t, []string{"D-Bus unavailable, running without org.jailkeeper until the system bus is up"}, "-u", unit, "--after-cursor="+cur)
		if _, ok := kernelBan(t, c, kept); !ok {
			t.Errorf("started without a bus: %s not in the kernel", kept)
		}
		c.Must(t, "systemctl", "start", "dbus.socket", "dbus.service")
		c.WaitJournal(t, []string{"system bus up: took org.jailkeeper"}, "-u", unit, "--after-cursor="+cur)
		if st := jsonStatus(t, c); len(st.Jails) != 1 || !slices.Contains(st.Jails[0].Banned, kept) {
			t.Errorf("over the late bus: status %+v does not list %s", st.Jails, kept)
		}
	})

	step("security", func(t *testing.T) {
		out := c.Must(t, "systemd-analyze", "security", "--no-pager", unit)
		m := regexp.MustCompile(`Overall exposure level for jailkeeper\.service: ([0-9.]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		score, err := strconv.ParseFloat(m[1], 64)
		if err != nil || score > 3.0 {
			t.Errorf("systemd-analyze security %s: %s, want ≤ 3.0", unit, m[1])
		}
		t.Logf("systemd-analyze security: %s", m[1])
	})

	step("stop and remove, as docs/daemon.md says", func(t *testing.T) {
		// Stop for good: no D-Bus activation by anyone's `jailkeeper
		// status`, then the layout torn down: the banned source gets in.
		c.Must(t, "jailkeeper", "ban", "sshd", "198.51.100.2", "--for", "permanent")
		if err := atkDial(h); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("banned: dial = %v, want connection refused", err)
		}
		if out, err := c.Run("jailkeeper", "teardown"); err == nil || !strings.Contains(out, "jailkeeper is running") {
			t.Errorf("jailkeeper teardown while the daemon runs: %v, want a refusal:\n%s", err, out)
		}
		c.Must(t, "systemctl", "disable", unit)
		c.Must(t, "systemctl", "mask", "--now", unit)
		as := []string{"setpriv", "--reuid=" + testUser, "--regid=" + testUser, "--clear-groups"}
		out, err := c.Run(append(as, "jailkeeper", "status")...)
		t.Logf("jailkeeper status, masked: %v: %s", err, out)
		if err == nil || !strings.Contains(out, "jailkeeper is not running and the bus could not start it") {
			t.Errorf("jailkeeper status with the service masked: %v, want it to say jailkeeper is not running:\n%s", err, out)
		}
		if got, _ := c.Run("systemctl", "is-active", unit); strings.TrimSpace(got) == "active" {
			t.Fatalf("masked, a D-Bus call started jailkeeper again")
		}
		out = c.Must(t, "jailkeeper", "teardown")
		t.Logf("jailkeeper teardown:\n%s", out)
		noLayout(t, c)
		if b, err := h.AtkBanner("198.51.100.1:22", 2*time.Second); err != nil || !strings.HasPrefix(b, "SSH-") {
			t.Errorf("after teardown: banner %q, %v; want the banned source let in", b, err)
		}
		c.Must(t, "systemctl", "unmask", unit)
		c.Must(t, "systemctl", "enable", "--now", unit)
		if err := atkDial(h); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("started again: dial = %v, want the persisted ban back (connection refused)", err)
		}
	})

	step("make uninstall, make purge", func(t *testing.T) {
		// `sudo make uninstall` on the server itself, from a copy of the
		// source tree's Makefile next to the built binary.
		src := "/root/jailkeeper-src"
		for _, f := range []string{"Makefile", "bin/jailkeeper"} {
			b, err := os.ReadFile(filepath.Join(repo, f))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, root, filepath.Join(src, f), string(b))
		}
		out, err := c.Run("make", "-C", src, "uninstall")
		t.Logf("make uninstall:\n%s", out)
		if err != nil {
			t.Fatalf("make uninstall: %v", err)
		}
		// The layout it tore down held the permanent ban at least.
		if !strings.Contains(out, "iptables: no JAILKEEPER chain, INPUT jump or jk-* ipset left (bans it held: ") {
			t.Errorf("make uninstall did not report tearing down a layout with bans")
		}
		if got, _ := c.Run("systemctl", "is-active", unit); strings.TrimSpace(got) == "active" {
			t.Errorf("after make uninstall: %s still active", unit)
		}
		if st := c.Show(t, unit, "LoadState"); st != "not-found" {
			t.Errorf("after make uninstall: LoadState %q, want not-found", st)
		}
		for _, f := range []string{"/usr/local/bin/jailkeeper", "/usr/local/bin/jailkeeperd"} {
			if _, err := c.Run("test", "-e", f); err == nil {
				t.Errorf("after make uninstall: %s still there", f)
			}
		}
		noLayout(t, c)
		if b, err := h.AtkBanner("198.51.100.1:22", 2*time.Second); err != nil || !strings.HasPrefix(b, "SSH-") {
			t.Errorf("after make uninstall: banner %q, %v; want the banned source let in", b, err)
		}
		// Nothing answers for org.jailkeeper any more, and nothing rebuilt
		// the layout on the call.
		if out, err := c.Run("busctl", "call", "org.jailkeeper", "/org/jailkeeper", "org.jailkeeper.Manager1", "Status", "s", ""); err == nil {
			t.Errorf("after make uninstall: a call to org.jailkeeper succeeded: %s", out)
		}
		noLayout(t, c)
		for _, f := range []string{"/etc/jailkeeper.d/10-sshd.yaml", "/var/lib/jailkeeper"} {
			if _, err := c.Run("test", "-e", f); err != nil {
				t.Errorf("make uninstall removed %s; it keeps configuration and state", f)
			}
		}
		out, err = c.Run("make", "-C", src, "purge")
		if err != nil {
			t.Fatalf("make purge after make uninstall: %v\n%s", err, out)
		}
		for _, f := range []string{"/etc/jailkeeper.d", "/var/lib/jailkeeper"} {
			if _, err := c.Run("test", "-e", f); err == nil {
				t.Errorf("make purge left %s", f)
			}
		}
	})

	t.Logf("total %v", time.Since(begin).Round(time.Second))
}

// installPrereqs installs systemd-nspawn and debootstrap through the
// project's scripts/deps.sh when they are missing and the test runs as
// root (a fresh CI machine).
func installPrereqs(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	_, e1 := exec.LookPath("systemd-nspawn")
	_, e2 := exec.LookPath("debootstrap")
	if e1 == nil && e2 == nil {
		return
	}
	repo, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", filepath.Join(repo, "scripts/deps.sh"), "test").CombinedOutput(); err != nil {
		t.Logf("scripts/deps.sh test: %v\n%s", err, out)
	}
}

// sudoPath is the PATH sudo gives commands on Debian (secure_path in
// /etc/sudoers): `sudo make install` runs with it.
const sudoPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// makeInstall runs `make install DESTDIR=root` from the repository root
// the way `sudo make install` runs it: sudo's PATH, no GO= override. If
// that cannot build (go outside sudo's PATH, e.g. in /usr/local/go/bin),
// the test fails but retries with GO= set so that the service checks
// still run.
func makeInstall(t *testing.T, repo, root string) {
	t.Helper()
	home, _ := os.UserHomeDir()
	env := []string{"PATH=" + sudoPath, "HOME=" + home, "TERM=dumb", "LANG=C.UTF-8"}
	start := time.Now()
	cmd := exec.Command("make", "install", "DESTDIR="+root)
	cmd.Dir, cmd.Env = repo, env
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Logf("make install (with sudo's PATH) took %v", time.Since(start).Round(time.Millisecond))
		return
	}
	t.Errorf("`sudo make install` as the README says: make install DESTDIR=%s with PATH=%s: %v\n%s", root, sudoPath, err, tail(string(out), 10))
	goBin := "/usr/local/go/bin/go"
	if p, err := exec.LookPath("go"); err == nil {
		goBin = p
	}
	cmd = exec.Command("make", "install", "DESTDIR="+root, "GO="+goBin)
	cmd.Dir, cmd.Env = repo, append(env[1:], "PATH="+filepath.Dir(goBin)+":"+sudoPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install DESTDIR=%s GO=%s: %v\n%s", root, goBin, err, out)
	}
}

// status is `jailkeeper status --json`.
type status struct {
	Jails []struct {
		Name            string   `json:"name"`
		CurrentlyBanned int      `json:"currently_banned"`
		Banned          []string `json:"banned"`
	} `json:"jails"`
}

func jsonStatus(t *testing.T, c *container) status {
	t.Helper()
	out := c.Must(t, "jailkeeper", "status", "--json")
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("jailkeeper status --json: %v\n%s", err, out)
	}
	return st
}

// firstRule returns the first -A line of `iptables -S CHAIN` output.
func firstRule(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "-A ") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// kernelBan looks addr up in every ipset of the container's namespace and
// returns its remaining timeout in seconds (0 for none).
func kernelBan(t *testing.T, c *container, addr string) (int, bool) {
	t.Helper()
	out := c.Must(t, "ipset", "list")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || (f[0] != addr && f[0] != addr+"/32") {
			continue
		}
		timeout := 0
		if len(f) >= 3 && f[1] == "timeout" {
			timeout, _ = strconv.Atoi(f[2])
		}
		return timeout, true
	}
	return 0, false
}

// atkDial connects from the attacker to the server's port 22.
func atkDial(h *testbed.Hosts) error {
	conn, err := h.AtkDial("198.51.100.1:22", 2*time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

// inNetns runs f on an OS thread switched into the named network
// namespace; sockets f opens belong to it.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is never unlocked: it exits with this goroutine
		// instead of serving others from the wrong namespace.
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("opening netns %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("entering netns %s: %w", name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// noLayout fails the test when the container's kernel holds any of
// jailkeeper's firewall layout: a jump or chain in iptables or ip6tables,
// a jk-* ipset, or table inet jailkeeper.
func noLayout(t *testing.T, c *container) {
	t.Helper()
	for _, tool := range []string{"iptables", "ip6tables"} {
		if out := c.Must(t, tool, "-S"); strings.Contains(out, chain) {
			t.Errorf("%s -S still shows %s:\n%s", tool, chain, out)
		}
	}
	for _, l := range strings.Split(c.Must(t, "ipset", "list", "-n"), "\n") {
		if strings.HasPrefix(l, "jk-") {
			t.Errorf("ipset %s still there", l)
		}
	}
	if out := c.Must(t, "nft", "list", "tables"); strings.Contains(out, "jailkeeper") {
		t.Errorf("nft list tables still shows jailkeeper:\n%s", out)
	}
}
