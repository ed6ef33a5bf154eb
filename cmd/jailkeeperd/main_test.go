package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusesBadConfig: a configuration that does not load makes the
// daemon exit 78 (EX_CONFIG) before it touches anything, with the file
// and line; a jail name too long for the firewall's object names is such
// an error too.
func TestRefusesBadConfig(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"bad duration", "jails:\n  sshd:\n    bantime: 1x\n", "10.yaml: line 3: bad duration \"1x\""},
		{"jail name of 20 characters", "jails:\n  twenty-characters-ab:\n    filter: sshd\n", "10.yaml: line 2: bad jail name \"twenty-characters-ab\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "10.yaml"), []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("JAILKEEPER_LOG", "stderr")
			t.Setenv("NOTIFY_SOCKET", "")
			// As `jailkeeper daemon` execs it, and run directly.
			for _, args := range [][]string{{"daemon"}, nil} {
				var stderr bytes.Buffer
				code := run(append(args, "--config-dir", dir, "--state-dir", t.TempDir()), &stderr)
				if code != exitConfig || !strings.Contains(stderr.String(), c.want) {
					t.Fatalf("run(%q): exit %d, %q; want exit %d and %q", args, code, stderr.String(), exitConfig, c.want)
				}
			}
		})
	}
}

// TestUsage: --help exits 0 with the synopsis, an unknown flag or an
// argument exits 2.
func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"daemon", "--help"}, 0, "usage: jailkeeper daemon [--config-dir DIR] [--state-dir DIR]"},
		{[]string{"--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"daemon", "extra"}, 2, `jailkeeper daemon: unexpected argument "extra"`},
	} {
		var stderr bytes.Buffer
		if code := run(c.args, &stderr); code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("run(%q) = %d, %q; want %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}
