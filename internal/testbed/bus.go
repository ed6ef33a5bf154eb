package testbed

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ModulePath is the Go module whose root RepoRoot looks for.
const ModulePath = "github.com/jailkeeper/jailkeeper"

// PolicyRelPath is the project's D-Bus policy, relative to the repo root.
const PolicyRelPath = "packaging/systemd/org.jailkeeper.conf"

// RepoRoot returns the root of the jailkeeper source tree, found by walking
// up from the working directory to the go.mod declaring ModulePath.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repo root: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module "+ModulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("finding repo root: no go.mod for %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

// Bus is a private system bus: a dbus-daemon of type system listening on
// a socket in a temporary directory, with the project's policy file.
type Bus struct {
	Dir     string // holds the config and the socket
	Socket  string // path of the listening socket
	Address string // "unix:path=…", for DBUS_SYSTEM_BUS_ADDRESS
	Policy  string // the policy file included
	PID     int
}

// Env returns the environment entry pointing system-bus clients at b.
func (b *Bus) Env() string { return "DBUS_SYSTEM_BUS_ADDRESS=" + b.Address }

// busConfig is the system bus configuration of Debian's system.conf,
// reduced to what a private bus needs: EXTERNAL auth on one unix socket,
// the default deny policy, and the project's policy file.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <include ignore_missing="no">%s</include>
%s</busconfig>
`

// PolicyFile returns the path of the project's bus policy,
// packaging/systemd/org.jailkeeper.conf.
func PolicyFile(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, PolicyRelPath)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("bus policy: %v", err)
	}
	return p
}

// NewBus starts a private system bus including the project's policy
// (PolicyFile) and stops it by PID at cleanup.
func NewBus(t testing.TB) *Bus {
	t.Helper()
	return NewBusWithPolicy(t, PolicyFile(t))
}

// NewBusWithPolicy starts a private system bus including the given policy
// file and stops it by PID at cleanup.
func NewBusWithPolicy(t testing.TB, policy string) *Bus {
	t.Helper()
	return newBus(t, policy, "")
}

// NewBusWithMaxMessage starts a private system bus like NewBus whose
// max_message_size is n bytes: dbus-daemon disconnects a peer that sends
// a larger message (and refuses a larger call to it).
func NewBusWithMaxMessage(t testing.TB, n int) *Bus {
	t.Helper()
	return newBus(t, PolicyFile(t), fmt.Sprintf("  <limit name=\"max_message_size\">%d</limit>\n", n))
}

// newBus starts a private system bus including policy, with extra
// configuration elements.
func newBus(t testing.TB, policy, extra string) *Bus {
	t.Helper()
	Require(t, "dbus-daemon")
	dir := busDir(t)
	b := &Bus{Dir: dir, Socket: filepath.Join(dir, "system_bus_socket"), Policy: policy}
	b.Address = "unix:path=" + b.Socket
	conf := filepath.Join(dir, "system.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConfig, b.Socket, policy, extra)), 0o644); err != nil {
		t.Fatalf("writing bus config: %v", err)
	}
	b.start(t)
	return b
}

// Restart stops the bus's dbus-daemon (every connection to it is lost)
// and starts a new one on the same socket and configuration, as a
// `systemctl restart dbus` would.
func (b *Bus) Restart(t testing.TB) {
	t.Helper()
	stopPID(b.PID, 3*time.Second)
	_ = os.Remove(b.Socket)
	b.start(t)
}

// start runs dbus-daemon on b's configuration and stops it at cleanup.
func (b *Bus) start(t testing.TB) {
	t.Helper()
	conf := filepath.Join(b.Dir, "system.conf")
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--fork", "--print-pid=1", "--print-address=1", "--nosyslog")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("starting dbus-daemon: %v\n%s", err, out)
	}
	var addr, pidLine string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "unix:"):
			addr = l
		case l != "":
			pidLine = l
		}
	}
	pid, err := strconv.Atoi(pidLine)
	if err != nil {
		t.Fatalf("dbus-daemon printed %q, want an address and a pid: %v", out, err)
	}
	b.PID = pid
	t.Cleanup(func() { stopPID(pid, 3*time.Second) })
	if !strings.HasPrefix(addr, b.Address) {
		t.Fatalf("dbus-daemon listens on %q, want %s", addr, b.Address)
	}
}

// busDir returns a short temporary directory for the bus socket (unix
// socket paths are limited to 108 bytes, and t.TempDir paths can be long),
// readable by every user so that unprivileged clients can connect.
func busDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jk-bus-")
	if err != nil {
		t.Fatalf("creating bus dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod bus dir: %v", err)
	}
	return dir
}

// stopPID sends SIGTERM to pid (a process this run started), then SIGKILL
// after grace, and waits for it to disappear.
func stopPID(pid int, grace time.Duration) {
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(grace)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BusCall runs `busctl call org.jailkeeper /org/jailkeeper
// org.jailkeeper.Manager1 METHOD SIG ARGS…` on b as root and returns its
// combined output and error.
func (b *Bus) BusCall(method, sig string, args ...string) (string, error) {
	return b.BusCallAs("", method, sig, args...)
}

// BusCallAs is BusCall run as the named user (through setpriv, with no
// supplementary groups); an empty user means root.
func (b *Bus) BusCallAs(user, method, sig string, args ...string) (string, error) {
	argv := []string{"busctl", "call", "org.jailkeeper", "/org/jailkeeper", "org.jailkeeper.Manager1", method}
	if sig != "" {
		argv = append(argv, sig)
		argv = append(argv, args...)
	}
	if user != "" {
		argv = append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--clear-groups"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), b.Env())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// BusSendAs calls org.jailkeeper.Manager1.METHOD with dbus-send as the
// named user (empty: root). Unlike busctl, dbus-send prints the error's
// name and message, which tells a refusal by the bus's policy
// ("org.freedesktop.DBus.Error.AccessDenied: Rejected send message, …")
// from one by the daemon. args are dbus-send typed arguments such as
// "string:198.51.100.2".
func (b *Bus) BusSendAs(user, method string, args ...string) (string, error) {
	argv := append([]string{"dbus-send", "--system", "--print-reply", "--dest=org.jailkeeper",
		"/org/jailkeeper", "org.jailkeeper.Manager1." + method}, args...)
	if user != "" {
		argv = append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--clear-groups"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), b.Env())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// RefusedByBus reports whether dbus-send output shows the bus's policy
// refusing a call (as opposed to the service answering with an error).
func RefusedByBus(out string) bool {
	return strings.Contains(out, "org.freedesktop.DBus.Error.AccessDenied") && strings.Contains(out, "Rejected send message")
}
