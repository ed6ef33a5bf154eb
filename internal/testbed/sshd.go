package testbed

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server addresses of the bed (see Hosts).
const (
	SrvAddr4 = "198.51.100.1"
	SrvAddr6 = "2001:db8::1"
	AtkAddr4 = "198.51.100.2"
	AtkAddr6 = "2001:db8::2"
)

// SSHD is a real OpenSSH server in the server namespace whose log lines
// reach the journal with _SYSTEMD_UNIT=sshd.service.
type SSHD struct {
	Dir     string // host key, sshd_config, pid file
	Config  string // path of sshd_config
	PidFile string
	Proc    *UnitProcess // `ip netns exec … sshd -D -e | systemd-cat -t sshd`
}

// StartSSHD starts sshd in h's server namespace, listening on
// 198.51.100.1:22 and [2001:db8::1]:22, password authentication on, PAM
// off, inside the sshd.service cgroup and piped through `systemd-cat -t
// sshd` (the writer journald sees is systemd-cat, so both run in the
// cgroup). It returns once both addresses accept connections; sshd is
// stopped by PID at cleanup.
func StartSSHD(t testing.TB, h *Hosts) *SSHD {
	t.Helper()
	EnsureJournald(t)
	return StartSSHDIn(t, h, nil)
}

// StartSSHDIn is StartSSHD logging to the private journald jd (nil: the
// system journal). With jd, sshd and systemd-cat run in jd's mount
// namespace, where /run/systemd/journal is jd's.
func StartSSHDIn(t testing.TB, h *Hosts, jd *Journald) *SSHD {
	t.Helper()
	Require(t, "sshd", "ssh-keygen", "systemd-cat", "ip", "nsenter")
	dir := t.TempDir()
	s := &SSHD{Dir: dir, Config: filepath.Join(dir, "sshd_config"), PidFile: filepath.Join(dir, "sshd.pid")}
	Run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "hostkey"))
	cfg := strings.Join([]string{
		"ListenAddress " + SrvAddr4,
		"ListenAddress " + SrvAddr6,
		"Port 22",
		"HostKey " + filepath.Join(dir, "hostkey"),
		"PidFile " + s.PidFile,
		"PasswordAuthentication yes",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"LogLevel INFO",
		// A connection's process outlives the listener (and the test's
		// namespaces): keep the time it may wait for a login short.
		"LoginGraceTime 15",
		"",
	}, "\n")
	if err := os.WriteFile(s.Config, []byte(cfg), 0o600); err != nil {
		t.Fatalf("writing sshd_config: %v", err)
	}
	// sshd needs its privilege separation directory /run/sshd.
	inner := fmt.Sprintf("mkdir -p /run/sshd && { /usr/sbin/sshd -D -e -f %s 2>&1 | systemd-cat -t sshd; }", s.Config)
	s.Proc = StartInUnit(t, "sshd.service", shellJoin(h.SrvArgv(jd, "sh", "-c", inner)))
	t.Cleanup(s.stop) // runs before the UnitProcess cleanup
	for _, a := range []string{SrvAddr4, SrvAddr6} {
		if err := h.waitListening(a, 22, 10*time.Second); err != nil {
			t.Fatalf("sshd: %v; its output:\n%s", err, s.Proc.Output())
		}
	}
	return s
}

// stop sends SIGTERM to sshd itself (by the PID in its pid file), so that
// systemd-cat sees the end of its input and flushes, and to the processes
// it forked for connections still open (they would otherwise wait out
// LoginGraceTime after the test).
func (s *SSHD) stop() {
	b, err := os.ReadFile(s.PidFile)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
		// Per connection, sshd forks a monitor, which forks the
		// unprivileged [net] process: take the whole tree.
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
	}
	select {
	case <-s.Proc.Done():
	case <-time.After(3 * time.Second):
	}
}

// waitListening waits until a TCP connection from the attacker namespace
// to addr:port succeeds and the server sends its SSH banner.
func (h *Hosts) waitListening(addr string, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hp := net.JoinHostPort(addr, strconv.Itoa(port))
	for {
		banner, err := h.AtkBanner(hp, time.Second)
		if err == nil && strings.HasPrefix(banner, "SSH-") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %v %q", hp, timeout, err, banner)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// childPIDs lists the processes whose parent is pid, from /proc.
func childPIDs(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range ents {
		k, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		rest := string(st)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) >= 2 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, k)
		}
	}
	return kids
}
