package main

import (
	"bytes"
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
