package dbusapi

import (
	"encoding/xml"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

func TestJailPath(t *testing.T) {
	for name, want := range map[string]dbus.ObjectPath{
		"sshd":     "/org/jailkeeper/jail/sshd",
		"my-jail":  "/org/jailkeeper/jail/my_2djail",
		"a_b":      "/org/jailkeeper/jail/a_5fb",
		"9lives":   "/org/jailkeeper/jail/_39lives",
		"postfix2": "/org/jailkeeper/jail/postfix2",
		"":         "/org/jailkeeper/jail/_",
	} {
		if got := JailPath(name); got != want || !got.IsValid() {
			t.Errorf("JailPath(%q) = %s (valid %v), want %s", name, got, got.IsValid(), want)
		}
	}
}

// memModel is a memManager that also describes its jails (Model) and
// announces its bans as the daemon does.
type memModel struct {
	*memManager
	srv   *Server
	mu    sync.Mutex
	names []string
}

func (m *memModel) Backend() string { return "nftables" }

func (m *memModel) JailInfos() []JailInfo {
	m.mu.Lock()
	names := slices.Clone(m.names)
	m.mu.Unlock()
	m.memManager.mu.Lock()
	defer m.memManager.mu.Unlock()
	var out []JailInfo
	for _, n := range names {
		out = append(out, JailInfo{Name: n, Units: []string{n + ".service"}, Filter: n, MaxRetry: 5, FindTime: 600, BanTime: -1,
			CurrentlyBanned: uint32(len(m.bans[n])), TotalFailed: 7})
	}
	return out
}

func (m *memModel) FailureCounts() map[string][2]uint32 {
	out := map[string][2]uint32{}
	for _, ji := range m.JailInfos() {
		out[ji.Name] = [2]uint32{ji.CurrentlyFailed, ji.TotalFailed}
	}
	return out
}

func (m *memModel) Ban(jail string, ps []netip.Prefix, d time.Duration) (int, error) {
	n, err := m.memManager.Ban(jail, ps, d)
	if err == nil && m.srv != nil {
		for _, p := range ps {
			m.srv.Banned(jail, p, time.Time{}, "test")
		}
	}
	return n, err
}

func (m *memModel) DaemonMetrics() DaemonMetrics {
	return DaemonMetrics{JournalEntriesRead: 42, JournalLag: 250 * time.Millisecond, LastVerify: time.Unix(1795955900, 0), LastVerifyOK: true, FirewallRepairs: 3}
}

func (m *memModel) setJails(names ...string) {
	m.mu.Lock()
	m.names = names
	m.mu.Unlock()
}

// TestObjectModel serves the object model on a private dbus-daemon with
// the project's policy and reads it as Cockpit and busctl do: properties,
// managed objects, introspection, a jail's methods, coalesced
// PropertiesChanged, and objects that come and go on reload.
func TestObjectModel(t *testing.T) {
	testbed.Require(t, "dbus-daemon", "busctl", "setpriv")
	bus := testbed.NewBus(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := &memModel{memManager: &memManager{bans: map[string]map[netip.Prefix]time.Duration{"sshd": {}, "my-web": {}}}}
	m.setJails("sshd", "my-web")
	srv, err := Serve(conn, m)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetVersion("1.2.3")
	m.srv = srv

	cl, err := dbus.ConnectSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	mgr := cl.Object(BusName, Path)
	sshd := cl.Object(BusName, JailPath("sshd"))

	// Introspection: well-formed, with the properties and the subtree.
	var doc string
	if err := mgr.Call(introspectIface+".Introspect", 0).Store(&doc); err != nil {
		t.Fatal(err)
	}
	checkIntrospection(t, doc)
	for _, want := range []string{`<property name="Jails" type="ao"`, objMgrInterface, `<node name="jail"/>`} {
		if !strings.Contains(doc, want) {
			t.Errorf("manager introspection lacks %s", want)
		}
	}
	if err := cl.Object(BusName, JailRoot).Call(introspectIface+".Introspect", 0).Store(&doc); err != nil {
		t.Fatal(err)
	}
	var root introspect.Node
	if err := xml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatalf("jail root introspection: %v", err)
	}
	var kids []string
	for _, c := range root.Children {
		kids = append(kids, c.Name)
	}
	if !slices.Equal(kids, []string{"my_2dweb", "sshd"}) {
		t.Errorf("jail root children = %v", kids)
	}
	if err := sshd.Call(introspectIface+".Introspect", 0).Store(&doc); err != nil {
		t.Fatal(err)
	}
	var jn introspect.Node
	if err := xml.Unmarshal([]byte(doc), &jn); err != nil || len(jn.Interfaces) == 0 || jn.Interfaces[0].Name != JailInterface || len(jn.Interfaces[0].Properties) != 11 {
		t.Fatalf("jail introspection: %v %+v", err, jn.Interfaces)
	}

	// Manager1's properties, read by anyone (busctl as nobody).
	var props map[string]dbus.Variant
	if err := mgr.Call(propsInterface+".GetAll", 0, Interface).Store(&props); err != nil {
		t.Fatal(err)
	}
	if props["Version"].Value() != "1.2.3" || props["Backend"].Value() != "nftables" ||
		!slices.Equal(props["Jails"].Value().([]dbus.ObjectPath), []dbus.ObjectPath{JailPath("my-web"), JailPath("sshd")}) {
		t.Fatalf("Manager1 properties = %v", props)
	}
	if props["JournalEntriesRead"].Value() != uint64(42) || props["JournalLagSeconds"].Value() != 0.25 || props["LastVerifyTime"].Value() != int64(1795955900) ||
		props["LastVerifyOK"].Value() != true || props["FirewallRepairs"].Value() != uint64(3) {
		t.Fatalf("Manager1 metrics properties = %v", props)
	}
	out, err := busctlAs(bus, "65534", "get-property", "org.jailkeeper", string(JailPath("sshd")), JailInterface, "BanTime")
	if err != nil || strings.TrimSpace(out) != "x -1" {
		t.Fatalf("nobody get-property BanTime = %q, %v", out, err)
	}
	if err := sshd.Call(propsInterface+".Set", 0, JailInterface, "MaxRetry", dbus.MakeVariant(uint32(1))).Err; err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("Set MaxRetry: %v", err)
	}

	var managed map[dbus.ObjectPath]map[string]map[string]dbus.Variant
	if err := mgr.Call(objMgrInterface+".GetManagedObjects", 0).Store(&managed); err != nil {
		t.Fatal(err)
	}
	if len(managed) != 2 || managed[JailPath("my-web")][JailInterface]["Name"].Value() != "my-web" {
		t.Fatalf("GetManagedObjects = %v", managed)
	}

	// Signals of the object model.
	sc, err := dbus.ConnectSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for _, iface := range []string{propsInterface, objMgrInterface} {
		if err := sc.AddMatchSignal(dbus.WithMatchSender(BusName), dbus.WithMatchInterface(iface)); err != nil {
			t.Fatal(err)
		}
	}
	sigs := make(chan *dbus.Signal, 1000)
	sc.Signal(sigs)

	// A jail's Ban: refused for nobody with the daemon's text, done for
	// root; a burst of 300 bans gives a handful of PropertiesChanged.
	out, err = busctlAs(bus, "65534", "call", "org.jailkeeper", string(JailPath("sshd")), JailInterface, "Ban", "st", "203.0.113.5", "0")
	if err == nil || !strings.Contains(out, "may not change bans") {
		t.Fatalf("nobody Jail1.Ban = %q, %v", out, err)
	}
	start := time.Now()
	for i := 0; i < 300; i++ {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 256)})
		if i >= 256 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		}
		if err := sshd.Call(JailInterface+".Ban", 0, a.String(), uint64(60)).Err; err != nil {
			t.Fatalf("Jail1.Ban %s: %v", a, err)
		}
	}
	burst := time.Since(start)
	var changes int
	var last uint32
	deadline := time.After(burst + 2500*time.Millisecond)
