package testbed

import (
	"bytes"
	"encoding/json"
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
)

// SSHJailConfig is the sshd drop-in of the README, the configuration every
// end-to-end scenario starts from.
const SSHJailConfig = `whitelist: [198.51.100.3, 2001:db8::3]
firewall: {backend: iptables}
jails:
  sshd:
    units: [sshd.service, ssh.service]
    filter: sshd
    maxretry: 3
    findtime: 10m
    bantime: 1h
    ports: [22]
`

// build is the process-wide jailkeeper binary.
var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// BuildJailkeeper returns the path of a jailkeeper binary built from this
// tree with `go build ./cmd/jailkeeper`, once per process. If
// JAILKEEPER_BIN is set, that binary is used instead. Call RemoveBuild
// from TestMain (or at the end of main) to delete the build.
func BuildJailkeeper(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if b := os.Getenv("JAILKEEPER_BIN"); b != "" {
			build.bin = b
			return
		}
		root, err := RepoRoot()
		if err != nil {
			build.err = err
			return
		}
		build.dir, err = os.MkdirTemp("", "jk-build-")
		if err != nil {
			build.err = fmt.Errorf("creating build dir: %w", err)
			return
		}
		bin := filepath.Join(build.dir, "jailkeeper")
		cmd := exec.Command(goTool(), "build", "-o", bin, "./cmd/jailkeeper")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/jailkeeper: %w\n%s", err, out)
			return
		}
		build.bin = bin
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// RemoveBuild deletes the binary BuildJailkeeper built, if any.
func RemoveBuild() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// goTool returns the go command: from PATH, else the standard install
// location (sudo often resets PATH).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// Daemon is `jailkeeper daemon` running inside the server namespace, with
// NOTIFY_SOCKET, WATCHDOG_USEC and DBUS_SYSTEM_BUS_ADDRESS pointing at the
// test. Its config and state directories outlive restarts.
type Daemon struct {
	Bin   string
	Hosts *Hosts
	Bus   *Bus
	// Journald, when set, is the private journald the daemon reads: it
	// runs in that journald's mount namespace (see Hosts.SrvArgv).
	Journald  *Journald
	ConfigDir string
	StateDir  string
	// Watchdog is passed as WATCHDOG_USEC; the daemon should ping at half
	// of it. Zero disables the watchdog.
	Watchdog time.Duration
	// Notify is the sd_notify listener of the current (or last) run; each
	// Start makes a fresh one.
	Notify *Notify
	// OnNotify, if set, is installed on each run's Notify before the
	// daemon starts (see Notify.OnMessage).
	OnNotify func(NotifyMsg)
	// Started is when the current (or last) run was started.
	Started time.Time

	t    testing.TB
	cmd  *exec.Cmd
	out  *bytes.Buffer
	omu  sync.Mutex
	done chan struct{}
	werr error // the run's exit error, set before done is closed
	runs int
}

// NewDaemon builds jailkeeper (once per process), writes configs (file
// name → YAML) into a fresh config directory, and returns a Daemon ready
// to Start. The daemon is stopped at cleanup, and its output logged if the
// test failed.
func NewDaemon(t testing.TB, h *Hosts, bus *Bus, configs map[string]string) *Daemon {
	t.Helper()
	d := &Daemon{
		Bin:       BuildJailkeeper(t),
		Hosts:     h,
		Bus:       bus,
		ConfigDir: t.TempDir(),
		StateDir:  t.TempDir(),
		Watchdog:  2 * time.Second,
		t:         t,
		out:       &bytes.Buffer{},
	}
	for name, body := range configs {
		if err := os.WriteFile(filepath.Join(d.ConfigDir, name), []byte(body), 0o644); err != nil {
			t.Fatalf("writing config %s: %v", name, err)
		}
	}
	t.Cleanup(func() {
		if d.Running() {
			_ = d.stop(syscall.SIGTERM, 10*time.Second)
		}
		// A -race build of the daemon (JAILKEEPER_BIN, make test) reports
		// here, whatever the test checked.
		if strings.Contains(d.Output(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in the daemon")
		}
		if t.Failed() {
			t.Logf("jailkeeper daemon output (%d runs):\n%s", d.runs, d.Output())
		}
	})
	return d
}

// Start starts the daemon with a fresh sd_notify listener and returns at
// once; use WaitReady. It fails the test if the daemon runs already.
func (d *Daemon) Start(t testing.TB) {
	t.Helper()
	if d.Running() {
		t.Fatal("jailkeeper daemon already running")
	}
	d.Notify = NewNotify(t)
	d.runs++
	argv := d.Hosts.SrvArgv(d.Journald, d.Bin, "daemon", "--config-dir", d.ConfigDir, "--state-dir", d.StateDir)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"NOTIFY_SOCKET="+d.Notify.Path,
		d.Bus.Env(),
	)
	if d.OnNotify != nil {
		d.Notify.OnMessage(d.OnNotify)
	}
	if d.Watchdog > 0 {
		cmd.Env = append(cmd.Env, "WATCHDOG_USEC="+strconv.FormatInt(d.Watchdog.Microseconds(), 10))
	}
	w := &lockedWriter{mu: &d.omu, w: d.out}
	fmt.Fprintf(w, "--- run %d ---\n", d.runs)
	cmd.Stdout = w
	cmd.Stderr = w
	d.Started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting jailkeeper daemon: %v", err)
	}
	d.cmd = cmd
	done := make(chan struct{})
	d.done = done
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(w, "--- run exited: %v ---\n", err)
		d.werr = err
		close(done)
	}()
}

