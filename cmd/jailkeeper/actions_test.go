package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestActionsNeedsItsSibling(t *testing.T) {
	// The test binary has no jailkeeper-actions next to it.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"actions"}, strings.NewReader(""), &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "jailkeeper-actions: no such file or directory") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestCheckValidatesActions(t *testing.T) {
	dir := t.TempDir()
	bad := "actions:\n  chat:\n    type: webhook\n    url: \"ftp://198.51.100.1/hook\"\n"
	if err := os.WriteFile(filepath.Join(dir, "20-actions.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", "--config-dir", dir}, strings.NewReader(""), &stdout, &stderr)
	if want := "20-actions.yaml: line 4: action chat: a webhook action needs url: http(s)://host/path"; code != 1 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("check: exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
	good := "actions:\n  chat: {type: webhook, url: \"https://198.51.100.1/hook\"}\n"
	if err := os.WriteFile(filepath.Join(dir, "20-actions.yaml"), []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run([]string{"check", "--config-dir", dir}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("check of a good actions section: exit %d, stderr %q", code, stderr.String())
	}
}
