package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// FTPPackageRoot is where scripts/deps.sh unpacks the Debian packages of
// the FTP servers that conflict with the installed one (Debian's FTP
// servers all provide and conflict with ftp-server): proftpd-core and
// pure-ftpd. JAILKEEPER_FTP_ROOT overrides it.
const FTPPackageRoot = "/var/cache/jailkeeper-test/ftp"

// FTPServer is a real FTP daemon from Debian's packages in the server
// namespace, inside the cgroup of the unit its Debian package uses, logging
// through syslog(3) to the private journald's dev-log socket (a /dev/log
// of its own, in a mount namespace of its own).
type FTPServer struct {
	Kind string // "vsftpd", "proftpd" or "pure-ftpd"
	Unit string // vsftpd.service, proftpd.service, pure-ftpd.service
	Dir  string // configuration, private /dev, log files the daemon writes
	Proc *UnitProcess

	pidFile string // of a daemon that forks away from Proc (proftpd)
}

// stopForked stops a daemon that forked away from Proc, and the
// processes it started for connections, by the PID in its pid file.
func (s *FTPServer) stopForked() {
	b, err := os.ReadFile(s.pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	var kids []int
	for todo := childPIDs(pid); len(todo) > 0; {
		k := todo[0]
		todo = append(todo[1:], childPIDs(k)...)
		kids = append(kids, k)
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGTERM)
	}
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// FTPOptions says how to run an FTP server.
type FTPOptions struct {
	// OwnLogToJournal applies the change docs/services.md gives so that
	// the daemon's own failure lines reach the journal (vsftpd:
	// syslog_enable=YES; proftpd: no SystemLog, UseReverseDNS off).
	// Without it the daemon logs as its Debian package does by default.
	OwnLogToJournal bool
}

// FTPUnit returns the unit name Debian's package of kind uses.
func FTPUnit(kind string) string { return kind + ".service" }

// ftpBinary finds the daemon: installed, or unpacked by scripts/deps.sh.
func ftpBinary(kind string) (bin, pkgRoot string, err error) {
	if p := "/usr/sbin/" + kind; isExecutable(p) {
		return p, "/", nil
	}
	root := os.Getenv("JAILKEEPER_FTP_ROOT")
	if root == "" {
		root = FTPPackageRoot
	}
	if p := filepath.Join(root, "usr/sbin", kind); isExecutable(p) {
		return p, root, nil
	}
	return "", "", fmt.Errorf("%s is neither installed nor unpacked under %s (scripts/deps.sh test)", kind, root)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// RequireFTP is Require for what StartFTP needs for kind: it fails (CI)
// or skips when the daemon is neither installed nor unpacked.
func RequireFTP(t testing.TB, kind string) {
	t.Helper()
	Require(t, "curl", "unshare", "nsenter", "mount", "mknod", "useradd", "userdel", "chpasswd")
	if _, _, err := ftpBinary(kind); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err.Error() + " (CI is set: failing instead of skipping)")
		}
		t.Skip(err.Error())
	}
}

