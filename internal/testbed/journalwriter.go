package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// writerEnv makes a test binary that imports testbed act as a journal
// writer instead of running tests (see init below). The process that
// writes must be the one in the unit's cgroup and must live until journald
// has read its entries: journald takes the sender's pid from each message's
// credentials and reads /proc/<pid>/cgroup only when it processes the
// message, so a short-lived `cat` behind systemd-cat loses _SYSTEMD_UNIT.
const writerEnv = "JAILKEEPER_TESTBED_JOURNAL_WRITER"

func init() {
	if os.Getenv(writerEnv) == "" {
		return
	}
	if err := runWriter(); err != nil {
		fmt.Fprintln(os.Stderr, "journal writer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runWriter is the writer process: it joins the cgroups in JK_CGROUPS, then
// copies stdin lines to journald (stdout stream protocol, or one native
// datagram per line when JK_NATIVE is set), says "done" on stdout and
// stays alive until fd 3 reaches EOF.
func runWriter() error {
	for _, d := range filepath.SplitList(os.Getenv("JK_CGROUPS")) {
		if err := joinCgroup(d); err != nil {
			return err
		}
	}
	ident := os.Getenv("JK_IDENT")
	in := bufio.NewReaderSize(os.Stdin, 64<<10)
	if os.Getenv("JK_NATIVE") != "" {
		conn, err := net.Dial("unixgram", "/run/systemd/journal/socket")
		if err != nil {
			return err
		}
		defer conn.Close()
		for {
			line, err := in.ReadString('\n')
			if line = strings.TrimSuffix(line, "\n"); line != "" {
				d := "MESSAGE=" + line + "\nSYSLOG_IDENTIFIER=" + ident + "\nPRIORITY=6\n"
				if _, werr := conn.Write([]byte(d)); werr != nil {
					return fmt.Errorf("sending to journald: %w", werr)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	} else {
		conn, err := net.Dial("unix", "/run/systemd/journal/stdout")
		if err != nil {
			return err
		}
		defer conn.Close()
		// Attach our credentials to every segment: data sent before journald
		// set SO_PASSCRED on its end would otherwise arrive with pid 0, and
		// journald would store those entries with no _PID and no unit.
		if err := passCred(conn); err != nil {
			return err
		}
		// identifier, unit id, priority, level prefix, forward to syslog,
		// kmsg, console (systemd's stdout stream header).
		if _, err := fmt.Fprintf(conn, "%s\n\n6\n0\n0\n0\n0\n", ident); err != nil {
			return fmt.Errorf("sending to journald: %w", err)
		}
		if _, err := io.Copy(conn, in); err != nil {
			return fmt.Errorf("sending to journald: %w", err)
		}
	}
	if _, err := os.Stdout.WriteString("done\n"); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.NewFile(3, "control"))
	return nil
}

// joinCgroup moves this process into the cgroup directory d. Another
// test's writer or unit process may remove d (empty, at its end) between
// its creation and our joining: it is created again and the join retried.
func joinCgroup(d string) error {
	procs := filepath.Join(d, "cgroup.procs")
	var err error
	for range 50 {
		if err = os.MkdirAll(d, 0o755); err == nil {
			if err = os.WriteFile(procs, []byte(strconv.Itoa(os.Getpid())), 0o644); err == nil {
				return nil
			}
		}
		if !errors.Is(err, os.ErrNotExist) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("joining cgroup %s: %w", d, err)
}

func passCred(c net.Conn) error {
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting SO_PASSCRED: %w", serr)
	}
	return nil
}

// UnitWriter writes journal entries as a process of one systemd unit: the
// entries carry _SYSTEMD_UNIT=<unit> and SYSLOG_IDENTIFIER=<ident>. The
// writer is the test binary itself, started again as a child that joins the
// unit's cgroup (so only test binaries that import testbed can use it).
type UnitWriter struct {
	jd      *Journald
	cmd     *exec.Cmd
	msgs    *os.File // the writer's stdin
	done    *os.File // the writer's stdout
	ctl     *os.File // the writer's fd 3
	buf     *bufio.Writer
	dirs    []string // the unit's cgroup directories
	created []string // those this writer created
	closed  bool
}

// WriterOptions tune a UnitWriter.
type WriterOptions struct {
	// Ident is the SYSLOG_IDENTIFIER; "" means the unit name without suffix.
	Ident string
	// Journald selects a private journald; nil writes to the system's.
	Journald *Journald
	// Native sends each entry as a datagram on journald's native socket
	// (entries get _SOURCE_REALTIME_TIMESTAMP) instead of the stdout
	// stream (like systemd-cat and a service's stdout; faster).
	Native bool
}

// CgroupDirs returns the directories a process must join to be seen as a
// process of unit: system.slice/<unit> in the unified hierarchy and, on a
// hybrid or legacy host, in the name=systemd hierarchy.
func CgroupDirs(unit string) []string {
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

// NewUnitWriter starts a writer whose entries carry _SYSTEMD_UNIT=unit. It
// needs root and journalctl (and nsenter for a private journald). Close it
// to wait until journald has stored every entry.
func NewUnitWriter(unit string, o WriterOptions) (*UnitWriter, error) {
	if o.Ident == "" {
		o.Ident = strings.TrimSuffix(unit, filepath.Ext(unit))
	}
	dirs := CgroupDirs(unit)
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup hierarchy found under /sys/fs/cgroup")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the test binary: %w", err)
	}
	w := &UnitWriter{jd: o.Journald, dirs: dirs}
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
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		w.removeCgroups()
		return nil, fmt.Errorf("creating control pipe: %w", err)
	}
	args := []string{exe}
	if o.Journald != nil {
		args = append([]string{"nsenter", "-t", strconv.Itoa(o.Journald.holder.Process.Pid), "-m", "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), writerEnv+"=1", "JK_IDENT="+o.Ident,
		"JK_CGROUPS="+strings.Join(dirs, string(filepath.ListSeparator)))
	if o.Native {
		cmd.Env = append(cmd.Env, "JK_NATIVE=1")
	}
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{ctlR}
	stdin, err := cmd.StdinPipe()
	if err == nil {
		var stdout io.ReadCloser
		stdout, err = cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err == nil {
			w.msgs, w.done = stdin.(*os.File), stdout.(*os.File)
		}
	}
	ctlR.Close()
	if err != nil {
		ctlW.Close()
		w.removeCgroups()
		return nil, fmt.Errorf("starting journal writer for %s: %w", unit, err)
	}
	w.cmd, w.ctl = cmd, ctlW
	w.buf = bufio.NewWriterSize(w.msgs, 64<<10)
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

// Flush hands every queued entry to the writer process.
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
// are empty by now (another writer of the same unit may still use them),
// and any other directory of the unit that is empty at once (the writer
// process creates one again when another test removed it meanwhile).
func (w *UnitWriter) removeCgroups() {
	for _, d := range w.dirs {
		if !slices.Contains(w.created, d) {
			_ = syscall.Rmdir(d) // in use (a running unit's processes): stays
		}
	}
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
	w, err := NewUnitWriter(unit, WriterOptions{Journald: jd})
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
	// Ready when the stream socket, the varlink socket (journalctl --sync
	// needs it) and the runtime journal file exist.
	for i := 0; i < 500; i++ {
		files, _ := filepath.Glob(filepath.Join(j.Dir(), "*", "system.journal"))
		_, err1 := os.Stat(filepath.Join(j.Root(), "run/systemd/journal/stdout"))
		_, err2 := os.Stat(filepath.Join(j.Root(), "run/systemd/journal/io.systemd.journal"))
		if len(files) > 0 && err1 == nil && err2 == nil {
			return nil
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
func (j *Journald) Stop() error { return j.stopWith(syscall.SIGTERM) }

// Kill kills the private journald with SIGKILL, leaving its active file
// unclosed as a crash would; its sockets go away.
func (j *Journald) Kill() error { return j.stopWith(syscall.SIGKILL) }

func (j *Journald) stopWith(sig syscall.Signal) error {
	if j.jd == nil {
		return nil
	}
	cmd := j.jd
	j.jd = nil
	_ = cmd.Process.Signal(sig)
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
