package dbusapi

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

// listenerEnv makes the test binary a signal listener (TestMain): it
// prints "listening", then one line per signal org.jailkeeper sends, until
// its stdin closes.
const listenerEnv = "JK_TEST_SIGNAL_LISTENER"

func TestMain(m *testing.M) {
	if os.Getenv(listenerEnv) != "" {
		os.Exit(listenSignals())
	}
	os.Exit(m.Run())
}

func listenSignals() int {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		return 1
	}
	defer conn.Close()
	if err := conn.AddMatchSignal(dbus.WithMatchSender(BusName)); err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		return 1
	}
	sigs := make(chan *dbus.Signal, 64)
	conn.Signal(sigs)
	fmt.Println("listening")
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	for {
		select {
		case <-eof:
			return 0
		case s := <-sigs:
			fmt.Printf("%s %s %q\n", s.Name, s.Path, fmt.Sprintf("%v", s.Body))
		}
	}
}

// A ban reason as the jails' engine writes it, with a user name that is
// in truth a password typed into the user field.
var (
	secretUser   = `hunter2 "my dog's name"`
	secretReason = fmt.Sprintf("5 failures within 10m0s, last for user %q", jails.ReasonUser(secretUser))
)

// TestBannedSignalHidesUsers: whatever reason the keeper hands over,
// the Banned signal carries it with the user names hidden, exactly as a
// reply to a caller other than root shows it.
func TestBannedSignalHidesUsers(t *testing.T) {
	long := strings.Repeat("x", 2*jails.MaxReasonUser) + "secret"
	for _, reason := range []string{
		secretReason,
		fmt.Sprintf("distributed attack on user %q: 5 addresses within 1h0m0s, 2 failures from this one", jails.ReasonUser(secretUser)),
		fmt.Sprintf("3 failures within 10m0s, last for user %q", jails.ReasonUser(long)),
		fmt.Sprintf("3 failures within 10m0s, last for user %q", "é\x00\\\"secret"),
		`3 failures, last for user "secret cut short…`,
		"banned by an administrator",
		"fleet: sshd on web1",
	} {
		s := &Server{sigs: make(chan signal, 1)}
		if err := s.Banned("sshd", netip.MustParsePrefix("203.0.113.5/32"), time.Time{}, reason); err != nil {
			t.Fatal(err)
		}
		sig := <-s.sigs
		got, _ := sig.body[3].(string)
		if sig.member != "Banned" || len(sig.body) != 4 || got != HideUsers(reason) {
			t.Errorf("Banned(%q) sent %s %q; want the reason %q", reason, sig.member, sig.body, HideUsers(reason))
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "hunter2") || strings.Contains(got, long[:16]) {
			t.Errorf("Banned(%q) sent the reason %q: a user name got through", reason, got)
		}
		if strings.Contains(reason, "user ") && !strings.Contains(got, "user (hidden)") {
			t.Errorf("Banned(%q) sent the reason %q; want user (hidden)", reason, got)
		}
	}
}

// TestSignalsToNobody: a listener running as nobody on a real bus
// receives the Banned signal with the user name hidden (and no other
// signal of the daemon's carries it: properties, objects), while root's
// ListBansPage still shows the name and nobody's hides it.
func TestSignalsToNobody(t *testing.T) {
	testbed.Require(t, "dbus-daemon", "busctl", "setpriv")
	bus := testbed.NewBus(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := &memModel{memManager: &memManager{bans: map[string]map[netip.Prefix]time.Duration{"sshd": {}, "web": {}}}, names: []string{"sshd"}}
	srv, err := Serve(conn, m)
	if err != nil {
		t.Fatal(err)
	}
	m.srv = srv

	lines := startListener(t, bus, "65534")

	// A ban announced as the keeper does, one through the method, and a
	// jail added (InterfacesAdded) and counters changed (PropertiesChanged).
	if err := srv.Banned("sshd", netip.MustParsePrefix("203.0.113.5/32"), time.Time{}, secretReason); err != nil {
		t.Fatal(err)
	}
	if out, err := bus.BusCall("Ban", "sst", "sshd", "203.0.113.6", "600"); err != nil {
		t.Fatalf("busctl Ban: %v\n%s", err, out)
	}
	m.mu.Lock()
	m.names = append(m.names, "web")
	m.mu.Unlock()
	srv.touch()

	var banned string
	seen := map[string]bool{}
	deadline := time.After(20 * time.Second)
	for !(banned != "" && seen["InterfacesAdded"] && seen["PropertiesChanged"]) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the listener ended; seen %v", seen)
			}
			if strings.Contains(l, "hunter2") || strings.Contains(l, "my dog") {
				t.Errorf("nobody received %s", l)
			}
			name, _, _ := strings.Cut(l, " ")
			name = name[strings.LastIndexByte(name, '.')+1:]
			seen[name] = true
			if name == "Banned" && strings.Contains(l, "203.0.113.5") {
				banned = l
			}
		case <-deadline:
			t.Fatalf("after 20 s nobody has seen %v (Banned of 203.0.113.5: %q); want Banned, InterfacesAdded, PropertiesChanged", seen, banned)
		}
	}
	if !strings.Contains(banned, `last for user (hidden)`) {
		t.Errorf("nobody's Banned signal is %s; want the reason with user (hidden)", banned)
	}

	if out, err := bus.BusCall("ListBansPage", "uu", "0", "10"); err != nil || !strings.Contains(out, "hunter2") {
		t.Errorf("root ListBansPage = %q, %v; want the user name", out, err)
	}
	if out, err := bus.BusCallAs("65534", "ListBansPage", "uu", "0", "10"); err != nil || strings.Contains(out, "hunter2") || !strings.Contains(out, "user (hidden)") {
		t.Errorf("nobody ListBansPage = %q, %v; want the user name hidden", out, err)
	}
}

// startListener runs this test binary as user (listenerEnv) on bus and
// returns its lines after "listening"; the channel closes when it ends.
func startListener(t *testing.T, bus *testbed.Bus, user string) <-chan string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's directory is root's: copy it where user can run it.
	dir, err := os.MkdirTemp("", "jk-listener-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "listener")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--reuid="+user, "--regid="+user, "--clear-groups", bin)
	cmd.Env = append(os.Environ(), bus.Env(), listenerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	r := bufio.NewReader(out)
	first := make(chan error, 1)
	go func() {
		l, err := r.ReadString('\n')
		if err == nil && l != "listening\n" {
			err = fmt.Errorf("said %q", l)
		}
		first <- err
	}()
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("the listener as %s: %v", user, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the listener as %s did not start in 20 s", user)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- strings.TrimSuffix(l, "\n")
		}
	}()
	return lines
}