wait:
	for {
		select {
		case s := <-sigs:
			if s.Path == JailPath("sshd") && s.Name == propsInterface+".PropertiesChanged" {
				changes++
				if v, ok := s.Body[1].(map[string]dbus.Variant)["CurrentlyBanned"]; ok {
					last = v.Value().(uint32)
				}
			}
		case <-deadline:
			break wait
		}
	}
	if last != 300 {
		t.Fatalf("last CurrentlyBanned signalled = %d, want 300", last)
	}
	if max := int((burst+2500*time.Millisecond)/defaultCoalesce) + 1; changes > max {
		t.Fatalf("%d PropertiesChanged for 300 bans in %v; want at most %d (coalesced)", changes, burst, max)
	}
	t.Logf("300 bans in %v: %d PropertiesChanged on the jail", burst, changes)
	var bans []BanInfo
	if err := sshd.Call(JailInterface+".ListBans", 0).Store(&bans); err != nil {
		t.Fatal(err)
	}
	var hist []HistoryEntry
	var histTotal uint32
	if err := sshd.Call(JailInterface+".ListHistory", 0, uint32(2), uint32(10)).Store(&hist, &histTotal); err != nil ||
		len(hist) != 1 || histTotal != 7 || m.lastHistory() != fmt.Sprint("sshd", 2, 10) {
		t.Fatalf("Jail1.ListHistory(2, 10) = %+v, %d, %v (manager got %q)", hist, histTotal, err, m.lastHistory())
	}
	var removed uint32
	if err := sshd.Call(JailInterface+".Unban", 0, "203.0.113.5").Store(&removed); err != nil || removed != 1 {
		t.Fatalf("Jail1.Unban = %d, %v", removed, err)
	}

	// Reload: a jail vanishes, another appears.
	m.memManager.mu.Lock()
	m.bans["ftp"] = map[netip.Prefix]time.Duration{}
	m.memManager.mu.Unlock()
	m.setJails("sshd", "ftp")
	if err := mgr.Call(Interface+".Reload", 0).Err; err != nil {
		t.Fatal(err)
	}
	var gotAdded, gotRemoved, gotJails bool
	timeout := time.After(3 * time.Second)
	for !(gotAdded && gotRemoved && gotJails) {
		select {
		case s := <-sigs:
			switch {
			case s.Name == objMgrInterface+".InterfacesAdded" && s.Body[0] == JailPath("ftp"):
				gotAdded = true
			case s.Name == objMgrInterface+".InterfacesRemoved" && s.Body[0] == JailPath("my-web"):
				gotRemoved = true
			case s.Path == Path && s.Name == propsInterface+".PropertiesChanged":
				if v, ok := s.Body[1].(map[string]dbus.Variant)["Jails"]; ok {
					gotJails = slices.Equal(v.Value().([]dbus.ObjectPath), []dbus.ObjectPath{JailPath("ftp"), JailPath("sshd")})
				}
			}
		case <-timeout:
			t.Fatalf("after reload: InterfacesAdded %v, InterfacesRemoved %v, Jails changed %v", gotAdded, gotRemoved, gotJails)
		}
	}
	if err := cl.Object(BusName, JailPath("my-web")).Call(propsInterface+".GetAll", 0, JailInterface).Err; err == nil {
		t.Fatal("a removed jail's object still answers")
	}

	// The Go client reads the whole model.
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	di, infos, err := c.Objects()
	if err != nil || di.Version != "1.2.3" || di.Backend != "nftables" || di.CurrentlyBanned != 299 || len(infos) != 2 ||
		infos[0].Name != "ftp" || infos[1].Name != "sshd" || infos[1].CurrentlyBanned != 299 || infos[1].BanTime != -1 || infos[1].Units[0] != "sshd.service" {
		t.Fatalf("Objects = %+v, %+v, %v", di, infos, err)
	}
	if m := di.Metrics; m == nil || m.JournalEntriesRead != 42 || m.JournalLag != 250*time.Millisecond || !m.LastVerify.Equal(time.Unix(1795955900, 0)) || !m.LastVerifyOK || m.FirewallRepairs != 3 {
		t.Fatalf("Objects' metrics = %+v", m)
	}

	// A reload the bus did not carry (SIGHUP) shows within a second or
	// two: the counters read every second name other jails.
	m.setJails("sshd")
	timeout = time.After(3 * time.Second)
	for gotRemoved = false; !gotRemoved; {
		select {
		case s := <-sigs:
			gotRemoved = s.Name == objMgrInterface+".InterfacesRemoved" && s.Body[0] == JailPath("ftp")
		case <-timeout:
			t.Fatal("no InterfacesRemoved of ftp after a reload without a D-Bus call")
		}
	}
}

func busctlAs(bus *testbed.Bus, user string, args ...string) (string, error) {
	argv := append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--clear-groups", "busctl"}, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), bus.Env())
	out, err := cmd.CombinedOutput()
	return string(out), err
}
