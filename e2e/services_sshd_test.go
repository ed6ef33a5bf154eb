package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestCheckWarnsAboutSilentJails runs `jailkeeper check --json` against
// the bed's real journald: one jail whose unit logs failures the filter
// matches (no warning), one whose unit logs only lines the filter does not
// match, one whose unit file exists but never logged, and one whose unit
// does not exist. Warnings never change check's exit code.
func TestCheckWarnsAboutSilentJails(t *testing.T) {
	testbed.Require(t, "journalctl")
	t.Parallel()
	testbed.EnsureJournald(t)
	bin := testbed.BuildJailkeeper(t)

	id := fmt.Sprintf("jk-chk%d", os.Getpid())
	unit := func(s string) string { return id + "-" + s + ".service" }
	write := func(u string, lines ...string) {
		t.Helper()
		w, err := testbed.NewUnitWriter(u, testbed.WriterOptions{Ident: "sshd"})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if err := w.Write(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(unit("fires"), "Server listening on 198.51.100.1 port 22.",
		"Failed password for invalid user admin from 203.0.113.9 port 40000 ssh2")
	write(unit("nomatch"), "Server listening on 198.51.100.1 port 22.",
		"Accepted publickey for deploy from 198.51.100.5 port 50000 ssh2: ED25519 SHA256:x",
		"pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0)")

	// The unit files: only "silent" has one (the others are known from
	// the journal alone, as a transient unit is).
	unitDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(unitDir, unit("silent")), []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := t.TempDir()
	var b strings.Builder
	b.WriteString("firewall: {backend: none}\njails:\n  sshd: {enabled: false}\n")
	for _, j := range []string{"fires", "nomatch", "silent", "missing"} {
		fmt.Fprintf(&b, "  chk-%s: {filter: sshd, units: [%s]}\n", j, unit(j))
	}
	if err := os.WriteFile(filepath.Join(conf, "10-check.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "check", "--json", "--config-dir", conf)
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+unitDir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jailkeeper check --json: %v (warnings must not change the exit code)\n%s", err, out)
	}
	var got struct {
		Jails []struct {
			Name     string `json:"name"`
			Warnings []struct {
				Kind    string   `json:"kind"`
				Units   []string `json:"units"`
				Message string   `json:"message"`
			} `json:"warnings"`
		} `json:"jails"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("check --json output %q: %v", out, err)
	}
	want := map[string]string{"chk-fires": "", "chk-nomatch": "no-match", "chk-silent": "silent", "chk-missing": "unit-missing"}
	for _, j := range got.Jails {
		var kinds []string
		for _, w := range j.Warnings {
			kinds = append(kinds, w.Kind)
			if !slices.Equal(w.Units, []string{unit(strings.TrimPrefix(j.Name, "chk-"))}) {
				t.Errorf("jail %s: warning about units %v", j.Name, w.Units)
			}
		}
		if strings.Join(kinds, ",") != want[j.Name] {
			t.Errorf("jail %s: warnings %v, want [%s]\n%s", j.Name, kinds, want[j.Name], out)
		}
		delete(want, j.Name)
	}
	if len(want) != 0 {
		t.Errorf("check --json lists no jails %v:\n%s", want, out)
	}

	// The text form says the same, and --config-only looks at nothing.
	cmd = exec.Command(bin, "check", "--config-dir", conf)
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+unitDir)
	text, err := cmd.Output()
	if err != nil || !strings.Contains(string(text), "filter sshd (mode normal) matched none of them") ||
		!strings.Contains(string(text), "unit "+unit("missing")+" does not exist") {
		t.Errorf("jailkeeper check: %v\n%s", err, text)
	}
	text, err = exec.Command(bin, "check", "--config-only", "--config-dir", conf).Output()
	if err != nil || strings.Contains(string(text), "warning:") {
		t.Errorf("jailkeeper check --config-only: %v\n%s", err, text)
	}
}
