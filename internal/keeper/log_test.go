package keeper

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/bans"
)

// journalEntry is one logged entry: each field's values in order.
type journalEntry map[string][]string

// parseNative decodes one datagram of journald's native protocol.
func parseNative(t *testing.T, b []byte) journalEntry {
	t.Helper()
	e := journalEntry{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			t.Fatalf("field without newline: %q", b)
		}
		line := string(b[:nl])
		if k, v, ok := strings.Cut(line, "="); ok {
			e[k] = append(e[k], v)
			b = b[nl+1:]
			continue
		}
		b = b[nl+1:]
		if len(b) < 8 {
			t.Fatalf("binary field %s without length", line)
		}
		n := binary.LittleEndian.Uint64(b)
		if uint64(len(b)) < 8+n+1 || b[8+n] != '\n' {
			t.Fatalf("binary field %s: bad length %d", line, n)
		}
		e[line] = append(e[line], string(b[8:8+n]))
		b = b[8+n+1:]
	}
	return e
}

// logCases is the table run against a fake journald (a datagram socket
// the test reads) and the real one: what is logged, and the entries that
// must come out.
func logCases(jail string) []struct {
	name string
	log  func(l *Logger)
	want []journalEntry // only the fields named are compared
} {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	mk := func(n int) []bans.Ban {
		var bs []bans.Ban
		for i := range n {
			bs = append(bs, bans.Ban{Jail: jail, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), 32),
				Start: t0, Expires: t0.Add(time.Hour), Reason: "5 failures within 10m0s"})
		}
		return bs
	}
	addrs := func(from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, fmt.Sprintf("203.0.113.%d", i))
		}
		return out
	}
	return []struct {
		name string
		log  func(l *Logger)
		want []journalEntry
	}{
		{"two bans: one entry each", func(l *Logger) { logBans(l, evBanned, mk(2)) }, []journalEntry{
			{"MESSAGE": {"banned 203.0.113.1 in jail " + jail + " until 2026-11-22T13:00:00Z: 5 failures within 10m0s"},
				"JAIL": {jail}, "ADDRESS": {"203.0.113.1"}, "MESSAGE_ID": {MsgBan}, "PRIORITY": {"5"}, "SYSLOG_IDENTIFIER": {"jailkeeper"}},
			{"MESSAGE": {"banned 203.0.113.2 in jail " + jail + " until 2026-11-22T13:00:00Z: 5 failures within 10m0s"},
				"JAIL": {jail}, "ADDRESS": {"203.0.113.2"}},
		}},
		{"a flood of 70: chunks of 64 with repeated ADDRESS=", func(l *Logger) { logBans(l, evBanned, mk(70)) }, []journalEntry{
			{"MESSAGE": {"banned 64 addresses in jail " + jail + " until 2026-11-22T13:00:00Z: " + strings.Join(addrs(1, 64), ", ")},
				"JAIL": {jail}, "ADDRESS": addrs(1, 64), "MESSAGE_ID": {MsgBan}},
			{"MESSAGE": {"banned 6 addresses in jail " + jail + " until 2026-11-22T13:00:00Z: " + strings.Join(addrs(65, 70), ", ")},
				"JAIL": {jail}, "ADDRESS": addrs(65, 70)},
		}},
		{"an import step of 70: one entry, no ADDRESS=", func(l *Logger) { logBulk(l, evBanned, mk(70), "admin") }, []journalEntry{
			{"MESSAGE": {"banned 70 addresses in jail " + jail + " until 2026-11-22T13:00:00Z, by admin: 203.0.113.1 … 203.0.113.70"},
				"JAIL": {jail}, "COUNT": {"70"}, "ORIGIN": {"admin"}, "FIRST_ADDRESS": {"203.0.113.1"}, "LAST_ADDRESS": {"203.0.113.70"},
				"ADDRESS": nil, "MESSAGE_ID": {MsgBan}, "PRIORITY": {"5"}},
		}},
		{"an import step of 2: one entry each, with ADDRESS=", func(l *Logger) { logBulk(l, evBanned, mk(2), "admin") }, []journalEntry{
			{"MESSAGE": {"banned 203.0.113.1 in jail " + jail + " until 2026-11-22T13:00:00Z: 5 failures within 10m0s"},
				"JAIL": {jail}, "ADDRESS": {"203.0.113.1"}, "COUNT": nil},
			{"JAIL": {jail}, "ADDRESS": {"203.0.113.2"}},
		}},
		{"a step of UnbanAll", func(l *Logger) { logBulk(l, evUnbanned, mk(9), "admin") }, []journalEntry{
			{"MESSAGE": {"unbanned 9 addresses in jail " + jail + ", by admin: 203.0.113.1 … 203.0.113.9"},
				"JAIL": {jail}, "COUNT": {"9"}, "FIRST_ADDRESS": {"203.0.113.1"}, "LAST_ADDRESS": {"203.0.113.9"}, "ADDRESS": nil, "MESSAGE_ID": {MsgUnban}},
		}},
		{"mass expiry", func(l *Logger) { logBans(l, evExpired, mk(9)) }, []journalEntry{
			{"MESSAGE": {"bans of 9 addresses in jail " + jail + " expired: " + strings.Join(addrs(1, 9), ", ")},
				"JAIL": {jail}, "ADDRESS": addrs(1, 9), "MESSAGE_ID": {MsgExpire}, "PRIORITY": {"6"}},
		}},
		{"a message with a newline", func(l *Logger) { l.Event(6, MsgWarning, "first line\nsecond line", "JAIL", jail) }, []journalEntry{
			{"MESSAGE": {"first line\nsecond line"}, "JAIL": {jail}},
		}},
	}
}