// WaitReady waits for READY=1 and returns its message. It fails the test
// if the daemon exits first or the timeout passes.
func (d *Daemon) WaitReady(t testing.TB, timeout time.Duration) NotifyMsg {
	t.Helper()
	type res struct {
		m   NotifyMsg
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, _, err := d.Notify.Wait("READY=1", timeout)
		ch <- res{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%v\ndaemon output:\n%s", r.err, d.Output())
		}
		return r.m
	case <-d.done:
		t.Fatalf("jailkeeper daemon exited before READY=1:\n%s", d.Output())
	}
	return NotifyMsg{}
}

// PID returns the daemon's process ID (`ip netns exec` and nsenter exec in
// place, so this is the jailkeeper process itself), or 0 when it is not running.
func (d *Daemon) PID() int {
	if !d.Running() {
		return 0
	}
	return d.cmd.Process.Pid
}

// Running reports whether the daemon process is alive.
func (d *Daemon) Running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Done is closed when the current run exits.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Stop sends SIGTERM and waits up to 10 s for the daemon to exit (then
// SIGKILL). It returns the daemon's exit error (nil for a clean exit).
func (d *Daemon) Stop(t testing.TB) error {
	t.Helper()
	if !d.Running() {
		t.Fatal("jailkeeper daemon not running")
	}
	return d.stop(syscall.SIGTERM, 10*time.Second)
}

// Kill sends SIGKILL and waits for the daemon to exit.
func (d *Daemon) Kill(t testing.TB) {
	t.Helper()
	if !d.Running() {
		t.Fatal("jailkeeper daemon not running")
	}
	_ = d.stop(syscall.SIGKILL, 10*time.Second)
}

func (d *Daemon) stop(sig syscall.Signal, grace time.Duration) error {
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("jailkeeper daemon ignored %v for %v: killed", sig, grace)
	}
	return d.werr
}

// Output returns everything the daemon wrote to stdout and stderr, over
// all runs.
func (d *Daemon) Output() string {
	d.omu.Lock()
	defer d.omu.Unlock()
	return d.out.String()
}

// JailStatus is one jail in `jailkeeper status --json`.
type JailStatus struct {
	Name            string   `json:"name"`
	CurrentlyFailed int      `json:"currently_failed"`
	TotalFailed     int      `json:"total_failed"`
	CurrentlyBanned int      `json:"currently_banned"`
	TotalBanned     int      `json:"total_banned"`
	Banned          []string `json:"banned"`
}

// Status runs `jailkeeper status [JAIL] --json` against the daemon's bus.
func (d *Daemon) Status(t testing.TB, jail string) []JailStatus {
	t.Helper()
	args := []string{"status", "--json"}
	if jail != "" {
		args = append(args, jail)
	}
	cmd := exec.Command(d.Bin, args...)
	cmd.Env = append(os.Environ(), d.Bus.Env())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jailkeeper %v: %v\n%s", args, err, out)
	}
	var st struct {
		Jails []JailStatus `json:"jails"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("jailkeeper %v printed %q: %v", args, out, err)
	}
	return st.Jails
}
