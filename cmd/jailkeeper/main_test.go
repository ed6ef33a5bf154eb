package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(stdin string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func TestUsageAndErrors(t *testing.T) {
	cases := []struct {
		name    string
		stdin   string
		args    []string
		code    int
		errPart string
		outPart string
	}{
		{"no args", "", nil, 2, "usage: jailkeeper", ""},
		{"unknown command", "", []string{"frobnicate"}, 2, `unknown command "frobnicate"`, ""},
		{"version", "", []string{"version"}, 0, "", "jailkeeper "},
		{"help", "", []string{"--help"}, 0, "", "usage: jailkeeper"},
		{"status help", "", []string{"status", "--help"}, 0, "usage: jailkeeper status", ""},
		{"ban help after args", "", []string{"ban", "sshd", "--help"}, 0, "usage: jailkeeper ban", ""},
		{"ban missing addr", "", []string{"ban", "sshd"}, 2, "want JAIL and ADDR", ""},
		{"ban bad addr", "", []string{"ban", "sshd", "203.0.113.300"}, 1, `bad address "203.0.113.300"`, ""},
		{"ban 0.0.0.0", "", []string{"ban", "sshd", "0.0.0.0"}, 1, "bad address: not bannable: 0.0.0.0 is the unspecified address", ""},
		{"ban multicast from stdin", "203.0.113.7\nff02::1\n", []string{"ban", "sshd", "-"}, 1, "stdin line 2: bad address: not bannable: ff02::1 is multicast (ff00::/8); nothing banned", ""},
		{"ban bad duration", "", []string{"ban", "sshd", "203.0.113.7", "--for", "soon"}, 1, `bad duration "soon"`, ""},
		{"ban stdin bad line", "203.0.113.7\n# comment\n\n203.0.113.0/24\nnot-an-address\n", []string{"ban", "sshd", "-"}, 1, "stdin line 5: bad address \"not-an-address\"", ""},
		{"unban bad", "", []string{"unban", "x"}, 1, `bad address "x"`, ""},
		{"unban two", "", []string{"unban", "203.0.113.7", "203.0.113.8"}, 2, "want one ADDR", ""},
		{"unknown flag", "", []string{"status", "--jsn"}, 2, "flag provided but not defined", ""},
		{"reload args", "", []string{"reload", "now"}, 2, "takes no arguments", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(c.stdin, c.args...)
			if code != c.code || !strings.Contains(errOut, c.errPart) || !strings.Contains(out, c.outPart) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stderr containing %q, stdout containing %q",
					code, out, errOut, c.code, c.errPart, c.outPart)
			}
			if c.code == 1 && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Fatalf("error is not one line: %q", errOut)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := "whitelist: [198.51.100.3, 2001:db8::3]\nignoreself: false\nfirewall: {backend: iptables}\njails:\n  sshd:\n    units: [sshd.service, ssh]\n    filter: sshd\n    maxretry: 3\n    findtime: 10m\n    bantime: 1h\n    ports: [22]\n"
	if err := os.WriteFile(filepath.Join(dir, "10-sshd.yaml"), []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("", "check", "--json", "--config-dir", dir)
	if code != 0 {
		t.Fatalf("check: exit %d: %s", code, errOut)
	}
	var got struct {
		Backend   string   `json:"backend"`
		Whitelist []string `json:"whitelist"`
		Jails     []struct {
			Name     string   `json:"name"`
			Units    []string `json:"units"`
			MaxRetry int      `json:"maxretry"`
		} `json:"jails"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("check --json output %q: %v", out, err)
	}
	if got.Backend != "iptables" || len(got.Jails) != 1 || got.Jails[0].MaxRetry != 3 ||
		strings.Join(got.Jails[0].Units, " ") != "sshd.service ssh.service" {
		t.Fatalf("check --json = %+v", got)
	}
	// Addresses print as everywhere else: a single address bare.
	if strings.Join(got.Whitelist, " ") != "127.0.0.0/8 ::1 198.51.100.3 2001:db8::3" {
		t.Errorf("check --json whitelist = %q", got.Whitelist)
	}
	bad := "jails:\n  sshd:\n    maxrety: 3\n"
	if err := os.WriteFile(filepath.Join(dir, "20-bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI("", "check", "--config-dir", dir)
	want := filepath.Join(dir, "20-bad.yaml") + `: line 3: unknown key "maxrety"`
	if code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("check on a bad drop-in: exit %d, %q; want exit 1 and %q", code, errOut, want)
	}
}

// TestCheckRefusesBadConfig: a configuration that does not load makes
// check fail with the file and line (the daemon refuses it too:
// cmd/jailkeeperd's TestRefusesBadConfig); a jail name too long for the
// firewall's object names is such an error too.
func TestCheckRefusesBadConfig(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"bad duration", "jails:\n  sshd:\n    bantime: 1x\n", "10.yaml: line 3: bad duration \"1x\""},
		{"jail name of 20 characters", "jails:\n  twenty-characters-ab:\n    filter: sshd\n", "10.yaml: line 2: bad jail name \"twenty-characters-ab\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "10.yaml"), []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			if code, _, errOut := runCLI("", "check", "--config-dir", dir); code != 1 || !strings.Contains(errOut, c.want) {
				t.Errorf("check: exit %d, %q; want exit 1 and %q", code, errOut, c.want)
			}
		})
	}
}

// TestDaemonNeedsItsSibling: `jailkeeper daemon` execs jailkeeperd next
// to it, and says which file it missed (the test binary has none).
func TestDaemonNeedsItsSibling(t *testing.T) {
	code, _, errOut := runCLI("", "daemon", "--config-dir", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "jailkeeperd: no such file or directory") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
