package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestActionsUnitFile checks jailkeeper-actions.service with systemd's own
// tools: it verifies, and its exposure stays that of a hardened unit.
func TestActionsUnitFile(t *testing.T) {
	requireTool(t, "systemd-analyze")
	b, err := os.ReadFile("systemd/jailkeeper-actions.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"Type=notify", "ExecStart=/usr/local/bin/jailkeeper actions", "Restart=on-failure",
		"RestartPreventExitStatus=78", "StateDirectory=jailkeeper-actions", "After=jailkeeper.service", "NoNewPrivileges=yes"} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if strings.Contains(unit, "\nBindsTo=") {
		t.Error("BindsTo= would stop the actions service on every daemon restart, which it follows by itself")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "jailkeeper-actions.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/jailkeeper", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for jailkeeper-actions.service: ([0-9.]+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if score, _ := strconv.ParseFloat(m[1], 64); score > 3.0 {
		t.Fatalf("exposure %s, want ≤ 3.0 (hardened unit)", m[1])
	}
	t.Logf("exposure %s", m[1])
}
