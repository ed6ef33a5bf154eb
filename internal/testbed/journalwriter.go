package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This file writes journal entries that carry a trusted _SYSTEMD_UNIT (the
// writer process sits in a cgroup named like the unit, as journald derives
// the unit from the sender's cgroup), and runs private journald instances
// in private mount namespaces for tests that rotate, vacuum or restart the
// journal. See shared/TESTBED.md "Entries that carry a trusted
// _SYSTEMD_UNIT".

// writerScript runs as the process journald sees as the sender. It joins
// every cgroup directory given as an argument, connects to journald's
// stdout stream with systemd-cat, copies fd 3 (the messages) into the
// stream, says "done" on fd 4 and then stays alive until its stdin closes,
// so that journald can still read its cgroup while it works through the
// backlog.
const writerScript = `set -e
for d in "$@"; do echo $$ > "$d/cgroup.procs"; done
exec systemd-cat -t "$JK_IDENT" sh -c 'cat <&3; exec 3<&-; echo done >&4; read x || true'
`

// UnitWriter writes journal entries as a process of one systemd unit: the
// entries carry _SYSTEMD_UNIT=<unit> and SYSLOG_IDENTIFIER=<ident>. It uses
// journald's stdout stream (systemd-cat), so it writes at journald's full
// speed but the entries have no _SOURCE_REALTIME_TIMESTAMP.
type UnitWriter struct {
	jd      *Journald
	cmd     *exec.Cmd
	msgs    *os.File // write end of fd 3
	done    *os.File // read end of fd 4
	ctl     *os.File // write end of the writer's stdin
	buf     *bufio.Writer
	created []string // cgroup directories this writer created
	closed  bool
}

// cgroupDirs returns the directories a process must join to be seen as a
// process of unit: system.slice/<unit> in the unified hierarchy and, on a
// hybrid or legacy host, in the name=systemd hierarchy.
func cgroupDirs(unit string) []string {
	const root = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return []string{filepath.Join(root, "system.slice", unit)} // pure cgroup2
	}
	var dirs []string
	for _, h := range []string{"unified", "systemd"} {
		if _, err := os.Stat(filepath.Join(root, h)); err == nil {
			dirs = append(dirs, filepath.Join(root, h, "system.slice", unit))
		}
	}
	return dirs
}

