package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckValidatesSync(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "40-sync.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("sync:\n  servers: [nats://198.51.100.1:4222]\n  share: [nosuchjail]\n  apply: false\n")
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", "--config-dir", dir}, strings.NewReader(""), &stdout, &stderr)
	if want := `40-sync.yaml: line 3: sync: unknown jail "nosuchjail"`; code != 1 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("check: exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
	write("sync:\n  servers: [nats://198.51.100.1:4222]\n  apply: false\n")
	stderr.Reset()
	if code := run([]string{"check", "--config-dir", dir}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("check of a good sync section: exit %d, stderr %q", code, stderr.String())
	}
}

func TestSyncNeedsItsSibling(t *testing.T) {
	// The test binary has no jailkeeper-sync next to it.
	for _, args := range [][]string{{"sync"}, {"unban", "--fleet", "203.0.113.9"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, strings.NewReader(""), &stdout, &stderr); code != 1 ||
			!strings.Contains(stderr.String(), "jailkeeper-sync: no such file or directory") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}
