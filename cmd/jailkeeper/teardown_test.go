package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestTeardownUsage checks the arguments teardown refuses before it
// touches anything. The teardown itself runs under systemd in systemdtest.
func TestTeardownUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"teardown", "sshd"}, "takes no arguments"},
		{[]string{"teardown", "--backend", "pf"}, `unknown --backend "pf"`},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, strings.NewReader(""), &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("jailkeeper %s: exit %d, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, errb.String(), tc.want)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"teardown", "--help"}, strings.NewReader(""), &out, &errb); code != 0 || !strings.Contains(errb.String(), "--backend") {
		t.Errorf("jailkeeper teardown --help: exit %d, %q", code, errb.String())
	}
}
