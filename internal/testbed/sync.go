package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sync is `jailkeeper sync` for a Daemon: the same bus and config
// directory, run in the test's own network namespace (where the test's
// NATS server listens on loopback), with an sd_notify listener per run.
type Sync struct {
	Bin       string
	ConfigDir string

	// companion runs the process: Notify, PID, Running, Done, Stop (20 s
	// before SIGKILL), Kill and Output.
	companion

	d *Daemon
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
	s.init(t, "jailkeeper sync", 20*time.Second)
	return s
}

// Start starts the service and waits for READY=1 (sent once the bucket's
// keys present at the start are applied).
func (s *Sync) Start(t testing.TB, timeout time.Duration) {
	t.Helper()
	s.start(t, []string{s.Bin, "sync", "--config-dir", s.ConfigDir}, []string{s.d.Bus.Env()}, nil)
	s.waitReady(t, timeout)
}

// FleetUnban runs `jailkeeper unban --fleet addr` with the sync's
// configuration and returns its output.
func (s *Sync) FleetUnban(addr string) (string, error) {
	out, err := exec.Command(s.Bin, "unban", "--fleet", "--config-dir", s.ConfigDir, addr).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
