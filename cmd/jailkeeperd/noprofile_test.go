//go:build !profile

package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileNeedsTag: a build without -tags profile refuses
// JAILKEEPER_CPUPROFILE instead of running unprofiled.
func TestProfileNeedsTag(t *testing.T) {
	t.Setenv("JAILKEEPER_CPUPROFILE", filepath.Join(t.TempDir(), "cpu.prof"))
	var stderr bytes.Buffer
	if code := run([]string{"daemon", "--config-dir", t.TempDir(), "--state-dir", t.TempDir()}, &stderr); code != 1 || !strings.Contains(stderr.String(), "built without -tags profile") {
		t.Fatalf("exit %d, %q", code, stderr.String())
	}
}
