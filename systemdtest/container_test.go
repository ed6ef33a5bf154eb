package systemdtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// containerEnv is the environment of every command run in the container:
// nothing of the test's own (no DBUS_SYSTEM_BUS_ADDRESS of a private bus,
// no pager, no colours).
var containerEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LANG=C.UTF-8", "TERM=dumb", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "SYSTEMD_LOG_COLOR=0",
}

// container is a Debian root booted by systemd-nspawn with systemd as its
// PID 1, in a network namespace of the test.
type container struct {
	Root string // its root directory on the host
	PID  int    // host PID of its systemd

	nspawn *exec.Cmd
	out    *syncBuffer // nspawn's console
	done   chan struct{}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bootContainer boots root with systemd-nspawn in the network namespace
// netnsName and waits until `systemctl is-system-running` says running
// (or degraded, with the failed units logged). It powers the container
// off at cleanup.
//
// nspawn grants CAP_NET_ADMIN only with a private network it sets up
// itself; with --network-namespace-path the container must be given it
// explicitly, or every ipset/iptables call inside fails with EPERM.
func bootContainer(t *testing.T, root, netnsName string) *container {
	t.Helper()
	c := &container{Root: root, out: &syncBuffer{}, done: make(chan struct{})}
	c.nspawn = exec.Command("systemd-nspawn", "-D", root, "--machine=jk-"+testbed.Suffix(),
		"--register=no", "--keep-unit", "--capability=CAP_NET_ADMIN",
		"--network-namespace-path=/run/netns/"+netnsName, "-b")
	c.nspawn.Stdout, c.nspawn.Stderr = c.out, c.out
	c.nspawn.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := time.Now()
	if err := c.nspawn.Start(); err != nil {
		t.Fatalf("starting systemd-nspawn: %v", err)
	}
	go func() {
		_ = c.nspawn.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.poweroff(t) })

	deadline := time.Now().Add(30 * time.Second)
	for c.PID == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no systemd under systemd-nspawn (PID %d) after 30s:\n%s", c.nspawn.Process.Pid, tail(c.out.String(), 30))
		}
		select {
		case <-c.done:
			t.Fatalf("systemd-nspawn exited: %v\n%s", c.nspawn.ProcessState, tail(c.out.String(), 30))
		case <-time.After(50 * time.Millisecond):
		}
		c.PID = initOf(c.nspawn.Process.Pid)
	}
	var state string
	for {
		out, _ := c.Run("systemctl", "is-system-running")
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container not up after 30s: is-system-running = %q\n%s", state, tail(c.out.String(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("container: systemd (host PID %d) %s %v after systemd-nspawn started", c.PID, state, time.Since(start).Round(time.Millisecond))
	if state == "degraded" {
		out, _ := c.Run("systemctl", "--failed", "--no-pager")
		t.Logf("failed units in the container:\n%s", out)
	}
	return c
}

// initOf returns the PID of the systemd that nspawnPID started (its child
// whose comm is "systemd"), or 0.
func initOf(nspawnPID int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", nspawnPID))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(s)
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(comm)) == "systemd" {
				return pid
			}
		}
	}
	return 0
}

// poweroff stops the container: `systemctl poweroff` inside, then SIGTERM
// to the nspawn this test started, then SIGKILL to it and its systemd.
func (c *container) poweroff(t *testing.T) {
	if c.PID != 0 {
		_, _ = c.Run("systemctl", "--no-block", "poweroff")
	}
	select {
	case <-c.done:
		return
	case <-time.After(20 * time.Second):
	}
	t.Logf("container did not power off in 20s; sending SIGTERM to systemd-nspawn (PID %d)", c.nspawn.Process.Pid)
	_ = c.nspawn.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(10 * time.Second):
	}
	if c.PID != 0 {
		_ = syscall.Kill(c.PID, syscall.SIGKILL)
	}
	_ = c.nspawn.Process.Kill()
	<-c.done
}

// Run runs argv inside the container (all its namespaces, its root) and
// returns the combined output. Each command gets at most a minute.
func (c *container) Run(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"-t", strconv.Itoa(c.PID), "-a", "-r", "-w"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = containerEnv
	// nsenter forks into the PID namespace: killing it at the timeout
	// leaves the command holding the output pipe, so stop waiting for it.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in the container: %s: %w", strings.Join(argv, " "), err)
	}
	return string(out), nil
}

// Must is Run that fails the test on error.
func (c *container) Must(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := c.Run(argv...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// Show returns the unit's property as `systemctl show -P` prints it.
func (c *container) Show(t *testing.T, unit, prop string) string {
	t.Helper()
	return strings.TrimSpace(c.Must(t, "systemctl", "show", "-P", prop, unit))
}

// Cursor returns the journal's current end, for JournalAfter.
func (c *container) Cursor(t *testing.T) string {
	t.Helper()
	out := c.Must(t, "journalctl", "-n", "0", "--show-cursor", "--no-pager")
	i := strings.LastIndex(out, "-- cursor: ")
	if i < 0 {
		t.Fatalf("no cursor in journalctl output: %q", out)
	}
	return strings.TrimSpace(out[i+len("-- cursor: "):])
}

// Journal returns `journalctl -o cat` output for the given arguments
// (matches, -u UNIT, --after-cursor=…).
func (c *container) Journal(t *testing.T, args ...string) string {
	t.Helper()
	return c.Must(t, append([]string{"journalctl", "--no-pager", "-o", "cat"}, args...)...)
}

// WaitJournal polls the journal (journald writes within milliseconds, but
// asynchronously) until every pattern appears in one of its lines, and
// returns the output. It fails the test after 5 s.
func (c *container) WaitJournal(t *testing.T, want []string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := c.Journal(t, args...)
		missing := ""
		for _, w := range want {
			if !hasLine(out, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("journalctl %s: no line containing %q in:\n%s", strings.Join(args, " "), missing, tail(out, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hasLine reports whether a line of out starts with prefix when prefix
// begins with "^", or contains it otherwise.
func hasLine(out, pattern string) bool {
	for _, l := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(pattern, "^"); ok {
			if strings.HasPrefix(l, p) {
				return true
			}
		} else if strings.Contains(l, pattern) {
			return true
		}
	}
	return false
}