// NewUnitWriter starts a writer whose entries carry _SYSTEMD_UNIT=unit and
// SYSLOG_IDENTIFIER=ident. jd selects a private journald; nil writes to the
// system's journald at /run/systemd/journal. It needs root, systemd-cat and
// journalctl. Close it to wait until journald has stored every entry.
func NewUnitWriter(unit, ident string, jd *Journald) (*UnitWriter, error) {
	dirs := cgroupDirs(unit)
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup hierarchy found under /sys/fs/cgroup")
	}
	w := &UnitWriter{jd: jd}
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			continue
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			w.removeCgroups()
			return nil, fmt.Errorf("creating cgroup %s: %w", d, err)
		}
		w.created = append(w.created, d)
	}
	msgR, msgW, err := os.Pipe()
	if err != nil {
		w.removeCgroups()
		return nil, fmt.Errorf("creating message pipe: %w", err)
	}
	doneR, doneW, err := os.Pipe()
	if err != nil {
		msgR.Close()
		msgW.Close()
		w.removeCgroups()
		return nil, fmt.Errorf("creating done pipe: %w", err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		msgR.Close()
		msgW.Close()
		doneR.Close()
		doneW.Close()
		w.removeCgroups()
		return nil, fmt.Errorf("creating control pipe: %w", err)
	}
	args := append([]string{"sh", "-c", writerScript, "sh"}, dirs...)
	if jd != nil {
		args = append([]string{"nsenter", "-t", strconv.Itoa(jd.holder.Process.Pid), "-m", "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "JK_IDENT="+ident)
	cmd.Stdin = ctlR
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{msgR, doneW}
	if err := cmd.Start(); err != nil {
		for _, f := range []*os.File{msgR, msgW, doneR, doneW, ctlR, ctlW} {
			f.Close()
		}
		w.removeCgroups()
		return nil, fmt.Errorf("starting journal writer for %s: %w", unit, err)
	}
	msgR.Close()
	doneW.Close()
	ctlR.Close()
	w.cmd, w.msgs, w.done, w.ctl = cmd, msgW, doneR, ctlW
	w.buf = bufio.NewWriterSize(msgW, 64<<10)
	return w, nil
}

// Write queues one entry. msg must not contain a newline (journald would
// split it). Call Flush to hand queued entries to journald now.
func (w *UnitWriter) Write(msg string) error {
	if strings.ContainsRune(msg, '\n') {
		return fmt.Errorf("journal message %q contains a newline", msg)
	}
	if _, err := w.buf.WriteString(msg); err != nil {
		return fmt.Errorf("writing journal message: %w", err)
	}
	if err := w.buf.WriteByte('\n'); err != nil {
		return fmt.Errorf("writing journal message: %w", err)
	}
	return nil
}

// Flush hands every queued entry to journald's stream socket.
func (w *UnitWriter) Flush() error {
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("flushing journal messages: %w", err)
	}
	return nil
}

// Close flushes, waits until journald has processed every entry (journalctl
// --sync), stops the writer and removes the cgroup directories it created.
func (w *UnitWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.Flush()
	w.msgs.Close()
	line, rerr := bufio.NewReader(w.done).ReadString('\n')
	w.done.Close()
	if rerr != nil || line != "done\n" {
		err = errors.Join(err, fmt.Errorf("journal writer ended early (%q): %w", line, rerr))
	}
	if serr := w.jd.Sync(); serr != nil {
		err = errors.Join(err, serr)
	}
	w.ctl.Close()
	if werr := w.cmd.Wait(); werr != nil {
		err = errors.Join(err, fmt.Errorf("journal writer: %w", werr))
	}
	w.removeCgroups()
	return err
}

// removeCgroups removes the cgroup directories this writer created, if they
// are empty by now (another writer of the same unit may still use them).
func (w *UnitWriter) removeCgroups() {
	for _, d := range w.created {
		for i := 0; i < 50; i++ {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// WriteAsUnit writes msgs to the system journal as entries of unit (with
// SYSLOG_IDENTIFIER = the unit's name without suffix) and returns once
// journald has stored them all.
func WriteAsUnit(unit string, msgs []string) error {
	return writeAsUnit(unit, msgs, nil)
}

func writeAsUnit(unit string, msgs []string, jd *Journald) error {
	ident := strings.TrimSuffix(unit, filepath.Ext(unit))
	w, err := NewUnitWriter(unit, ident, jd)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// Journald is a private systemd-journald running in a private mount
// namespace with its own tmpfs /run, so a test may rotate, vacuum or
// restart it without touching the system's journal. Its files are visible
// from outside at Dir().
type Journald struct {
	holder *exec.Cmd // keeps the mount namespace alive
	jd     *exec.Cmd // the journald, nil while stopped
}

// journaldConf is written to the private /run/systemd/journald.conf.d.
const journaldConf = `[Journal]
Storage=volatile
RateLimitIntervalSec=0
RateLimitBurst=0
ReadKMsg=no
ForwardToSyslog=no
ForwardToWall=no
`

// StartJournald starts a private journald (see Journald) and stops it in
// t.Cleanup. It calls Require for root, unshare, nsenter, journalctl and
// systemd-cat.
func StartJournald(t testing.TB) *Journald {
	t.Helper()
	Require(t, "unshare", "nsenter", "journalctl", "systemd-cat")
	bin := "/lib/systemd/systemd-journald"
	if _, err := os.Stat(bin); err != nil {
		bin = "/usr/lib/systemd/systemd-journald"
	}
	script := `set -e
mount -t tmpfs -o mode=0755 jk-run /run
mkdir -p /run/systemd/journald.conf.d
cat > /run/systemd/journald.conf.d/zzz-jailkeeper-test.conf
echo ready
exec sleep infinity`
	holder := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	holder.Stdin = strings.NewReader(journaldConf)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatalf("journald namespace: %v", err)
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatalf("starting journald namespace: %v", err)
	}
	j := &Journald{holder: holder}
	t.Cleanup(j.stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("journald namespace did not come up: %q %v", line, err)
	}
	if err := j.startDaemon(bin); err != nil {
		t.Fatal(err)
	}
	return j
}

func (j *Journald) startDaemon(bin string) error {
	cmd := j.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout = io.Discard
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting private journald: %w", err)
	}
	j.jd = cmd
	sock := filepath.Join(j.Root(), "run/systemd/journal/stdout")
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(sock); err == nil {
			// The varlink socket comes last; journalctl --sync needs it.
			if _, err := os.Stat(filepath.Join(j.Root(), "run/systemd/journal/io.systemd.journal")); err == nil {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("private journald (pid %d) created no socket in 5s", cmd.Process.Pid)
}

// Root is the private namespace's root directory seen from outside.
func (j *Journald) Root() string {
	return fmt.Sprintf("/proc/%d/root", j.holder.Process.Pid)
}

// Dir is the private journal's directory (/run/log/journal inside), to be
// opened with sdjournal.NewJournalFromDir or journalctl -D.
func (j *Journald) Dir() string { return filepath.Join(j.Root(), "run/log/journal") }

// PID is the process id of the running journald, 0 while stopped.
func (j *Journald) PID() int {
	if j.jd == nil {
		return 0
	}
	return j.jd.Process.Pid
}

// Command returns a command that runs inside the private mount namespace,
// so that it sees this journald at /run/systemd/journal.
func (j *Journald) Command(name string, args ...string) *exec.Cmd {
	a := append([]string{"-t", strconv.Itoa(j.holder.Process.Pid), "-m", "--", name}, args...)
	return exec.Command("nsenter", a...)
}

// Sync waits until journald has written every message it received so far
// (journalctl --sync). A nil *Journald means the system's journald.
func (j *Journald) Sync() error {
	var cmd *exec.Cmd
	if j == nil {
		cmd = exec.Command("journalctl", "--sync")
	} else {
		cmd = j.Command("journalctl", "--sync")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("journalctl --sync: %v: %s", err, out)
	}
	return nil
}

// Rotate makes the private journald archive its files and start new ones.
func (j *Journald) Rotate() error {
	if out, err := j.Command("journalctl", "--rotate").CombinedOutput(); err != nil {
		return fmt.Errorf("journalctl --rotate: %v: %s", err, out)
	}
	return nil
}

// Stop terminates the private journald (SIGTERM) and waits for it; its
// sockets go away, its files stay.
func (j *Journald) Stop() error {
	if j.jd == nil {
		return nil
	}
	cmd := j.jd
	j.jd = nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	for _, s := range []string{"socket", "stdout", "dev-log", "io.systemd.journal"} {
		_ = os.Remove(filepath.Join(j.Root(), "run/systemd/journal", s))
	}
	return nil
}

// Start starts the private journald again after Stop.
func (j *Journald) Start() error {
	if j.jd != nil {
		return errors.New("private journald is already running")
	}
	bin := "/lib/systemd/systemd-journald"
	if _, err := os.Stat(bin); err != nil {
		bin = "/usr/lib/systemd/systemd-journald"
	}
	return j.startDaemon(bin)
}

// WriteAsUnit writes msgs to this private journal as entries of unit and
// returns once journald has stored them all.
func (j *Journald) WriteAsUnit(unit string, msgs []string) error {
	return writeAsUnit(unit, msgs, j)
}

func (j *Journald) stop() {
	_ = j.Stop()
	if j.holder != nil && j.holder.Process != nil {
		_ = j.holder.Process.Kill()
		_ = j.holder.Wait()
	}
}
