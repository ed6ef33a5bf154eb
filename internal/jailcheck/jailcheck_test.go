package jailcheck

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

// fakeHost is an in-memory Host: the units that exist and the messages
// each unit wrote.
type fakeHost struct {
	units map[string]bool
	msgs  map[string][]string
	err   error
	asked []string
}

func (h *fakeHost) UnitExists(u string) (bool, error) { return h.units[u], nil }

func (h *fakeHost) Messages(units []string, since time.Time, max int) ([]string, error) {
	h.asked = append(h.asked, units...)
	if h.err != nil {
		return nil, h.err
	}
	var out []string
	for _, u := range units {
		out = append(out, h.msgs[u]...)
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out, nil
}

func sshdJail(t *testing.T, units []string, alternatives bool) Jail {
	t.Helper()
	def, err := jails.Builtin("sshd", "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := jails.Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	return Jail{Name: "sshd", Filter: f, FilterName: "sshd (mode normal)", Units: units, Alternatives: alternatives}
}

func kinds(ws []Warning) []string {
	var k []string
	for _, w := range ws {
		k = append(k, w.Kind+":"+strings.Join(w.Units, ","))
	}
	return k
}

func TestCheck(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	failure := "Failed password for root from 203.0.113.9 port 4711 ssh2"
	benign := "Accepted publickey for alice from 198.51.100.5 port 50000 ssh2: ED25519 SHA256:x"
	debian := []string{"ssh.service", "sshd.service"}
	cases := []struct {
		name  string
		jail  Jail
		host  fakeHost
		want  []string
		words string // a word the first warning's message has
	}{
		{"one of the alternatives exists and failures match", sshdJail(t, debian, true),
			fakeHost{units: map[string]bool{"ssh.service": true}, msgs: map[string][]string{"ssh.service": {benign, failure}}}, nil, ""},
		{"none of the alternatives exists", sshdJail(t, debian, true),
			fakeHost{units: map[string]bool{}}, []string{"unit-missing:ssh.service,sshd.service"}, "none of its units"},
		{"a unit the admin named is missing", sshdJail(t, []string{"ssh", "sshd-extra.service"}, false),
			fakeHost{units: map[string]bool{"ssh.service": true}, msgs: map[string][]string{"ssh.service": {failure}}}, []string{"unit-missing:sshd-extra.service"}, "sshd-extra.service does not exist"},
		{"silent for 24 h", sshdJail(t, debian, true),
			fakeHost{units: map[string]bool{"ssh.service": true, "sshd.service": true}}, []string{"silent:ssh.service,sshd.service"}, "wrote nothing"},
		{"lines, none matched", sshdJail(t, debian, true),
			fakeHost{units: map[string]bool{"ssh.service": true}, msgs: map[string][]string{"ssh.service": {benign, benign, "Server listening on :: port 22."}}}, []string{"no-match:ssh.service,sshd.service"}, "wrote 3 lines"},
		{"a transient unit without unit file that logs exists", sshdJail(t, []string{"jk-transient.service"}, false),
			fakeHost{units: map[string]bool{}, msgs: map[string][]string{"jk-transient.service": {failure}}}, nil, ""},
		{"missing and silent: only missing", sshdJail(t, []string{"gone.service"}, false),
			fakeHost{units: map[string]bool{}}, []string{"unit-missing:gone.service"}, "gone.service"},
		{"journal unreadable", sshdJail(t, debian, true),
			fakeHost{units: map[string]bool{"ssh.service": true}, err: errors.New("permission denied")}, []string{"journal-unreadable:ssh.service,sshd.service"}, "permission denied"},
		{"identifiers only: nothing to check", sshdJail(t, nil, false), fakeHost{}, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Check(c.jail, &c.host, now)
			if !slices.Equal(kinds(got), c.want) {
				t.Fatalf("warnings %v, want %v (%+v)", kinds(got), c.want, got)
			}
			if c.words != "" && !strings.Contains(got[0].Message, c.words) {
				t.Errorf("message %q does not say %q", got[0].Message, c.words)
			}
		})
	}
}

func TestCheckNormalisesUnits(t *testing.T) {
	h := &fakeHost{units: map[string]bool{"ssh.service": true}, msgs: map[string][]string{"ssh.service": {"Invalid user a from 203.0.113.9 port 1"}}}
	if w := Check(sshdJail(t, []string{"ssh"}, false), h, time.Now()); w != nil {
		t.Fatalf("warnings %+v for a unit named without .service", w)
	}
	if !slices.Equal(h.asked, []string{"ssh.service"}) {
		t.Errorf("journal asked for %v", h.asked)
	}
}

func TestSystemUnitFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ssh.service", "postfix@.service"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := System{Dirs: []string{filepath.Join(dir, "absent"), dir}}
	for unit, want := range map[string]bool{"ssh.service": true, "sshd.service": false, "postfix@-.service": true, "dovecot.service": false} {
		if got, err := s.UnitExists(unit); err != nil || got != want {
			t.Errorf("UnitExists(%s) = %v, %v; want %v", unit, got, err, want)
		}
	}
}

