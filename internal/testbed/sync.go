package testbed

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Sync is `jailkeeper sync` for a Daemon: the same bus and config
// directory, run in the test's own network namespace (where the test's
// NATS server listens on loopback), with an sd_notify listener per run.
type Sync struct {
	Bin       string
	ConfigDir string
	Notify    *Notify

	d    *Daemon
	cmd  *exec.Cmd
	out  bytes.Buffer
	omu  sync.Mutex
	done chan struct{}
	runs int
}

var syncBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// BuildSync returns a directory's jailkeeper (a link to daemonBin) next to
// jailkeeper-sync built from this tree once per process, so that
// `jailkeeper sync` execs its sibling as installed. RemoveSyncBuild
// deletes it.
func BuildSync(t testing.TB, daemonBin string) string {
	t.Helper()
	syncBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "jk-sync-build-")
		if err != nil {
			syncBuild.err = err
			return
		}
		syncBuild.dir = dir
		root, err := RepoRoot()
		if err != nil {
			syncBuild.err = err
			return
		}
		cmd := exec.Command(goTool(), "build", "-o", filepath.Join(dir, "jailkeeper-sync"), "./cmd/jailkeeper-sync")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			syncBuild.err = fmt.Errorf("go build ./cmd/jailkeeper-sync: %w\n%s", err, out)
			return
		}
		syncBuild.err = linkOrCopy(daemonBin, filepath.Join(dir, "jailkeeper"))
		syncBuild.bin = filepath.Join(dir, "jailkeeper")
	})
	if syncBuild.err != nil {
		t.Fatal(syncBuild.err)
	}
	return syncBuild.bin
}

// RemoveSyncBuild deletes what BuildSync built.
func RemoveSyncBuild() {
	if syncBuild.dir != "" {
		_ = os.RemoveAll(syncBuild.dir)
	}
}

// NewSync returns the sync service of d, not started. It is stopped at
// cleanup, and its output logged if the test failed.
func NewSync(t testing.TB, d *Daemon) *Sync {
	t.Helper()
	s := &Sync{Bin: BuildSync(t, d.Bin), ConfigDir: d.ConfigDir, d: d}
	t.Cleanup(func() {
		if s.Running() {
			s.stop()
		}
		if t.Failed() {
			t.Logf("jailkeeper sync output (%d runs):\n%s", s.runs, s.Output())
		}
	})
	return s
}

// Start starts the service and waits for READY=1 (sent once the bucket's
// keys present at the start are applied).
func (s *Sync) Start(t testing.TB, timeout time.Duration) {
	t.Helper()
	if s.Running() {
		t.Fatal("jailkeeper sync already running")
	}
	s.Notify = NewNotify(t)
	s.runs++
	cmd := exec.Command(s.Bin, "sync", "--config-dir", s.ConfigDir)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+s.Notify.Path, s.d.Bus.Env())
	w := &lockedWriter{mu: &s.omu, w: &s.out}
	fmt.Fprintf(w, "--- run %d ---\n", s.runs)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting jailkeeper sync: %v", err)
	}
	s.cmd = cmd
	done := make(chan struct{})
	s.done = done
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(w, "--- run exited: %v ---\n", err)
		close(done)
	}()
	ready := make(chan error, 1)
	go func() {
		_, _, err := s.Notify.Wait("READY=1", timeout)
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("jailkeeper sync: %v\n%s", err, s.Output())
		}
	case <-done:
		t.Fatalf("jailkeeper sync exited before READY=1:\n%s", s.Output())
	}
}

// PID is the service's process ID (0 when it is not running).
func (s *Sync) PID() int {
	if !s.Running() {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the process is alive.
func (s *Sync) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for the exit (SIGKILL after 20 s).
func (s *Sync) Stop(t testing.TB) {
	t.Helper()
	if !s.Running() {
		t.Fatal("jailkeeper sync not running")
	}
	s.stop()
}

func (s *Sync) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Output is what the service wrote over all runs.
func (s *Sync) Output() string {
	s.omu.Lock()
	defer s.omu.Unlock()
	return s.out.String()
}

// FleetUnban runs `jailkeeper unban --fleet addr` with the sync's
// configuration and returns its output.
func (s *Sync) FleetUnban(addr string) (string, error) {
	out, err := exec.Command(s.Bin, "unban", "--fleet", "--config-dir", s.ConfigDir, addr).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
