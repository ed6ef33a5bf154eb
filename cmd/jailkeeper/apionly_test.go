package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckAPIOnlyJail: check accepts a jail marked api_only, says it
// takes bans from the API only (text and --json), and still refuses a
// jail with units but no filter, naming the file and line.
func TestCheckAPIOnlyJail(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "15-fleet.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("jails:\n  fleet:\n    api_only: true\n    ports: [22, 443]\n    bantime: 1d\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "--config-dir", dir}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("check: exit %d, stderr %q", code, stderr.String())
	}
	if want := "  fleet: API-only (reads no journal; bans from the D-Bus API: jailkeeper ban, jailkeeper sync), bantime 24h0m0s\n"; !strings.Contains(stdout.String(), want) {
		t.Errorf("check's output %q lacks %q", stdout.String(), want)
	}
	stdout.Reset()
	if code := run([]string{"check", "--json", "--config-dir", dir}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("check --json: exit %d, stderr %q", code, stderr.String())
	}
	var got struct {
		Jails []struct {
			Name    string   `json:"name"`
			APIOnly bool     `json:"api_only"`
			Units   []string `json:"units"`
		} `json:"jails"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	// The vendor defaults' sshd jail reads the journal; fleet does not.
	api := map[string]bool{}
	for _, j := range got.Jails {
		api[j.Name] = j.APIOnly && len(j.Units) == 0
	}
	if len(got.Jails) != 2 || !api["fleet"] || api["sshd"] {
		t.Errorf("check --json jails = %+v; want fleet API-only, sshd not", got.Jails)
	}

	write("jails:\n  fleet:\n    units: [jailkeeper-fleet.service]\n")
	stderr.Reset()
	code := run([]string{"check", "--config-dir", dir}, strings.NewReader(""), &stdout, &stderr)
	if want := `15-fleet.yaml: line 2: jail fleet: no filter and no failregex (a jail fed only by the API, such as the fleet's, sets api_only: true)`; code != 1 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("check of units without filter: exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
}