func TestParseJSONMessages(t *testing.T) {
	out := []byte(`{"MESSAGE":"Invalid user a from 203.0.113.9"}
{"MESSAGE":[70,97,105,108,101,100,255]}
{"MESSAGE":null}

`)
	got, err := parseJSONMessages(out)
	if err != nil || len(got) != 2 || got[0] != "Invalid user a from 203.0.113.9" || got[1] != "Failed\xff" {
		t.Fatalf("parseJSONMessages = %q, %v", got, err)
	}
	if _, err := parseJSONMessages([]byte("not json\n")); err == nil {
		t.Error("bad output accepted")
	}
}

func TestUnitDirs(t *testing.T) {
	if got := unitDirs(""); !slices.Equal(got, UnitDirs) {
		t.Errorf("unitDirs(\"\") = %v", got)
	}
	if got := unitDirs("/a:/b"); !slices.Equal(got, []string{"/a", "/b"}) {
		t.Errorf("unitDirs(/a:/b) = %v", got)
	}
	if got := unitDirs("/a:"); len(got) != 1+len(UnitDirs) || got[0] != "/a" || got[1] != UnitDirs[0] {
		t.Errorf("unitDirs(/a:) = %v", got)
	}
}

// TestSystemMessages runs System.Messages against a stand-in journalctl
// that prints what the real one prints for a user outside the journal's
// groups, and for a root user.
func TestSystemMessages(t *testing.T) {
	dir := t.TempDir()
	script := `#!/bin/sh
case "$*" in
*_SYSTEMD_UNIT=mine.service*) echo 'Hint: You are currently not seeing messages from other users and the system.' >&2 ;;
*_SYSTEMD_UNIT=ssh.service*) echo '{"MESSAGE":"Invalid user a from 203.0.113.9 port 1"}' ;;
*'--unit=ssh@*.service'*) echo 'Failed to add filter for units: No data available' >&2; exit 1 ;;
*) echo 'Failed to open journal' >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "journalctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	s := System{}
	since := time.Now().Add(-Window)
	if m, err := s.Messages([]string{"ssh.service", "ssh@.service"}, since, 10); err != nil || len(m) != 1 {
		t.Errorf("Messages(ssh, ssh@) = %q, %v; want one line", m, err)
	}
	if _, err := s.Messages([]string{"mine.service"}, since, 10); err == nil || !strings.Contains(err.Error(), "systemd-journal") {
		t.Errorf("Messages(mine) = %v; want an error naming group systemd-journal", err)
	}
	if _, err := s.Messages([]string{"other.service"}, since, 10); err == nil || !strings.Contains(err.Error(), "Failed to open journal") {
		t.Errorf("Messages(other) = %v; want journalctl's error", err)
	}
}
