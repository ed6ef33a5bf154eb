package dbusapi

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// memManager is an in-memory Manager for the bus tests.
type memManager struct {
	mu      sync.Mutex
	bans    map[string]map[netip.Prefix]time.Duration
	reload  int
	reason  string // the last BanFrom's reason/origin
	history string // the last ListHistory's arguments
}

func (m *memManager) Ban(jail string, ps []netip.Prefix, d time.Duration) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bans[jail] == nil {
		return 0, fmt.Errorf("%w %q", ErrUnknownJail, jail)
	}
	for _, p := range ps {
		if p.Contains(netip.MustParseAddr("198.51.100.3")) {
			return 0, fmt.Errorf("%w: %s", ErrWhitelisted, p)
		}
	}
	for _, p := range ps {
		m.bans[jail][p] = d
	}
	return len(ps), nil
}

func (m *memManager) BanFrom(jail string, ps []netip.Prefix, d time.Duration, reason, origin string) (int, []netip.Prefix, error) {
	var keep, skipped []netip.Prefix
	for _, p := range ps {
		if p.Contains(netip.MustParseAddr("198.51.100.3")) {
			skipped = append(skipped, p)
		} else {
			keep = append(keep, p)
		}
	}
	n, err := m.Ban(jail, keep, d)
	m.mu.Lock()
	m.reason = reason + "/" + origin
	m.mu.Unlock()
	return n, skipped, err
}

func (m *memManager) Unban(jail string, p netip.Prefix) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for j, set := range m.bans {
		if jail != "" && j != jail {
			continue
		}
		if _, ok := set[p]; ok {
			delete(set, p)
			n++
		}
	}
	return n, nil
}

func (m *memManager) Status(jail string) ([]JailStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []JailStatus
	for _, j := range []string{"sshd", "web"} {
		if jail != "" && jail != j {
			continue
		}
		st := JailStatus{Name: j, TotalFailed: 7, Banned: []string{}}
		for p := range m.bans[j] {
			st.Banned = append(st.Banned, p.String())
		}
		st.CurrentlyBanned = uint32(len(st.Banned))
		out = append(out, st)
	}
	if out == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownJail, jail)
	}
	return out, nil
}

func (m *memManager) get(jail string, p string) (time.Duration, int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bans[jail][netip.MustParsePrefix(p)], len(m.bans[jail]), m.reload
}

func (m *memManager) ListBans() []BanInfo {
	return []BanInfo{{Jail: "sshd", Prefix: "203.0.113.5", Start: 1, Reason: `5 failures within 10m0s, last for user "hunter2 \"x"`}}
}

func (m *memManager) ListBansPage(offset, limit int) ([]BanInfo, int) {
	all := m.ListBans()
	b := all[min(offset, len(all)):]
	if limit > 0 {
		b = b[:min(limit, len(b))]
	}
	return b, len(all)
}

func (m *memManager) ListHistory(jail string, offset, limit int) ([]HistoryEntry, int, error) {
	m.mu.Lock()
	m.history = fmt.Sprint(jail, offset, limit)
	m.mu.Unlock()
	return []HistoryEntry{{Time: 1, Kind: "ban", Jail: "sshd", Prefix: "203.0.113.5", Count: 1, Expires: 2,
		Reason: `5 failures within 10m0s, last for user "hunter2"`, Origin: "journal"}}, 7, nil
}

// lastHistory returns the last ListHistory's arguments.
func (m *memManager) lastHistory() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.history
}

func (m *memManager) UnbanAll(jail string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.bans[jail])
	delete(m.bans, jail)
	return n, nil
}

func (m *memManager) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reload++
	return nil
}

func TestParsePrefix(t *testing.T) {
	good := map[string]string{
		"203.0.113.7": "203.0.113.7/32", "2001:db8::1": "2001:db8::1/128", "::ffff:203.0.113.9": "203.0.113.9/32",
		"203.0.113.0/24": "203.0.113.0/24", "2001:db8::1/64": "2001:db8::/64", "fe80::1%eth0": "fe80::1/128",
	}
	for in, want := range good {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "203.0.113.300", "example.com", "1.2.3.4/33", "203.0.113.7 "} {
		if _, err := ParsePrefix(bad); err == nil {
			t.Errorf("ParsePrefix(%q) accepted", bad)
		}
	}
}