func checkEntries(t *testing.T, got, want []journalEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		for k, v := range want[i] {
			if !slices.Equal(got[i][k], v) {
				t.Errorf("entry %d: %s = %q, want %q", i, k, got[i][k], v)
			}
		}
	}
}

func TestLogBansFake(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "socket")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, c := range logCases("sshd") {
		t.Run(c.name, func(t *testing.T) {
			l := &Logger{journal: true, socket: sock, out: &bytes.Buffer{}}
			c.log(l)
			var got []journalEntry
			buf := make([]byte, 1<<16)
			for range c.want {
				_ = srv.SetReadDeadline(time.Now().Add(time.Second))
				n, err := srv.Read(buf)
				if err != nil {
					t.Fatalf("reading datagram %d: %v", len(got)+1, err)
				}
				got = append(got, parseNative(t, buf[:n]))
			}
			_ = srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := srv.Read(buf); err == nil {
				t.Fatal("more datagrams than entries wanted")
			}
			checkEntries(t, got, c.want)
		})
	}
}

// TestLogBansJournald runs the same cases against the system journald and
// reads them back with journalctl by the test's own JAIL= value.
func TestLogBansJournald(t *testing.T) {
	testbed.Require(t, "journalctl")
	testbed.EnsureJournald(t)
	for i, c := range logCases("") {
		t.Run(c.name, func(t *testing.T) {
			jail := "logtest-" + testbed.Suffix()
			tc := logCases(jail)[i]
			l := &Logger{journal: true, socket: journalSocket, out: &bytes.Buffer{}}
			tc.log(l)
			var got []journalEntry
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				got = readJournal(t, "JAIL="+jail)
				if len(got) >= len(tc.want) {
					break
				}
			}
			checkEntries(t, got, tc.want)
		})
	}
}

// readJournal returns the system journal's entries matching match, with
// journalctl's JSON (a repeated field is an array; a value that is not
// valid UTF-8 text would be a byte array, which these are not).
func readJournal(t *testing.T, match string) []journalEntry {
	t.Helper()
	_ = exec.Command("journalctl", "--sync").Run()
	out, err := exec.Command("journalctl", "-q", "--no-pager", "-o", "json", "--all", match).Output()
	if err != nil && len(out) == 0 {
		return nil
	}
	var entries []journalEntry
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			t.Fatalf("journalctl line %q: %v", line, err)
		}
		e := journalEntry{}
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				e[k] = []string{v}
			case []any:
				for _, x := range v {
					if s, ok := x.(string); ok {
						e[k] = append(e[k], s)
					}
				}
			}
		}
		entries = append(entries, e)
	}
	return entries
}

