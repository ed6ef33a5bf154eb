package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// StartDebianSSHD starts sshd in h's server namespace the way Debian's
// openssh-server package runs it: inside the cgroup of ssh.service, with
// `sshd -D` logging through syslog(3) to /dev/log (journald's dev-log
// socket, of jd when jd is not nil), and with the package's
// authentication defaults (UsePAM yes, password authentication through
// PAM, keyboard-interactive off). Every process sshd forks per connection
// sends its own lines, as on a real host. It listens on 198.51.100.1:22
// and [2001:db8::1]:22 and is stopped by PID at cleanup.
func StartDebianSSHD(t testing.TB, h *Hosts, jd *Journald) *SSHD {
	t.Helper()
	Require(t, "sshd", "ssh-keygen", "ip", "nsenter")
	if _, err := os.Stat("/etc/pam.d/sshd"); err != nil {
		t.Fatalf("sshd's PAM configuration (openssh-server): %v", err)
	}
	dir := t.TempDir()
	s := &SSHD{Dir: dir, Config: filepath.Join(dir, "sshd_config"), PidFile: filepath.Join(dir, "sshd.pid")}
	Run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "hostkey"))
	cfg := strings.Join([]string{
		"ListenAddress " + SrvAddr4,
		"ListenAddress " + SrvAddr6,
		"Port 22",
		"HostKey " + filepath.Join(dir, "hostkey"),
		"PidFile " + s.PidFile,
		// Debian's /etc/ssh/sshd_config sets these two; the rest are
		// OpenSSH's defaults (PasswordAuthentication yes, SyslogFacility
		// AUTH, LogLevel INFO).
		"KbdInteractiveAuthentication no",
		"UsePAM yes",
		"LoginGraceTime 15",
		"",
	}, "\n")
	if err := os.WriteFile(s.Config, []byte(cfg), 0o600); err != nil {
		t.Fatalf("writing sshd_config: %v", err)
	}
	inner := fmt.Sprintf("mkdir -p /run/sshd && exec /usr/sbin/sshd -D -f %s", s.Config)
	s.Proc = StartInUnit(t, "ssh.service", shellJoin(h.SrvArgv(jd, "sh", "-c", inner)))
	t.Cleanup(s.stop)
	for _, a := range []string{SrvAddr4, SrvAddr6} {
		if err := h.waitListening(a, 22, 10*time.Second); err != nil {
			t.Fatalf("sshd: %v; its output:\n%s", err, s.Proc.Output())
		}
	}
	return s
}

// EnsurePasswordUser makes sure local user name exists with password pw
// and a shell that ends any session at once (/bin/false): sshd accepts its
// password and nothing else happens. A user created here is removed at
// cleanup.
func EnsurePasswordUser(t testing.TB, name, pw string) {
	t.Helper()
	Require(t, "useradd", "userdel", "chpasswd")
	if exec.Command("id", name).Run() != nil {
		Run(t, "useradd", "--no-create-home", "--shell", "/bin/false", name)
		t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	}
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd %s: %v: %s", name, err, out)
	}
}

// SSHPasswordAttempt logs in as user with password pw from the attacker
// namespace (bound to src when not empty) with sshpass, one password
// prompt per connection: Denied for a wrong password, Refused once the
// source is banned, and Other (exit status 0 or 1 without "Permission
// denied") when the password was accepted.
func (h *Hosts) SSHPasswordAttempt(addr, src, user, pw string) Attempt {
	args := []string{"netns", "exec", h.Atk, "sshpass", "-p", pw, "ssh",
		"-o", "PubkeyAuthentication=no",
		"-o", "PreferredAuthentications=password",
		"-o", "NumberOfPasswordPrompts=1",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=3",
		"-o", "LogLevel=ERROR",
	}
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() && !a.Is4In6() {
		args = append(args, "-6")
	}
	if src != "" {
		args = append(args, "-b", src)
	}
	args = append(args, user+"@"+addr, "true")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	out, _ := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	return Attempt{Outcome: classify(s, ctx.Err() != nil), Output: s, Took: time.Since(start)}
}