// StartFTP starts kind in h's server namespace, listening on port 21 of
// every address, logging into the private journald jd. It returns once
// both server addresses accept connections; the daemon is stopped at
// cleanup.
func StartFTP(t testing.TB, h *Hosts, jd *Journald, kind string, o FTPOptions) *FTPServer {
	t.Helper()
	RequireFTP(t, kind)
	bin, root, err := ftpBinary(kind)
	if err != nil {
		t.Fatal(err)
	}
	s := &FTPServer{Kind: kind, Unit: FTPUnit(kind), Dir: t.TempDir()}
	var argv []string
	var setup []string
	switch kind {
	case "vsftpd":
		// Debian's /etc/vsftpd.conf, its log files moved into Dir.
		base, err := os.ReadFile("/etc/vsftpd.conf")
		if err != nil {
			t.Fatalf("vsftpd: %v", err)
		}
		cfg := string(base) + "\nvsftpd_log_file=" + filepath.Join(s.Dir, "vsftpd.log") +
			"\nxferlog_file=" + filepath.Join(s.Dir, "xferlog") + "\n"
		if o.OwnLogToJournal {
			cfg += "syslog_enable=YES\n"
		}
		s.writeFile(t, "vsftpd.conf", cfg)
		// The unit's ExecStartPre.
		setup = append(setup, "mkdir -p /run/vsftpd/empty")
		argv = []string{bin, filepath.Join(s.Dir, "vsftpd.conf")}
	case "proftpd":
		s.writeFile(t, "proftpd.conf", proftpdConf(s.Dir, o.OwnLogToJournal))
		setup = append(setup, "mkdir -p -m 0755 /run/proftpd")
		// It forks as under Debian's unit (Type=forking): in the
		// foreground (-n) it would log to stderr, not to syslog.
		argv = []string{bin, "-c", filepath.Join(s.Dir, "proftpd.conf")}
		s.pidFile = filepath.Join(jd.Root(), "run/proftpd/proftpd.pid")
	case "pure-ftpd":
		// What Debian's pure-ftpd-wrapper makes of the package's
		// /etc/pure-ftpd/conf (PAMAuthentication, NoAnonymous, MinUID
		// 1000), plus DontResolve (-H) as docs/services.md asks;
		// foreground instead of -B.
		argv = []string{bin, "-l", "pam", "-E", "-u", "1000", "-H"}
	default:
		t.Fatalf("unknown FTP server %q", kind)
	}
	// The package's PAM service file, where the package is unpacked only.
	if root != "/" {
		pamFile := filepath.Join(root, "etc/pam.d", kind)
		if _, err := os.Stat(pamFile); err == nil {
			pamDir := filepath.Join(s.Dir, "pam.d")
			setup = append(setup, fmt.Sprintf("cp -a /etc/pam.d %s && cp %s %s/ && mount --bind %s /etc/pam.d",
				pamDir, pamFile, pamDir, pamDir))
		}
	}
	script := strings.Join(append([]string{"set -e", privateDevLog(filepath.Join(s.Dir, "dev"))}, setup...), "\n") +
		"\nexec " + shellJoin(argv)
	s.Proc = StartInUnit(t, s.Unit, shellJoin(h.SrvArgv(jd, "unshare", "-m", "--propagation", "private", "sh", "-c", script)))
	if s.pidFile != "" {
		t.Cleanup(s.stopForked) // runs before the UnitProcess cleanup
	}
	for _, a := range []string{SrvAddr4, SrvAddr6} {
		if err := h.waitFTP(a, 10*time.Second, s); err != nil {
			t.Fatalf("%s: %v; its output:\n%s", kind, err, s.Proc.Output())
		}
	}
	return s
}

func (s *FTPServer) writeFile(t testing.TB, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.Dir, name), []byte(body), 0o600); err != nil {
		t.Fatalf("writing %s: %v", name, err)
	}
}

// privateDevLog returns shell commands that give the calling mount
// namespace a /dev of its own (a tmpfs at dir with the usual character
// devices) whose log is the journald's dev-log socket, as a systemd host
// has it. The host's /dev is left alone.
func privateDevLog(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mkdir -p %[1]s && mount -t tmpfs -o mode=0755 jk-dev %[1]s\n", dir)
	for _, d := range []struct {
		name       string
		maj, minor int
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		fmt.Fprintf(&b, "mknod -m 0666 %s/%s c %d %d\n", dir, d.name, d.maj, d.minor)
	}
	fmt.Fprintf(&b, "ln -s /run/systemd/journal/dev-log %[1]s/log && ln -s /proc/self/fd %[1]s/fd && mkdir %[1]s/pts %[1]s/shm\n", dir)
	fmt.Fprintf(&b, "mount --bind %s /dev", dir)
	return b.String()
}

// proftpdConf is Debian's /etc/proftpd/proftpd.conf template, reduced to
// what the built-in modules read, with its files moved into dir and the
// package's system user replaced by nobody. With ownLog, SystemLog is
// left out (proftpd then logs through syslog) and UseReverseDNS is off, as
// docs/services.md asks.
func proftpdConf(dir string, ownLog bool) string {
	lines := []string{
		"UseIPv6 on",
		`ServerName "Debian"`,
		"ServerType standalone",
		// Spares a lookup of this machine's host name.
		"DefaultAddress " + SrvAddr4,
		"DeferWelcome off",
		"DefaultServer on",
		"ShowSymlinks on",
		"TimeoutNoTransfer 600",
		"TimeoutStalled 600",
		"TimeoutIdle 1200",
		"Port 21",
		"MaxInstances 30",
		"User nobody",
		"Group nogroup",
		"Umask 022 022",
		"AllowOverwrite on",
		"PidFile /run/proftpd/proftpd.pid",
		"ScoreboardFile /run/proftpd/proftpd.scoreboard",
		"WtmpLog off",
		"TransferLog " + filepath.Join(dir, "xferlog"),
		"<IfModule mod_delay.c>",
		"DelayEngine on",
		"DelayTable /run/proftpd/proftpd.delay",
		"</IfModule>",
	}
	if ownLog {
		lines = append(lines, "UseReverseDNS off")
	} else {
		lines = append(lines, "SystemLog "+filepath.Join(dir, "proftpd.log"))
	}
	return strings.Join(lines, "\n") + "\n"
}

