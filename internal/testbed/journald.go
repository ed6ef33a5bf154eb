package testbed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// JournalSocket is the native journald socket. Its file outlives the
// journald that made it (a stopped journald leaves its sockets behind), so
// its presence alone does not mean a journald runs: journaldLive connects.
const JournalSocket = "/run/systemd/journal/socket"

const (
	journaldBinary = "/lib/systemd/systemd-journald"
	journaldDropIn = "/etc/systemd/journald.conf.d/zz-jailkeeper-test.conf"
	// standaloneJournaldConf turns rate limiting off: with the defaults journald
	// silently dropped most of a 200,000-line burst (TESTBED.md).
	standaloneJournaldConf = "[Journal]\nRateLimitIntervalSec=0\nRateLimitBurst=0\nStorage=volatile\n"

	// journaldLock coordinates the test binaries that `go test ./...` runs
	// in parallel: each holds it shared while it uses the system journald,
	// and only a holder that gets it exclusive starts or stops one.
	journaldLock = "/run/jailkeeper-test-journald.lock"
	// journaldPIDFile names the journald a test started (and so may stop).
	journaldPIDFile = "/run/jailkeeper-test-journald.pid"
)

// journald is this process's share of the system journald.
var journald struct {
	sync.Mutex
	users int
	lock  *os.File // journaldLock, held shared while users > 0
}

// journaldLive reports whether a journald answers on the system sockets:
// a stream connect to its stdout socket is refused when the socket file is
// a leftover.
func journaldLive() bool {
	for _, p := range []string{"/run/systemd/journal/io.systemd.journal", "/run/systemd/journal/stdout"} {
		c, err := net.DialTimeout("unix", p, time.Second)
		if err == nil {
			_ = c.Close()
			return true
		}
	}
	return false
}

// EnsureJournald makes sure the system journald runs for the rest of the
// test. If none answers (a CI machine without systemd, or the sockets left
// by one that was stopped), it writes a drop-in turning rate limiting off
// and starts a standalone systemd-journald. The journald a test started is
// stopped by PID when the last test using it, in any test binary of the
// run, ends; a journald no test started is never stopped.
func EnsureJournald(t testing.TB) {
	t.Helper()
	journald.Lock()
	defer journald.Unlock()
	if journald.users == 0 {
		f, err := os.OpenFile(journaldLock, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatalf("opening %s: %v", journaldLock, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			_ = f.Close()
			t.Fatalf("locking %s: %v", journaldLock, err)
		}
		if !journaldLive() {
			if err := startJournald(); err != nil {
				_ = f.Close()
				t.Fatal(err)
			}
			t.Logf("started systemd-journald")
		}
		// Downgrade: other test binaries may share it from now on.
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
			_ = f.Close()
			t.Fatalf("locking %s shared: %v", journaldLock, err)
		}
		journald.lock = f
	}
	journald.users++
	t.Cleanup(releaseJournald)
}

// releaseJournald drops one user; the last user of the last test binary
// stops the journald a test started.
func releaseJournald() {
	journald.Lock()
	defer journald.Unlock()
	journald.users--
	if journald.users > 0 {
		return
	}
	f := journald.lock
	journald.lock = nil
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return // another test binary still uses it; the last one stops it
	}
	stopStartedJournald()
}

// startJournald starts a detached systemd-journald and records its PID;
// the caller holds journaldLock exclusively.
func startJournald() error {
	if err := os.MkdirAll("/etc/systemd/journald.conf.d", 0o755); err != nil {
		return fmt.Errorf("creating journald drop-in dir: %w", err)
	}
	if err := os.WriteFile(journaldDropIn, []byte(standaloneJournaldConf), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", journaldDropIn, err)
	}
	bin := journaldBinary
	if _, err := os.Stat(bin); err != nil {
		bin = "/usr/lib/systemd/systemd-journald"
	}
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	pid := cmd.Process.Pid
	// Reap it if it dies while this binary runs; it may outlive this
	// binary when another still uses it (it then stops it by PID).
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(journaldPIDFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("writing %s: %w", journaldPIDFile, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !journaldLive() {
		if time.Now().After(deadline) {
			stopStartedJournald()
			return fmt.Errorf("systemd-journald (pid %d) did not answer on /run/systemd/journal within 10s", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// stopStartedJournald stops the journald named in journaldPIDFile, if that
// PID still is a systemd-journald, and waits for it to go.
func stopStartedJournald() {
	b, err := os.ReadFile(journaldPIDFile)
	if err != nil {
		return
	}
	_ = os.Remove(journaldPIDFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), "systemd-journal") {
		return // gone, or the PID was reused
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 250; i++ {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && zombie(st) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// zombie reports whether a /proc/PID/stat line is of an exited process.
func zombie(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
