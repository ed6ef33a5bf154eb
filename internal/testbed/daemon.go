package testbed

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
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
// tree with `go build ./cmd/jailkeeper`, next to the jailkeeperd that its
// `daemon` execs (`go build ./cmd/jailkeeperd`), once per process. If
// JAILKEEPER_BIN is set, that binary is used instead (with the jailkeeperd
// next to it). With JAILKEEPER_CPUPROFILE set, jailkeeperd is built with
// its profiling hook (-tags profile). Call RemoveBuild from TestMain (or at the end of main) to
// delete the build.
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
		for _, name := range []string{"jailkeeper", "jailkeeperd"} {
			args := []string{"build", "-o", filepath.Join(build.dir, name)}
			if os.Getenv("JAILKEEPER_CPUPROFILE") != "" {
				args = append(args, "-tags", "profile") // the daemon's profiling hook
			}
			cmd := exec.Command(goTool(), append(args, "./cmd/"+name)...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				build.err = fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
				return
			}
		}
		build.bin = filepath.Join(build.dir, "jailkeeper")
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

// Daemon is `jailkeeper daemon` (which execs jailkeeperd) running inside the server namespace, with
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
	// OnNotify, if set, is installed on each run's Notify before the
	// daemon starts (see Notify.OnMessage).
	OnNotify func(NotifyMsg)
	// Started is when the current (or last) run was started.
	Started time.Time

	// companion runs the process: Notify, PID, Running, Done, Stop (10 s
	// before SIGKILL), Kill and Output.
	companion

	t testing.TB
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
	}
	for name, body := range configs {
		if err := os.WriteFile(filepath.Join(d.ConfigDir, name), []byte(body), 0o644); err != nil {
			t.Fatalf("writing config %s: %v", name, err)
		}
	}
	d.init(t, "jailkeeper daemon", 10*time.Second)
	return d
}

// Start starts the daemon with a fresh sd_notify listener and returns at
// once; use WaitReady. It fails the test if the daemon runs already.
func (d *Daemon) Start(t testing.TB) {
	t.Helper()
	argv := d.Hosts.SrvArgv(d.Journald, d.Bin, "daemon", "--config-dir", d.ConfigDir, "--state-dir", d.StateDir)
	env := []string{d.Bus.Env()}
	if d.Watchdog > 0 {
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(d.Watchdog.Microseconds(), 10))
	}
	d.start(t, argv, env, d.OnNotify)
	d.Started = d.started
}

// WaitReady waits for READY=1 and returns its message. It fails the test
// if the daemon exits first or the timeout passes.
func (d *Daemon) WaitReady(t testing.TB, timeout time.Duration) NotifyMsg {
	t.Helper()
	return d.waitReady(t, timeout)
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
