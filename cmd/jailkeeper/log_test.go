package main

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
	log  func(l *logger)
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
		log  func(l *logger)
		want []journalEntry
	}{
		{"two bans: one entry each", func(l *logger) { l.logBans(evBanned, mk(2)) }, []journalEntry{
			{"MESSAGE": {"banned 203.0.113.1 in jail " + jail + " until 2026-11-22T13:00:00Z: 5 failures within 10m0s"},
				"JAIL": {jail}, "ADDRESS": {"203.0.113.1"}, "MESSAGE_ID": {msgBan}, "PRIORITY": {"5"}, "SYSLOG_IDENTIFIER": {"jailkeeper"}},
			{"MESSAGE": {"banned 203.0.113.2 in jail " + jail + " until 2026-11-22T13:00:00Z: 5 failures within 10m0s"},
				"JAIL": {jail}, "ADDRESS": {"203.0.113.2"}},
		}},
		{"a flood of 70: chunks of 64 with repeated ADDRESS=", func(l *logger) { l.logBans(evBanned, mk(70)) }, []journalEntry{
			{"MESSAGE": {"banned 64 addresses in jail " + jail + " until 2026-11-22T13:00:00Z: " + strings.Join(addrs(1, 64), ", ")},
				"JAIL": {jail}, "ADDRESS": addrs(1, 64), "MESSAGE_ID": {msgBan}},
			{"MESSAGE": {"banned 6 addresses in jail " + jail + " until 2026-11-22T13:00:00Z: " + strings.Join(addrs(65, 70), ", ")},
				"JAIL": {jail}, "ADDRESS": addrs(65, 70)},
		}},
		{"mass expiry", func(l *logger) { l.logBans(evExpired, mk(9)) }, []journalEntry{
			{"MESSAGE": {"bans of 9 addresses in jail " + jail + " expired: " + strings.Join(addrs(1, 9), ", ")},
				"JAIL": {jail}, "ADDRESS": addrs(1, 9), "MESSAGE_ID": {msgExpire}, "PRIORITY": {"6"}},
		}},
		{"a message with a newline", func(l *logger) { l.event(6, msgWarning, "first line\nsecond line", "JAIL", jail) }, []journalEntry{
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
			l := &logger{journal: true, socket: sock, out: &bytes.Buffer{}}
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
			l := &logger{journal: true, socket: journalSocket, out: &bytes.Buffer{}}
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
