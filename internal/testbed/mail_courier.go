package testbed

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CourierIMAPDir is where scripts/deps.sh unpacks Debian's courier-imap
// (`apt-get download` + `dpkg-deb -x`): the package conflicts with
// dovecot-imapd (both provide imap-server), so it is not installed. Its
// dependencies (courier-base, courier-authdaemon, …) are.
const CourierIMAPDir = "/var/lib/jailkeeper-test/courier-imap"

// CourierIMAP is Debian's courier-imap with its authdaemon in the server
// namespace and a private journald's mount namespace: authdaemond started
// as its unit starts it (`authdaemond start`) in the cgroup of
// courier-authdaemon.service, and imapd as the package's start script
// runs it (its settings from the package's /etc/courier/imapd sourced,
// couriertcpd under courierlogger, which sends the lines to syslog), in
// the foreground, in the cgroup of courier-imap.service. authpam checks
// the password (PAM service imap).
type CourierIMAP struct {
	hosts *Hosts
	jd    *Journald
	Proc  *UnitProcess // courierlogger … couriertcpd … imaplogin
}

// StartCourierIMAP starts authdaemond and imapd and returns once IMAP
// answers on 198.51.100.1. authdaemond is stopped at cleanup with its own
// `stop` command, imapd with its process group, and what they leave in
// their cgroups by PID.
func StartCourierIMAP(t testing.TB, h *Hosts, jd *Journald) *CourierIMAP {
	t.Helper()
	Require(t, "/usr/sbin/authdaemond", "/usr/sbin/courierlogger", "/usr/sbin/couriertcpd", CourierIMAPDir+"/usr/lib/courier/courier/imaplogin")
	EnsureDevLog(t)
	c := &CourierIMAP{hosts: h, jd: jd}
	// /run is the private journald's tmpfs: make what the packages'
	// tmpfiles make on a host.
	auth := `mkdir -p /run/courier/authdaemon && chown root:courier /run/courier && chmod 775 /run/courier &&
chown courier:courier /run/courier/authdaemon && chmod 750 /run/courier/authdaemon &&
exec /usr/sbin/authdaemond start </dev/null >/dev/null 2>&1`
	p := StartInUnit(t, "courier-authdaemon.service", shellJoin(h.SrvArgv(jd, "sh", "-c", auth)))
	t.Cleanup(func() { c.stop("courier-authdaemon.service", "/usr/sbin/authdaemond", "stop") })
	waitExit(t, p, "authdaemond start")
	// The package's start script, in the foreground and without STARTTLS
	// (its certificate is made by the package's postinst, not run here).
	imapd := `set -a; . ` + CourierIMAPDir + `/etc/courier/imapd-ssl; . ` + CourierIMAPDir + `/etc/courier/imapd
IMAP_STARTTLS=NO; IMAPDSTARTTLS=NO
exec /usr/sbin/courierlogger $LOGGEROPTS /usr/sbin/couriertcpd -address=$ADDRESS -maxprocs=$MAXDAEMONS -maxperip=$MAXPERIP $TCPDOPTS \
	$PORT ` + CourierIMAPDir + `/usr/lib/courier/courier/imaplogin ` + CourierIMAPDir + `/usr/bin/imapd $MAILDIRPATH`
	c.Proc = StartInUnit(t, "courier-imap.service", shellJoin(h.SrvArgv(jd, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "sh", "-c", imapd)))
	t.Cleanup(func() {
		c.Proc.Stop(5 * time.Second)
		c.stop("courier-imap.service")
	})
	if err := h.waitMailBanner(SrvAddr4, 143, 15*time.Second); err != nil {
		t.Fatalf("courier imapd: %v; its output:\n%s", err, c.Proc.Output())
	}
	return c
}

// stop runs the package's stop command (if any) in the server namespace
// and the journald's mount namespace, then ends what is left in unit's
// cgroup, by PID, and waits up to 5 s for it to empty. No other test uses
// courier's units; what is left is started by this test's daemons (imapd
// starts gamin's gam_server for the logged-in user, which outlives the
// session by half a minute).
func (c *CourierIMAP) stop(unit string, argv ...string) {
	if len(argv) > 0 {
		a := c.hosts.SrvArgv(c.jd, argv...)
		_ = exec.Command(a[0], a[1:]...).Run()
	}
	dirs, _ := UnitCgroupDirs(unit)
	if len(dirs) == 0 {
		return
	}
	for i := 0; i < 100; i++ {
		b, err := os.ReadFile(filepath.Join(dirs[0], "cgroup.procs"))
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return
		}
		if i%20 == 10 { // after 0.5 s, 1.5 s, …: what did not stop
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGTERM)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitExit waits for a forking start command to return, and fails the
// test if it fails.
func waitExit(t testing.TB, p *UnitProcess, what string) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not return within 15s: %s", what, p.Output())
	}
	if p.waited != nil {
		t.Fatalf("%s: %v: %s", what, p.waited, p.Output())
	}
}
