package faults

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// floodEnv makes the test binary a flooder (see flood): its value is the
// bus socket path.
const floodEnv = "JK_FAULTS_FLOOD"

// flood is the hostile local user: it opens floodConns
// connections to the bus and sends each floodCalls cheap calls to
// jailkeeper (ListBansPage, Status, Introspect) without ever reading a reply,
// then holds the connections open until killed.
func flood() int {
	path := os.Getenv(floodEnv)
	for c := 0; c < floodConns; c++ {
		conn, err := net.Dial("unix", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "flood: dial:", err)
			return 1
		}
		held = append(held, conn)
		if err := auth(conn); err != nil {
			fmt.Fprintln(os.Stderr, "flood: auth:", err)
			return 1
		}
		serial := uint32(1)
		send := func(dest, path, iface, member string) error {
			m := &dbus.Message{Type: dbus.TypeMethodCall, Headers: map[dbus.HeaderField]dbus.Variant{
				dbus.FieldDestination: dbus.MakeVariant(dest),
				dbus.FieldPath:        dbus.MakeVariant(dbus.ObjectPath(path)),
				dbus.FieldInterface:   dbus.MakeVariant(iface),
				dbus.FieldMember:      dbus.MakeVariant(member),
			}}
			switch member {
			case "Status":
				m.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(""))
				m.Body = []any{""}
			case "ListBansPage":
				m.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(uint32(0), uint32(0)))
				m.Body = []any{uint32(0), uint32(0)}
			}
			serial++
			var buf bytes.Buffer
			if err := m.EncodeTo(&buf, binary.LittleEndian); err != nil {
				return err
			}
			raw := buf.Bytes()
			binary.LittleEndian.PutUint32(raw[8:12], serial) // godbus leaves it 0
			_, err := conn.Write(raw)
			return err
		}
		if err := send("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello"); err != nil {
			fmt.Fprintln(os.Stderr, "flood: hello:", err)
			return 1
		}
		go func() {
			for i := 0; i < floodCalls; i++ {
				var err error
				switch i % 6 {
				case 0:
					err = send("org.jailkeeper", "/org/jailkeeper", "org.jailkeeper.Manager1", "ListBansPage")
				case 1:
					err = send("org.jailkeeper", "/org/jailkeeper", "org.freedesktop.DBus.Introspectable", "Introspect")
				case 2:
					err = send("org.jailkeeper", "/org/jailkeeper", "org.jailkeeper.Manager1", "Status")
				default:
					err = send("org.jailkeeper", "/org/jailkeeper", "org.jailkeeper.Manager1", "ListBansPage")
				}
				if err != nil {
					return // the bus gave up on us
				}
			}
		}()
	}
	fmt.Println("flooding")
	select {}
}

// held keeps the flooder's connections from being collected (and closed)
// once their goroutines have sent everything.
var held []net.Conn

const (
	floodConns = 4
	floodCalls = 600
)

// auth does the EXTERNAL authentication (the uid is the socket's own) and
// reads nothing after it.
func auth(c net.Conn) error {
	uid := hex.EncodeToString([]byte(strconv.Itoa(os.Getuid())))
	if _, err := io.WriteString(c, "\x00AUTH EXTERNAL "+uid+"\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(io.LimitReader(c, 512)).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "OK ") {
		return fmt.Errorf("bus said %q: %v", line, err)
	}
	_, err = io.WriteString(c, "BEGIN\r\n")
	return err
}

// startFlood runs the flooder as an unprivileged user and stops it at
// cleanup.
func startFlood(t *testing.T, socket, user string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's directory is root's: copy it where the user can
	// run it.
	dir, err := os.MkdirTemp("", "jk-flood-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "flood")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--reuid="+user, "--regid="+user, "--clear-groups", bin)
	cmd.Env = append(os.Environ(), floodEnv+"="+socket)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "flooding\n" {
		t.Fatalf("flooder said %q: %v", line, err)
	}
}

// TestUnreadReplyFlood: an unprivileged user floods the API
// with calls and never reads the replies. A new attacker must still be
// banned at once, WATCHDOG=1 must keep coming, and root's `jailkeeper
// status` must answer.
func TestUnreadReplyFlood(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	uid := ensureUser(t)
	// 20,000 bans make every ListBansPage reply (4,096 bans) about 300 KB:
	// some 400 unread ones fill the 127 MB dbus-daemon holds for a peer.
	var sb strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&sb, "10.%d.%d.%d\n", i>>16, (i>>8)&255, i&255)
	}
	cmd := exec.Command(b.d.Bin, "ban", "sshd", "-")
	cmd.Env = append(os.Environ(), b.d.Bus.Env())
	cmd.Stdin = strings.NewReader(sb.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("loading 20000 bans: %v\n%s", err, out)
	}
	since := time.Now()
	startFlood(t, b.d.Bus.Socket, uid)
	time.Sleep(3 * time.Second) // the queues fill

	// Bans go on, announced or not.
	for i, a := range []string{"203.0.113.21", "203.0.113.22", "203.0.113.23"} {
		b.fail(t, a, 3)
		took := b.waitBanned(t, a, banTimeout)
		t.Logf("attacker %d banned %v after its failures, during the flood", i+1, took.Round(time.Millisecond))
		time.Sleep(time.Second)
	}
	// Root's status answers (after a reconnect, if the bus stopped reading
	// from the daemon).
	deadline := time.Now().Add(30 * time.Second)
	for {
		start := time.Now()
		// With more than 10,000 bans, status gives counts, not the list:
		// the 20,000 loaded and the three attackers.
		out, err := b.cli("status", "sshd", "--json")
		if err == nil && strings.Contains(out, `"currently_banned":20003,`) {
			t.Logf("root's status answered in %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("root's status during the flood: %q, %v", out, err)
		}
		time.Sleep(time.Second)
	}
	b.checkWatchdog(t, since)
	if !b.d.Running() {
		t.Fatal("the daemon died under the flood")
	}
}

func ensureUser(t *testing.T) string {
	t.Helper()
	return testbed.EnsureUser(t, unprivUser)
}
