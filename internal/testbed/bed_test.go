package testbed

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		out      string
		timedOut bool
		want     Outcome
	}{
		{"nobody@198.51.100.1: Permission denied (publickey,password).", false, Denied},
		{"ssh: connect to host 198.51.100.1 port 22: Connection refused", false, Refused},
		{"ssh: connect to host 198.51.100.1 port 22: Connection timed out", false, Timeout},
		{"", true, Timeout},
		{"ssh: Could not resolve hostname x", false, Other},
	}
	for _, tt := range tests {
		if got := classify(tt.out, tt.timedOut); got != tt.want {
			t.Errorf("classify(%q, %v) = %q, want %q", tt.out, tt.timedOut, got, tt.want)
		}
	}
}

func TestParseIpsetList(t *testing.T) {
	out := `Name: jk-sshd-4
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 timeout 0 bucketsize 12 initval 0x1
Size in memory: 312
References: 1
Number of entries: 2
Members:
198.51.100.2 timeout 3599
198.51.100.9 timeout 0

Name: jk-sshd-6
Type: hash:net
Revision: 7
Header: family inet6 hashsize 1024 maxelem 65536 timeout 0
Members:
2001:db8::/64 timeout 12
`
	sets, err := parseIpsetList(out)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		set  int
		addr string
		want bool
	}{
		{0, "198.51.100.2", true},
		{0, "198.51.100.9", true},
		{0, "198.51.100.3", false},
		{1, "2001:db8::2", true},
		{1, "2001:db8:1::2", false},
	}
	if len(sets) != 2 || sets[0].Name != "jk-sshd-4" || sets[1].Type != "hash:net" {
		t.Fatalf("parsed %+v", sets)
	}
	for _, tt := range tests {
		if got := sets[tt.set].Contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("%s contains %s = %v, want %v", sets[tt.set].Name, tt.addr, got, tt.want)
		}
	}
}

// TestNotify sends datagrams as a daemon would and waits for them.
func TestNotify(t *testing.T) {
	n := NewNotify(t)
	c, err := net.Dial("unixgram", n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []string{"STATUS=starting", "READY=1\nSTATUS=1 jail, 0 bans", "WATCHDOG=1", "WATCHDOG=1"} {
		if _, err := c.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	n.WaitFor(t, "READY=1", time.Second)
	if _, l := n.WaitFor(t, "STATUS=", time.Second); l != "STATUS=starting" {
		t.Errorf("first STATUS = %q", l)
	}
	if _, _, err := n.Wait("STOPPING=1", 50*time.Millisecond); err == nil {
		t.Error("Wait found STOPPING=1, which was never sent")
	}
	deadline := time.Now().Add(time.Second)
	for n.Count("WATCHDOG=1") != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.Count("WATCHDOG=1"); got != 2 {
		t.Errorf("WATCHDOG=1 count = %d, want 2", got)
	}
}

// journalEntries returns the journal entries since since whose MESSAGE
// contains marker, as journalctl's JSON objects.
func journalEntries(t *testing.T, since time.Time, marker string) []map[string]any {
	t.Helper()
	out, err := exec.Command("journalctl", "--no-pager", "-o", "json",
		"--since", since.Add(-time.Second).Format("2006-01-02 15:04:05"), "--grep", marker).Output()
	if err != nil && len(out) == 0 {
		return nil // journalctl exits 1 when nothing matches
	}
	var entries []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("journalctl line %q: %v", l, err)
		}
		entries = append(entries, e)
	}
	return entries
}

