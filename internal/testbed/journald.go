package testbed

import (
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// JournalSocket is the native journald socket; its presence means a
// journald runs.
const JournalSocket = "/run/systemd/journal/socket"

const (
	journaldBinary = "/lib/systemd/systemd-journald"
	journaldDropIn = "/etc/systemd/journald.conf.d/zz-jailkeeper-test.conf"
	// standaloneJournaldConf turns rate limiting off: with the defaults journald
	// silently dropped most of a 200,000-line burst (TESTBED.md).
	standaloneJournaldConf = "[Journal]\nRateLimitIntervalSec=0\nRateLimitBurst=0\nStorage=volatile\n"
)

// journald is the process-wide state of a journald this process started.
var journald struct {
	sync.Mutex
	users int
	cmd   *exec.Cmd // nil when one already ran
}

// EnsureJournald makes sure a journald runs. If none does (no
// JournalSocket), it writes a drop-in turning rate limiting off and starts
// a standalone systemd-journald, which is stopped by PID when the last test
// that asked for it ends. A journald this process did not start is never
// stopped.
func EnsureJournald(t testing.TB) {
	t.Helper()
	journald.Lock()
	defer journald.Unlock()
	if journald.users == 0 {
		if _, err := os.Stat(JournalSocket); err != nil {
			startJournald(t)
		}
	}
	journald.users++
	t.Cleanup(func() {
		journald.Lock()
		defer journald.Unlock()
		journald.users--
		if journald.users > 0 || journald.cmd == nil {
			return
		}
		_ = journald.cmd.Process.Signal(syscall.SIGTERM)
		waitOrKill(journald.cmd, 5*time.Second)
		journald.cmd = nil
	})
}

// startJournald starts systemd-journald; the caller holds journald's lock.
func startJournald(t testing.TB) {
	t.Helper()
	if err := os.MkdirAll("/etc/systemd/journald.conf.d", 0o755); err != nil {
		t.Fatalf("creating journald drop-in dir: %v", err)
	}
	if err := os.WriteFile(journaldDropIn, []byte(standaloneJournaldConf), 0o644); err != nil {
		t.Fatalf("writing %s: %v", journaldDropIn, err)
	}
	cmd := exec.Command(journaldBinary)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", journaldBinary, err)
	}
	journald.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(JournalSocket); err == nil {
			t.Logf("started systemd-journald, pid %d", cmd.Process.Pid)
			return
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			journald.cmd = nil
			t.Fatalf("systemd-journald did not create %s within 10s", JournalSocket)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOrKill waits for cmd to exit, sending SIGKILL after grace.
func waitOrKill(cmd *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}
