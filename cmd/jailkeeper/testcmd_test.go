package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCmdTest(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		stdin      string
		code       int
		stdout     string   // exact, when set
		contains   []string // substrings of stdout
		stderrHas  string
		stderrOnly bool // stdout must be empty
	}{
		{
			name: "json from a file, flags after positionals",
			args: []string{"sshd", "testdata/test-sshd.log", "--json"},
			code: 0,
			stdout: `{"line":2,"host":"198.51.100.2","user":"baduser"}` + "\n" +
				`{"line":3,"host":"198.51.100.2","user":"baduser"}` + "\n" +
				`{"line":4,"host":"2001:db8::2","user":"root"}` + "\n" +
				`{"line":6,"host":"198.51.100.9","user":"root from 203.0.113.66"}` + "\n",
		},
		{
			name:   "json from stdin, flags first",
			args:   []string{"--json", "sshd", "-"},
			stdin:  "Failed password for root from ::ffff:203.0.113.30 port 22022 ssh2\nnothing here\n",
			code:   0,
			stdout: `{"line":1,"host":"203.0.113.30","user":"root"}` + "\n",
		},
		{
			name: "summary",
			args: []string{"sshd", "testdata/test-sshd.log"},
			code: 0,
			contains: []string{"Filter:   sshd, mode normal", "Lines:    6\n", "Matched:  4\n", "Ignored:  0\n", "Missed:   2\n",
				"198.51.100.2                                  2\n", "2001:db8::2                                   1\n"},
		},
		{
			name:   "aggressive mode",
			args:   []string{"sshd", "--mode", "aggressive", "--json"},
			stdin:  "Did not receive identification string from 203.0.113.51 port 40000\n",
			code:   0,
			stdout: `{"line":1,"host":"203.0.113.51","user":""}` + "\n",
		},
		{
			name:     "filter file with ignoreregex",
			args:     []string{"testdata/ignore-filter.yaml"},
			stdin:    "Failed password for root from 198.51.100.2 port 1 ssh2\nFailed password for bob from 198.51.100.3 port 2 ssh2\nother\n",
			code:     0,
			contains: []string{"Lines:    3\n", "Matched:  1\n", "Ignored:  1\n", "Missed:   1\n"},
		},
		{name: "unknown filter", args: []string{"nosuch"}, code: 2, stderrHas: `unknown filter "nosuch"`, stderrOnly: true},
		{name: "unknown mode", args: []string{"sshd", "--mode", "insane"}, code: 2, stderrHas: `no mode "insane"`, stderrOnly: true},
		{name: "missing file", args: []string{"sshd", "testdata/nope.log"}, code: 2, stderrHas: "nope.log", stderrOnly: true},
		{name: "no filter", args: nil, code: 2, stderrHas: "want FILTER", stderrOnly: true},
		{name: "bad json line", args: []string{"sshd", "--json"}, stdin: "{\"MESSAGE\":\n", code: 2, stderrHas: "line 1", stderrOnly: true},
		{name: "unit without journal", args: []string{"sshd", "--unit", "ssh"}, code: 2, stderrHas: "need --journal", stderrOnly: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := cmdTest(tc.args, strings.NewReader(tc.stdin), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, errb.String())
			}
			if tc.stdout != "" && out.String() != tc.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), tc.stdout)
			}
			for _, c := range tc.contains {
				if !strings.Contains(out.String(), c) {
					t.Errorf("stdout lacks %q:\n%s", c, out.String())
				}
			}
			if tc.stderrHas != "" {
				if !strings.Contains(errb.String(), tc.stderrHas) || strings.Count(errb.String(), "\n") != 1 {
					t.Errorf("stderr %q, want one line with %q", errb.String(), tc.stderrHas)
				}
			}
			if tc.stderrOnly && out.Len() != 0 {
				t.Errorf("stdout not empty: %q", out.String())
			}
		})
	}
}

func TestCmdTestHelpListsModes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"test", "--help"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("test --help: exit %d", code)
	}
	for _, want := range []string{"built-in filters and their modes", "\n  sshd               normal, aggressive, ddos, extra\n", "\n  postfix            normal"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("test --help does not say %q:\n%s", want, errOut.String())
		}
	}
}