// TestSSHDLogsAsUnit runs the real sshd of the bed, fails a login from the
// attacker and checks the journal: sshd's lines carry
// _SYSTEMD_UNIT=sshd.service, while `logger -t sshd` from this process's
// cgroup does not (the spoofing case the daemon must ignore).
func TestSSHDLogsAsUnit(t *testing.T) {
	Require(t, "ip", "sshd", "ssh", "systemd-cat", "journalctl", "logger")
	start := time.Now()
	h := NewHosts(t)
	StartSSHD(t, h)

	for _, tc := range []struct{ addr, src, from string }{
		{SrvAddr4, "", AtkAddr4},
		{SrvAddr6, "", AtkAddr6},
	} {
		a := h.SSHAttempt(tc.addr, tc.src)
		if a.Outcome != Denied {
			t.Fatalf("ssh to %s: %s (%q), want %s", tc.addr, a.Outcome, a.Output, Denied)
		}
		marker := "Connection closed by authenticating user nobody " + tc.from
		var got []map[string]any
		deadline := time.Now().Add(5 * time.Second)
		for len(got) == 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			got = journalEntries(t, start, marker)
		}
		if len(got) == 0 {
			t.Fatalf("no journal entry %q since %v", marker, start)
		}
		e := got[len(got)-1]
		if e["_SYSTEMD_UNIT"] != "sshd.service" || e["SYSLOG_IDENTIFIER"] != "sshd" {
			t.Errorf("sshd entry has _SYSTEMD_UNIT=%v SYSLOG_IDENTIFIER=%v, want sshd.service, sshd", e["_SYSTEMD_UNIT"], e["SYSLOG_IDENTIFIER"])
		}
	}

	marker := "Failed password for root from 203.0.113.77 port 4242 ssh2 spoof-" + Suffix()
	Run(t, "logger", "-u", "/run/systemd/journal/dev-log", "-t", "sshd", marker)
	var got []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		got = journalEntries(t, start, marker)
	}
	if len(got) != 1 {
		t.Fatalf("logger entry %q: found %d entries, want 1", marker, len(got))
	}
	if u, ok := got[0]["_SYSTEMD_UNIT"]; ok && u == "sshd.service" {
		t.Errorf("logger -t sshd from outside the unit got _SYSTEMD_UNIT=%v", u)
	}
}

// manager stands in for the daemon's D-Bus object in TestBusPolicy.
type manager struct{ unbanned []string }

func (m *manager) Unban(addr string) *dbus.Error {
	m.unbanned = append(m.unbanned, addr)
	return nil
}

func (m *manager) Status() (string, *dbus.Error) { return "ok", nil }

// TestBusPolicy runs the private system bus with the project's policy:
// root may own org.jailkeeper; everyone may call its Manager1 methods (the
// daemon authorises the changing ones itself, see pkg/dbusapi), but not
// other interfaces of it, and an unprivileged user may not own the name.
func TestBusPolicy(t *testing.T) {
	Require(t, "dbus-daemon", "busctl", "dbus-send", "setpriv")
	b := NewBus(t)
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatalf("connecting to %s: %v", b.Address, err)
	}
	defer conn.Close()
	m := &manager{}
	if err := conn.Export(m, "/org/jailkeeper", "org.jailkeeper.Manager1"); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName("org.jailkeeper", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("root owning org.jailkeeper: reply %v, %v", reply, err)
	}
	user := "jk-e2e"
	EnsureUser(t, user)

	tests := []struct {
		user, method, sig string
		args              []string
		allowed           bool
	}{
		{"", "Unban", "s", []string{"198.51.100.2"}, true},
		{user, "Unban", "s", []string{"198.51.100.2"}, true},
		{user, "Status", "", nil, true},
	}
	for _, tt := range tests {
		out, err := b.BusCallAs(tt.user, tt.method, tt.sig, tt.args...)
		if tt.allowed && err != nil {
			t.Errorf("%s as %q: %v\n%s", tt.method, tt.user, err, out)
		}
	}
	if out, err := b.BusSendAs(user, "Status"); err != nil || RefusedByBus(out) {
		t.Errorf("dbus-send Status as %s: err %v, output %q", user, err, out)
	}
	asUser := func(argv ...string) ([]byte, error) {
		cmd := exec.Command("setpriv", append([]string{"--reuid=" + user, "--regid=" + user, "--clear-groups"}, argv...)...)
		cmd.Env = append(os.Environ(), b.Env())
		return cmd.CombinedOutput()
	}
	out, err := asUser("dbus-send", "--system", "--print-reply", "--dest=org.jailkeeper", "/org/jailkeeper", "org.example.Other.Method")
	if err == nil || !RefusedByBus(string(out)) {
		t.Errorf("dbus-send to another interface as %s: err %v, output %q; want the bus's AccessDenied", user, err, out)
	}
	out, err = asUser("busctl", "--system", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName", "su", "org.jailkeeper", "4")
	if err == nil || !strings.Contains(string(out), "not allowed to own") && !strings.Contains(string(out), "Access denied") {
		t.Errorf("owning org.jailkeeper as %s: err %v, output %q; want refused", user, err, out)
	}
	if len(m.unbanned) != 2 {
		t.Errorf("Unban reached the object %d times, want 2 (root's and the user's)", len(m.unbanned))
	}
}

