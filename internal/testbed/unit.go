package testbed

import (
	"bytes"
	"errors"
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

// cgroupRoots are the hierarchies journald may read a writer's unit from:
// the cgroup v2 tree of a hybrid machine, the named systemd v1 tree, and
// the root of a pure v2 machine.
var cgroupRoots = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"}

// UnitCgroupDirs returns system.slice/UNIT under every cgroup hierarchy
// that exists on this machine (both trees of a hybrid layout, or the one
// tree of a pure cgroup v2 machine). journald derives _SYSTEMD_UNIT from
// the writer's cgroup path, so a process in these cgroups logs as UNIT.
func UnitCgroupDirs(unit string) ([]string, error) {
	var dirs []string
	for _, root := range cgroupRoots {
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			continue
		}
		dirs = append(dirs, filepath.Join(root, "system.slice", unit))
	}
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup hierarchy found under /sys/fs/cgroup")
	}
	return dirs, nil
}

// UnitProcess is a shell script running inside the cgroup of a unit, with
// every process it starts in that cgroup and in its own process group.
type UnitProcess struct {
	Unit string
	Cmd  *exec.Cmd
	dirs []string

	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
	waited error
}

// StartInUnit runs script with sh inside the cgroup of unit (created if
// needed) and returns at once. The script's stdout and stderr are kept
// (Output). The process group is killed and the cgroup directories removed
// (when empty: parallel runs share them) at cleanup.
//
// Note that `ip netns exec` remounts /sys, so a script must enter the
// cgroup before it enters a namespace; StartInUnit does that first.
func StartInUnit(t testing.TB, unit, script string, env ...string) *UnitProcess {
	t.Helper()
	dirs, err := UnitCgroupDirs(unit)
	if err != nil {
		t.Fatalf("starting in %s: %v", unit, err)
	}
	var enter strings.Builder
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("creating cgroup %s: %v", d, err)
		}
		// Another test may remove the (empty) directory before we join:
		// create it again and retry.
		fmt.Fprintf(&enter, "n=0; until mkdir -p %[1]s && echo $$ 2>/dev/null > %[1]s/cgroup.procs; do n=$((n+1)); [ $n -lt 50 ] || exit 97; sleep 0.01; done\n", d)
	}
	p := &UnitProcess{Unit: unit, dirs: dirs, done: make(chan struct{})}
	p.Cmd = exec.Command("sh", "-c", enter.String()+script)
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdout = &lockedWriter{mu: &p.mu, w: &p.out}
	p.Cmd.Stderr = p.Cmd.Stdout
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("starting %q in %s: %v", script, unit, err)
	}
	go func() {
		p.waited = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	return p
}

// Output returns what the script wrote so far.
func (p *UnitProcess) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Done is closed when the script has exited.
func (p *UnitProcess) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the script's process group, SIGKILL after grace,
// waits for the script, and removes the unit's cgroup directories if no
// other process uses them. It may be called more than once.
func (p *UnitProcess) Stop(grace time.Duration) {
	pgid := p.Cmd.Process.Pid
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Members of the group that outlived the shell (a pipeline's tail).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	removeCgroupDirs(p.dirs, 3*time.Second)
}

// removeCgroupDirs removes each empty cgroup directory, retrying while its
// last processes exit; a directory still in use by others stays.
func removeCgroupDirs(dirs []string, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for _, d := range dirs {
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