// fakeAnnouncer records the signals the daemon would emit.
type fakeAnnouncer struct{ calls []string }

func (f *fakeAnnouncer) Banned(jail string, p netip.Prefix, expires time.Time, reason string) error {
	f.calls = append(f.calls, fmt.Sprintf("Banned %s %s %d %s", jail, p, expires.Unix(), reason))
	return nil
}

func (f *fakeAnnouncer) BannedMany(jail string, ps []netip.Prefix, expires []time.Time) error {
	f.calls = append(f.calls, fmt.Sprintf("BannedMany %s %d %s…%s %d", jail, len(ps), ps[0], ps[len(ps)-1], len(expires)))
	return nil
}

func (f *fakeAnnouncer) Unbanned(jail string, p netip.Prefix) error {
	f.calls = append(f.calls, fmt.Sprintf("Unbanned %s %s", jail, p))
	return nil
}

func (f *fakeAnnouncer) UnbannedMany(jail string, ps []netip.Prefix) error {
	f.calls = append(f.calls, fmt.Sprintf("UnbannedMany %s %d %s…%s", jail, len(ps), ps[0], ps[len(ps)-1]))
	return nil
}

// TestAnnounce: up to 8 bans at once are one signal each; more are
// BannedMany/UnbannedMany per jail, in order of first appearance, in
// chunks of 1024 (the real signals are checked on a bus in pkg/dbusapi).
func TestAnnounce(t *testing.T) {
	exp := time.Unix(1900000000, 0)
	mk := func(jail string, from, n int) []bans.Ban {
		var bs []bans.Ban
		for i := from; i < from+n; i++ {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			bs = append(bs, bans.Ban{Jail: jail, Prefix: netip.PrefixFrom(a, 32), Expires: exp, Reason: "r"})
		}
		return bs
	}
	interleaved := func() []bans.Ban {
		var bs []bans.Ban
		s, w := mk("sshd", 0, 50), mk("web", 100, 20)
		for i := range 50 {
			bs = append(bs, s[i])
			if i < 20 {
				bs = append(bs, w[i])
			}
		}
		return bs
	}
	cases := []struct {
		name string
		run  func(a Announcer)
		want []string
	}{
		{"two bans", func(a Announcer) { announceBanned(a, mk("sshd", 0, 2)) },
			[]string{"Banned sshd 10.0.0.0/32 1900000000 r", "Banned sshd 10.0.0.1/32 1900000000 r"}},
		{"eight bans are still one signal each", func(a Announcer) { announceBanned(a, mk("sshd", 0, 8)) }, nil},
		{"a flood in two jails", func(a Announcer) { announceBanned(a, interleaved()) },
			[]string{"BannedMany sshd 50 10.0.0.0/32…10.0.0.49/32 50", "BannedMany web 20 10.0.0.100/32…10.0.0.119/32 20"}},
		{"2100 bans in chunks", func(a Announcer) { announceBanned(a, mk("sshd", 0, 2100)) },
			[]string{"BannedMany sshd 1024 10.0.0.0/32…10.0.3.255/32 1024", "BannedMany sshd 1024 10.0.4.0/32…10.0.7.255/32 1024", "BannedMany sshd 52 10.0.8.0/32…10.0.8.51/32 52"}},
		{"one unban", func(a Announcer) { announceUnbanned(a, mk("web", 7, 1)) }, []string{"Unbanned web 10.0.0.7/32"}},
		{"a mass expiry", func(a Announcer) { announceUnbanned(a, mk("sshd", 0, 9)) }, []string{"UnbannedMany sshd 9 10.0.0.0/32…10.0.0.8/32"}},
	}
	for _, c := range cases {
		f := &fakeAnnouncer{}
		c.run(f)
		if c.want == nil { // eight bans: count them
			if len(f.calls) != 8 || !strings.HasPrefix(f.calls[7], "Banned sshd 10.0.0.7/32") {
				t.Errorf("%s: %q", c.name, f.calls)
			}
			continue
		}
		if !slices.Equal(f.calls, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, f.calls, c.want)
		}
	}
}