// TestOnRealBus runs the service on a private dbus-daemon with the
// project's policy file and calls it with busctl, as root and as an
// unprivileged user, and with the Go client.
func TestOnRealBus(t *testing.T) {
	testbed.Require(t, "dbus-daemon", "busctl", "setpriv")
	bus := testbed.NewBus(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := &memManager{bans: map[string]map[netip.Prefix]time.Duration{"sshd": {}, "web": {}}}
	srv, err := Serve(conn, m)
	if err != nil {
		t.Fatal(err)
	}

	// A second service on the same bus must not take the name.
	conn2, err := dbus.ConnectSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if _, err := Serve(conn2, m); err == nil || !strings.Contains(err.Error(), "already owned") {
		t.Fatalf("second Serve err = %v, want already owned", err)
	}

	// Introspection and Peer, as a client on the bus sees them.
	obj := conn2.Object(BusName, Path)
	var doc string
	if err := obj.Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&doc); err != nil {
		t.Fatalf("Introspect: %v", err)
	}
	checkIntrospection(t, doc)
	if err := obj.Call("org.freedesktop.DBus.Peer.Ping", 0).Err; err != nil {
		t.Errorf("Peer.Ping: %v", err)
	}

	// Signals reach a subscriber.
	sigConn, err := dbus.ConnectSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	defer sigConn.Close()
	if err := sigConn.AddMatchSignal(dbus.WithMatchInterface(Interface)); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 4)
	sigConn.Signal(sigs)

	out, err := bus.BusCall("Ban", "sst", "sshd", "203.0.113.7", "600")
	if err != nil {
		t.Fatalf("busctl Ban: %v\n%s", err, out)
	}
	if d, _, _ := m.get("sshd", "203.0.113.7/32"); d != 10*time.Minute {
		t.Fatalf("manager got duration %v, want 10m", d)
	}
	// BanFrom skips and reports the whitelisted address, bans the rest.
	out, err = bus.BusCall("BanFrom", "sastss", "sshd", "2", "203.0.113.20", "198.51.100.3", "600", "fleet: sshd on web1", "web1")
	if err != nil || strings.TrimSpace(out) != `uas 1 1 "198.51.100.3"` {
		t.Fatalf("busctl BanFrom = %q, %v; want u 1 as 1 \"198.51.100.3\"", out, err)
	}
	if d, _, _ := m.get("sshd", "203.0.113.20/32"); d != 10*time.Minute || m.reason != "fleet: sshd on web1/web1" {
		t.Fatalf("BanFrom: manager got %v, reason/origin %q", d, m.reason)
	}
	if out, err := bus.BusCall("BanFrom", "sastss", "sshd", "1", "203.0.113.21", "0", "x", "web.1"); err == nil || !strings.Contains(out, "bad origin") {
		t.Fatalf("a bad origin accepted: %q %v", out, err)
	}
	if out, err := bus.BusCall("UnbanJail", "ss", "sshd", "203.0.113.20"); err != nil {
		t.Fatalf("busctl UnbanJail: %v\n%s", err, out)
	}
	out, err = bus.BusCall("Unban", "s", "203.0.113.7")
	if err != nil || strings.TrimSpace(out) != "u 1" {
		t.Fatalf("busctl Unban = %q, %v; want u 1", out, err)
	}
	if out, err := bus.BusCall("Ban", "sst", "sshd", "not-an-ip", "0"); err == nil || !strings.Contains(out, "not an IPv4/IPv6 address") {
		t.Fatalf("bad address accepted: %q %v", out, err)
	}
	// 99999999999w in seconds: a range error, not a permanent ban.
	if out, err := bus.BusCall("Ban", "sst", "sshd", "203.0.113.9", "60479999999395200"); err == nil || !strings.Contains(out, "out of range") {
		t.Fatalf("a huge duration accepted: %q %v", out, err)
	}
	if _, n, _ := m.get("sshd", "203.0.113.9/32"); n != 0 {
		t.Fatalf("a ban of a refused duration reached the manager")
	}
	if out, err := bus.BusCall("Ban", "sst", "nosuch", "203.0.113.7", "0"); err == nil || !strings.Contains(out, "unknown jail") {
		t.Fatalf("unknown jail accepted: %q %v", out, err)
	}

	// Unprivileged: the bus policy lets the changing calls through to the
	// daemon, which refuses them (no polkit on this bus); reading is open.
	for _, call := range [][]string{{"Ban", "sst", "sshd", "203.0.113.8", "0"}, {"BanFrom", "sastss", "sshd", "1", "203.0.113.8", "0", "x", "web1"}, {"Unban", "s", "203.0.113.8"}, {"Reload", ""}} {
		out, err := bus.BusCallAs("65534", call[0], call[1], call[2:]...)
		if err == nil || testbed.RefusedByBus(out) || !strings.Contains(out, "uid 65534 may not change bans") {
			t.Errorf("nobody %s = %q, %v; want refused by the daemon, naming the uid", call[0], out, err)
		}
	}
	if _, n, reloads := m.get("sshd", "203.0.113.8/32"); n != 0 || reloads != 0 {
		t.Fatalf("an unprivileged call changed state: %d bans, %d reloads", n, reloads)
	}
	if out, err := bus.BusCallAs("65534", "Status", "s", "sshd"); err != nil || !strings.Contains(out, `"sshd"`) {
		t.Fatalf("nobody Status = %q, %v", out, err)
	}
	// Costly reads: an unprivileged caller is rate-limited, root is not.
	limited := 0
	for range 3 * readBurst {
		if out, err := bus.BusCallAs("65534", "Status", "s", "sshd"); err != nil {
			if !strings.Contains(out, "too many Status/ListBans calls") {
				t.Fatalf("nobody Status refused with %q, %v", out, err)
			}
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("%d Status calls of an unprivileged user in a row: none refused", 3*readBurst)
	}
	for range 3 * readBurst {
		if out, err := bus.BusCall("Status", "s", "sshd"); err != nil {
			t.Fatalf("root Status refused: %q, %v", out, err)
		}
	}
	time.Sleep(time.Second) // refill
	// User names in reasons (maybe mistyped passwords): root only.
	if out, err := bus.BusCallAs("65534", "ListBans", ""); err != nil || !strings.Contains(out, `last for user (hidden)`) || strings.Contains(out, "hunter2") {
		t.Fatalf("nobody ListBans = %q, %v; want the user name hidden", out, err)
	}
	if out, err := bus.BusCall("ListBans", ""); err != nil || !strings.Contains(out, `hunter2`) {
		t.Fatalf("root ListBans = %q, %v; want the user name", out, err)
	}
	if out, err := bus.BusCall("ListBansPage", "uu", "0", "10"); err != nil || !strings.Contains(out, `hunter2`) || !strings.HasSuffix(strings.TrimSpace(out), " 1") {
		t.Fatalf("root ListBansPage(0, 10) = %q, %v", out, err)
	}
	if out, err := bus.BusCall("ListBansPage", "uu", "1", "10"); err != nil || strings.TrimSpace(out) != "a(ssxxs)u 0 1" {
		t.Fatalf("root ListBansPage(1, 10) = %q, %v", out, err)
	}
	// The history: paging passed on (limit 0 and beyond MaxPage mean
	// MaxPage), user names for root only.
	want := `a(xsssuxss)u 1 1 "ban" "sshd" "203.0.113.5" 1 2 "5 failures within 10m0s, last for user \"hunter2\"" "journal" 7`
	if out, err := bus.BusCall("ListHistory", "suu", "sshd", "3", "0"); err != nil || strings.TrimSpace(out) != want || m.lastHistory() != fmt.Sprint("sshd", 3, MaxPage) {
		t.Fatalf("root ListHistory(sshd, 3, 0) = %q, %v (manager got %q); want %q", out, err, m.lastHistory(), want)
	}
	if out, err := bus.BusCallAs("65534", "ListHistory", "suu", "", "0", "99999"); err != nil || !strings.Contains(out, `last for user (hidden)`) || strings.Contains(out, "hunter2") || m.lastHistory() != fmt.Sprint("", 0, MaxPage) {
		t.Fatalf("nobody ListHistory = %q, %v (manager got %q); want the user name hidden", out, err, m.lastHistory())
	}
	if err := srv.Health(); err != nil {
		t.Errorf("Health = %v on a live bus", err)
	}

	// The daemon's own check is consulted for every changing call, with
	// the caller's bus name and its interactive-authorization flag.
	var (
		callersMu sync.Mutex
		callers   []Caller
	)
	srv.SetAuthorizer(func(c Caller) error {
		callersMu.Lock()
		defer callersMu.Unlock()
		callers = append(callers, c)
		return fmt.Errorf("uid 65534 may not change bans")
	})
	if out, err := bus.BusSendAs("", "Ban", "string:sshd", "string:203.0.113.9", "uint64:0"); err == nil ||
		!strings.Contains(out, ErrNamePermission+": uid 65534 may not change bans") {
		t.Fatalf("Authorize not consulted: %q %v", out, err)
	}
	cl, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Reload(); err == nil || !strings.Contains(err.Error(), "may not change bans") {
		t.Fatalf("client Reload past a refusing authorizer: %v", err)
	}
	cl.Close()
	callersMu.Lock()
	if len(callers) != 2 || !strings.HasPrefix(callers[0].Name, ":") || callers[0].Interactive || !callers[1].Interactive {
		t.Fatalf("authorizer saw %+v; want dbus-send's call (no interactive authorization) and the client's (allowing it)", callers)
	}
	callersMu.Unlock()
	srv.SetAuthorizer(nil)

	// The Go client, including the batch call and signals.
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, err := c.BanMany("web", []string{"203.0.113.0/24", "2001:db8:1::/48"}, time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("BanMany = %d, %v", n, err)
	}
	if _, err := c.BanMany("web", []string{"198.51.100.0/24"}, 0); err == nil || !strings.Contains(err.Error(), "whitelisted") {
		t.Fatalf("whitelisted ban err = %v", err)
	}
	st, err := c.Status("web")
	if err != nil || len(st) != 1 || st[0].CurrentlyBanned != 2 || st[0].TotalFailed != 7 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if err := c.Reload(); err != nil {
		t.Fatalf("Reload = %v", err)
	}
	if _, _, reloads := m.get("web", "203.0.113.0/24"); reloads != 1 {
		t.Fatalf("reloads = %d, want 1", reloads)
	}
	if err := srv.Banned("web", netip.MustParsePrefix("203.0.113.0/24"), time.Unix(1900000000, 0), "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-sigs:
		if s.Name != Interface+".Banned" || s.Body[1] != "203.0.113.0/24" || s.Body[2] != int64(1900000000) {
			t.Fatalf("signal = %s %v", s.Name, s.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no Banned signal")
	}
	many := []netip.Prefix{netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("2001:db8::/64")}
	if err := srv.BannedMany("web", many, []time.Time{time.Unix(1900000000, 0), {}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.UnbannedMany("web", many); err != nil {
		t.Fatal(err)
	}
	if err := srv.Banned("web", netip.MustParsePrefix("203.0.113.7/32"), time.Time{}, "by hand"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Unbanned("web", netip.MustParsePrefix("2001:db8::1/128")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		name string
		body []any
	}{
		{"BannedMany", []any{"web", []string{"203.0.113.1", "2001:db8::/64"}, []int64{1900000000, 0}}},
		{"UnbannedMany", []any{"web", []string{"203.0.113.1", "2001:db8::/64"}}},
		// A single address is printed bare, as Status, ListBans and the
		// journal print it.
		{"Banned", []any{"web", "203.0.113.7", int64(0), "by hand"}},
		{"Unbanned", []any{"web", "2001:db8::1"}},
	} {
		select {
		case s := <-sigs:
			if s.Name != Interface+"."+want.name || !reflect.DeepEqual(s.Body, want.body) {
				t.Fatalf("signal = %s %#v, want %s %#v", s.Name, s.Body, want.name, want.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s signal", want.name)
		}
	}
	_ = os.Unsetenv("DBUS_SYSTEM_BUS_ADDRESS")
}

// checkIntrospection parses an introspection document strictly: a
// document type declaration only before the root element (ElementTree and
// other strict parsers reject one inside it), one <node>, and the
// interfaces Manager1 (with every method the service exports), the
// standard Introspectable and Peer.
func checkIntrospection(t *testing.T, doc string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	depth, roots := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("introspection XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.Directive:
			if depth > 0 || roots > 0 {
				t.Errorf("introspection XML: directive <!%s> outside the prolog", tok)
			}
		}
	}
	if roots != 1 {
		t.Errorf("introspection XML has %d root elements", roots)
	}
	var node introspect.Node
	if err := xml.Unmarshal([]byte(doc), &node); err != nil {
		t.Fatal(err)
	}
	ifaces := map[string]introspect.Interface{}
	for _, i := range node.Interfaces {
		ifaces[i.Name] = i
	}
	for _, want := range []string{Interface, "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer"} {
		if _, ok := ifaces[want]; !ok {
			t.Errorf("introspection lacks interface %s", want)
		}
	}
	var declared []string
	for _, m := range ifaces[Interface].Methods {
		declared = append(declared, m.Name)
	}
	var exported []string
	mt := reflect.TypeOf(methods{})
	for i := range mt.NumMethod() {
		exported = append(exported, mt.Method(i).Name)
	}
	slices.Sort(declared)
	if !slices.Equal(declared, exported) {
		t.Errorf("introspection declares methods %q, the service exports %q", declared, exported)
	}
}

func TestIntrospectionXML(t *testing.T) {
	checkIntrospection(t, introspectXML)
}

// TestSeconds: 0 is the jail's bantime, 2^64-1 permanent, up to 100 years
// as given, beyond a range error.
func TestSeconds(t *testing.T) {
	for _, c := range []struct {
		in   uint64
		want time.Duration
		err  bool
	}{
		{0, 0, false}, {600, 10 * time.Minute, false}, {1<<64 - 1, -1, false},
		{uint64(100 * 365 * 24 * 3600), 100 * 365 * 24 * time.Hour, false},
		{uint64(100*365*24*3600) + 1, 0, true},
		{300000 * 24 * 3600, 0, true},
		{1 << 63, 0, true},
		{1<<64 - 2, 0, true},
	} {
		d, err := seconds(c.in)
		if d != c.want || (err != nil) != c.err || (err != nil && !errors.Is(err, ErrBadDuration)) {
			t.Errorf("seconds(%d) = %v, %v; want %v, error %v", c.in, d, err, c.want, c.err)
		}
	}
}

func TestHideUsers(t *testing.T) {
	for in, want := range map[string]string{
		`3 failures within 10m0s, last for user "root"`:                                            `3 failures within 10m0s, last for user (hidden)`,
		`distributed attack on user "a\"b c": 5 addresses within 1h0m0s, 2 failures from this one`: `distributed attack on user (hidden): 5 addresses within 1h0m0s, 2 failures from this one`,
		`banned by an administrator`:                                                               `banned by an administrator`,
		`3 failures within 10m0s`:                                                                  `3 failures within 10m0s`,
	} {
		if got := HideUsers(in); got != want {
			t.Errorf("HideUsers(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSignalQueueNeverBlocks: a full signal queue drops and counts, and
// never waits (the ban path calls these with the keeper's lock held).
func TestSignalQueueNeverBlocks(t *testing.T) {
	s := &Server{sigs: make(chan signal, 2), done: make(chan struct{})} // nobody empties it
	p := netip.MustParsePrefix("203.0.113.1/32")
	start := time.Now()
	var errs int
	for range 5 {
		if err := s.Banned("sshd", p, time.Time{}, "r"); err != nil {
			errs++
		}
	}
	if err := s.UnbannedMany("sshd", []netip.Prefix{p}); err == nil {
		t.Error("UnbannedMany into a full queue: no error")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("emitting into a full queue took %v", d)
	}
	if errs != 3 || s.Dropped() != 4 {
		t.Errorf("%d errors, %d dropped; want 3 and 4", errs, s.Dropped())
	}
}
