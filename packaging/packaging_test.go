// Package packaging holds the systemd unit, D-Bus policy and example
// drop-ins; its tests check them with the real systemd tools.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jailkeeper/jailkeeper/pkg/config"
)

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (CI is set: failing instead of skipping)", name)
		}
		t.Skipf("%s not found", name)
	}
}

func TestUnitFile(t *testing.T) {
	requireTool(t, "systemd-analyze")
	b, err := os.ReadFile("systemd/jailkeeper.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=jailkeeper",
		"ExecStart=/usr/local/bin/jailkeeper daemon", "ExecReload=/usr/local/bin/jailkeeper reload", "BusName=org.jailkeeper",
		// Ordered like a firewall (systemdtest boots it to check).
		"DefaultDependencies=no", "Wants=network-pre.target", "Before=network-pre.target ssh.service sshd.service"} {
		if !strings.Contains(unit, "\n"+want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if strings.Contains(unit, "After=network") {
		t.Errorf("unit is ordered after the network: it must come before it")
	}
	// Verify with the binary path pointing at an executable that exists.
	dir := t.TempDir()
	path := filepath.Join(dir, "jailkeeper.service")
	unit = strings.ReplaceAll(unit, "/usr/local/bin/jailkeeper", "/bin/true")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
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
	m := regexp.MustCompile(`Overall exposure level for jailkeeper.service: ([0-9.]+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if score, _ := strconv.ParseFloat(m[1], 64); score > 3.0 {
		t.Fatalf("exposure %s, want ≤ 3.0 (hardened unit)", m[1])
	}
}

func TestExampleDropInLoads(t *testing.T) {
	cfg, err := config.Load("examples")
	if err != nil {
		t.Fatal(err)
	}
	if names := cfg.JailNames(); len(names) != 1 || names[0] != "sshd" {
		t.Fatalf("jails = %v", names)
	}
}