// waitFTP waits until a TCP connection from the attacker namespace to
// addr:21 gets an FTP greeting ("220").
func (h *Hosts) waitFTP(addr string, timeout time.Duration, s *FTPServer) error {
	deadline := time.Now().Add(timeout)
	hp := net.JoinHostPort(addr, "21")
	for {
		banner, err := h.AtkBanner(hp, time.Second)
		if err == nil && strings.HasPrefix(banner, "220") {
			return nil
		}
		select {
		case <-s.Proc.Done():
			if s.pidFile == "" {
				return errors.New("the daemon exited")
			}
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not greeting after %v: %v %q", hp, timeout, err, banner)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FTPAttempt logs in with curl from the attacker namespace to the FTP
// server at addr as user with password, from source address src (""
// for the default one) and lists the top directory. The outcome is Denied
// for a 530 answer, Refused for a TCP reset, Timeout, or "OK" for a
// listing.
func (h *Hosts) FTPAttempt(addr, src, user, password string) Attempt {
	host := addr
	if strings.Contains(addr, ":") {
		host = "[" + addr + "]"
	}
	args := []string{"netns", "exec", h.Atk, "curl", "-sS", "--max-time", "15",
		"-u", user + ":" + password}
	if src != "" {
		args = append(args, "--interface", src)
	}
	args = append(args, "ftp://"+host+"/")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	a := Attempt{Output: strings.TrimSpace(string(out)), Took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
		a.Outcome = FTPLoggedIn
	case ctx.Err() != nil:
		a.Outcome = Timeout
	case errors.As(err, &ee) && ee.ExitCode() == 67: // CURLE_LOGIN_DENIED
		a.Outcome = Denied
	case errors.As(err, &ee) && ee.ExitCode() == 7: // CURLE_COULDNT_CONNECT
		a.Outcome = Refused
	case errors.As(err, &ee) && ee.ExitCode() == 28: // CURLE_OPERATION_TIMEDOUT
		a.Outcome = Timeout
	default:
		a.Outcome = Other
	}
	return a
}

// FTPLoggedIn is the outcome of an FTP attempt that logged in and listed.
const FTPLoggedIn Outcome = "Logged in"

// FTPUser creates a local user with password (a home directory of its
// own, /bin/sh as shell so PAM's pam_shells accepts it, UID >= 1000 as
// pure-ftpd's MinUID wants) and removes it at cleanup. It returns the
// user's name.
func FTPUser(t testing.TB, password string) string {
	t.Helper()
	Require(t, "useradd", "userdel", "chpasswd")
	name := "jkftp" + Suffix()
	home, err := os.MkdirTemp("", "jkftp-home-")
	if err != nil {
		t.Fatalf("creating home: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(home) })
	Run(t, "useradd", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", name)
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v: %s", err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	var uid, gid int
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatalf("chown %s: %v", home, err)
	}
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatalf("chmod %s: %v", home, err)
	}
	return name
}

// WriteOutsideUnits writes msgs to the private journal jd with
// SYSLOG_IDENTIFIER ident as the local user name, from a process in the
// root cgroup, so that journald gives the entries no _SYSTEMD_UNIT: what
// any local user can do with `logger -t ident` (here systemd-cat, to the
// journal's stream socket, whose peer credentials give _UID).
func (j *Journald) WriteOutsideUnits(t testing.TB, name, ident string, msgs []string) {
	t.Helper()
	var enter strings.Builder
	for _, root := range cgroupRoots {
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err == nil {
			fmt.Fprintf(&enter, "echo $$ > %s/cgroup.procs || exit 97\n", root)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	count := func() int {
		out, _ := j.Command("journalctl", "--no-pager", "-o", "cat", "SYSLOG_IDENTIFIER="+ident, "_UID="+u.Uid).Output()
		return strings.Count(string(out), "\n")
	}
	before := count()
	cmd := j.Command("sh", "-c", enter.String()+shellJoin([]string{"setpriv", "--reuid=" + name, "--regid=" + name,
		"--clear-groups", "systemd-cat", "-t", ident}))
	cmd.Stdin = strings.NewReader(strings.Join(msgs, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("writing as %s with identifier %s: %v\n%s", name, ident, err, out)
	}
	// systemd-cat has written and exited, but journald reads a stream
	// socket when it gets to it: `journalctl --sync` does not wait for
	// that (a CI run queried too early and found none of the entries).
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := j.Sync(); err != nil {
			t.Fatal(err)
		}
		n := count() - before
		if n >= len(msgs) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("wrote %d entries as %s with identifier %s; after 10 s the journal has %d of them", len(msgs), name, ident, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