// TestKernelInspection builds a ban by hand in the server namespace and
// checks the helpers the e2e test relies on: SrvLayout, SrvBanned and an
// attempt classified as Refused.
func TestKernelInspection(t *testing.T) {
	Require(t, "ip", "iptables", "ip6tables", "ipset", "sshd", "ssh")
	h := NewHosts(t)
	StartSSHD(t, h)
	for _, v6 := range []bool{false, true} {
		if ok, why := h.SrvLayout(v6); ok {
			t.Fatalf("fresh namespace has a layout (v6=%v)", v6)
		} else if why == "" {
			t.Errorf("SrvLayout gave no reason")
		}
	}
	in := func(args ...string) { t.Helper(); Run(t, "ip", append([]string{"netns", "exec", h.Srv}, args...)...) }
	in("ipset", "create", "jk-test-4", "hash:ip", "timeout", "0")
	in("iptables", "-w", "-N", Chain)
	in("iptables", "-w", "-A", Chain, "-p", "tcp", "--dport", "22", "-m", "set", "--match-set", "jk-test-4", "src", "-j", "REJECT", "--reject-with", "tcp-reset")
	in("iptables", "-w", "-I", "INPUT", "1", "-j", Chain)
	if ok, why := h.SrvLayout(false); !ok {
		t.Errorf("SrvLayout(v4): %s", why)
	}
	if ok, _ := h.SrvLayout(true); ok {
		t.Errorf("SrvLayout(v6) true without ip6tables rules")
	}
	if a := h.SSHAttempt(SrvAddr4, ""); a.Outcome != Denied {
		t.Fatalf("before ban: %s %q", a.Outcome, a.Output)
	}
	if _, ok := h.SrvBanned(t, AtkAddr4); ok {
		t.Fatal("SrvBanned before the ban")
	}
	in("ipset", "add", "jk-test-4", AtkAddr4, "timeout", "60")
	if set, ok := h.SrvBanned(t, AtkAddr4); !ok || set != "jk-test-4" {
		t.Fatalf("SrvBanned = %q, %v", set, ok)
	}
	if a := h.SSHAttempt(SrvAddr4, ""); a.Outcome != Refused {
		t.Fatalf("after ban: %s %q", a.Outcome, a.Output)
	}
	if a := h.SSHAttempt(SrvAddr6, ""); a.Outcome != Denied {
		t.Fatalf("IPv6 after v4 ban: %s %q", a.Outcome, a.Output)
	}
}

// TestBedPrivateJournal checks that the full bed's sshd logs as
// sshd.service into the bed's private journal.
func TestBedPrivateJournal(t *testing.T) {
	b := NewBed(t)
	if a := b.Hosts.SSHAttempt(SrvAddr6, ""); a.Outcome != Denied {
		t.Fatalf("ssh: %s %q", a.Outcome, a.Output)
	}
	want := "Connection closed by authenticating user nobody " + AtkAddr6
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := b.JournalLines(t, "_SYSTEMD_UNIT=sshd.service")
		for _, l := range lines {
			if strings.HasPrefix(l, want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the private journal; sshd.service lines: %q", want, lines)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
