package jails

import (
	"net/netip"
	"testing"
	"time"
)

// TestTrackerPairsTwoLinesOfOneAttempt: dovecot's PAM line and its login
// process's line for one failed login count once; lines of one regex, lines
// without a user, other users and lines far apart each count.
func TestTrackerPairsTwoLinesOfOneAttempt(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.5")
	key := netip.PrefixFrom(a, 32)
	const pam, login, other = 0, 1, 2
	type line struct {
		regex int
		user  string
		port  uint16
		after time.Duration // since the previous line
		count bool
	}
	cases := map[string][]line{
		"PAM then login line, three attempts": {
			{pam, "bob", 0, 0, true}, {login, "bob", 0, 4 * time.Second, false},
			{pam, "bob", 0, 100 * time.Millisecond, true}, {login, "bob", 0, 4 * time.Second, false},
			{pam, "bob", 0, 100 * time.Millisecond, true}, {login, "bob", 0, 4 * time.Second, false},
		},
		"three PAM failures in one connection, one login line": {
			{pam, "bob", 0, 0, true}, {pam, "bob", 0, 2 * time.Second, true}, {pam, "bob", 0, 2 * time.Second, true},
			{login, "bob", 0, time.Second, false},
		},
		"login lines only (passwd-file, auth_verbose=no)": {
			{login, "bob", 0, 0, true}, {login, "bob", 0, time.Second, true}, {login, "bob", 0, time.Second, true},
		},
		"another user is another attempt": {
			{pam, "bob", 0, 0, true}, {login, "alice", 0, time.Second, true},
		},
		"no user never pairs": {
			{pam, "", 0, 0, true}, {login, "", 0, time.Second, true},
		},
		"too far apart": {
			{pam, "bob", 0, 0, true}, {login, "bob", 0, pairWindow + time.Second, true},
		},
		"both with ports: the port decides": {
			{pam, "bob", 1000, 0, true}, {login, "bob", 2000, time.Second, true}, {other, "bob", 2000, time.Second, false},
		},
		"auth_verbose: three lines per attempt": {
			{other, "bob", 0, 0, true}, {pam, "bob", 0, 10 * time.Millisecond, false}, {login, "bob", 0, 4 * time.Second, false},
			{other, "bob", 0, 100 * time.Millisecond, true}, {pam, "bob", 0, 10 * time.Millisecond, false}, {login, "bob", 0, 4 * time.Second, false},
		},
		"alternating kinds: every second line counts": {
			{pam, "bob", 0, 0, true}, {login, "bob", 0, time.Second, false}, {login, "bob", 0, time.Second, true},
			{pam, "bob", 0, time.Second, false}, {pam, "bob", 0, time.Second, true}, {login, "bob", 0, time.Second, false},
			{login, "bob", 0, time.Second, true},
		},
		"PAM line then the same attempt's line with a port, then its closing line": {
			{pam, "bob", 0, 0, true}, {login, "bob", 4711, time.Second, false}, {other, "bob", 4711, time.Second, false},
			{pam, "bob", 0, time.Second, true},
		},
	}
	for name, lines := range cases {
		t.Run(name, func(t *testing.T) {
			tr := NewTracker(100, time.Hour, 0)
			at := t0
			want := 0
			for i, l := range lines {
				at = at.Add(l.after)
				n, counted := tr.AddUser(key, a, l.port, l.regex, l.user, at)
				if l.count {
					want++
				}
				if counted != l.count || n != want {
					t.Fatalf("line %d %+v: counted=%v n=%d, want counted=%v n=%d", i, l, counted, n, l.count, want)
				}
			}
		})
	}
}

// TestTrackerPairAfterBan: the login line of the attempt that caused a
// ban is not counted as the first failure after it.
func TestTrackerPairAfterBan(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.5")
	key := netip.PrefixFrom(a, 32)
	tr := NewTracker(3, time.Hour, 0)
	at := t0
	for i := 0; i < 3; i++ {
		if i > 0 { // the previous attempt's login line
			tr.AddUser(key, a, 0, 1, "bob", at)
			at = at.Add(100 * time.Millisecond)
		}
		if n, _ := tr.AddUser(key, a, 0, 0, "bob", at); n != i+1 {
			t.Fatalf("PAM line %d: n=%d", i+1, n)
		}
		at = at.Add(4 * time.Second)
	}
	tr.Reset(key) // the engine bans at the third
	if n, counted := tr.AddUser(key, a, 0, 1, "bob", at); counted || n != 0 {
		t.Fatalf("login line after the ban: counted=%v n=%d", counted, n)
	}
}
