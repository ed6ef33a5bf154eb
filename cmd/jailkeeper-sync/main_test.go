package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "40-sync.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	for _, c := range []struct {
		body string
		args []string
		code int
		want string
	}{
		{"{}\n", []string{"sync"}, 0, "no sync configured"},
		{"sync: {share: [sshd]}\n", []string{"sync"}, 78, "40-sync.yaml: line 1: sync: no servers"},
		{"{}\n", []string{"sync", "extra"}, 2, `unexpected argument "extra"`},
		{"{}\n", []string{"unban", "not-an-address"}, 1, "not an IPv4/IPv6 address"},
		{"{}\n", []string{"unban", "203.0.113.9"}, 1, "no sync configured"},
		{"{}\n", []string{"unban"}, 2, "want one ADDR"},
	} {
		write(c.body)
		var stdout, stderr bytes.Buffer
		args := append([]string{c.args[0], "--config-dir", dir}, c.args[1:]...)
		if code := run(args, &stdout, &stderr); code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v with %q: exit %d, stderr %q; want %d and %q", c.args, c.body, code, stderr.String(), c.code, c.want)
		}
	}
}
