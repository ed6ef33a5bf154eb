package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("JAILKEEPER_LOG", "stderr")
	for _, tc := range []struct {
		name, yaml string
		code       int
		want       string
	}{
		{"no actions", "jails:\n  sshd: {filter: sshd}\n", 0, "no actions configured"},
		{"bad action", "actions:\n  x: {type: pager}\n", 78, `20-x.yaml: line 2: action x: bad type "pager"`},
		{"bad key", "actions:\n  x: {type: exec, argv: [/bin/true], shell: yes}\n", 78, `unknown key "shell"`},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "20-x.yaml"), []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		code := run([]string{"actions", "--config-dir", dir, "--state-dir", t.TempDir()}, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, stderr.String(), tc.code, tc.want)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"actions", "extra"}, &stderr); code != 2 {
		t.Errorf("an extra argument: exit %d, want 2", code)
	}
}
