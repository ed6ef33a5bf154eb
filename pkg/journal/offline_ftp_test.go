package journal

import "testing"

// The log files vsftpd and proftpd write themselves, for `jailkeeper test`.
func TestParseLineFTPFiles(t *testing.T) {
	for _, c := range []struct{ in, ident, msg string }{
		{`Sun Nov 29 09:38:16 2026 [pid 20251] [nosuch] FAIL LOGIN: Client "::ffff:198.51.100.2"`, "", `[pid 20251] [nosuch] FAIL LOGIN: Client "::ffff:198.51.100.2"`},
		{`Thu Sep  8 00:39:49 2016 [pid 15019] [guest] FAIL LOGIN: Client "::ffff:192.0.2.1"`, "", `[pid 15019] [guest] FAIL LOGIN: Client "::ffff:192.0.2.1"`},
		{`2026-11-29 09:39:50,167 vm proftpd[30451] vm (198.51.100.2[198.51.100.2]): USER bob (Login failed): Incorrect password`, "proftpd", `vm (198.51.100.2[198.51.100.2]): USER bob (Login failed): Incorrect password`},
		// Not those formats: left to the other parsers.
		{`Nov 22 10:00:00 host sshd[1]: Failed password`, "sshd", "Failed password"},
		{`2026-11-29 09:39:50,167 no tag here`, "", `2026-11-29 09:39:50,167 no tag here`},
		{`Sun is shining on the 2026 harvest, says the log`, "", `Sun is shining on the 2026 harvest, says the log`},
	} {
		e, err := ParseLine(c.in)
		if err != nil {
			t.Fatalf("ParseLine(%q): %v", c.in, err)
		}
		if e.Identifier != c.ident || e.Message != c.msg {
			t.Errorf("ParseLine(%q) = ident %q message %q, want %q %q", c.in, e.Identifier, e.Message, c.ident, c.msg)
		}
	}
}
