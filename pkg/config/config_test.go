package config

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

const issueDropIn = `whitelist: [198.51.100.3, 2001:db8::3]
firewall: {backend: iptables}
jails:
  sshd:
    units: [sshd.service, ssh.service]
    filter: sshd
    maxretry: 3
    findtime: 10m
    bantime: 1h
    ports: [22]
`

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestIssueDropIn(t *testing.T) {
	dir := writeDir(t, map[string]string{"10-sshd.yaml": issueDropIn})
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.Effective("sshd")
	if *j.MaxRetry != 3 || j.FindTime.Std() != 10*time.Minute || j.BanTime.Std() != time.Hour {
		t.Fatalf("sshd = %+v", j)
	}
	if len(j.Ports) != 1 || j.Ports[0] != 22 || strings.Join(j.Units, ",") != "sshd.service,ssh.service" {
		t.Fatalf("ports/units = %v %v", j.Ports, j.Units)
	}
	if cfg.Firewall.Backend != "iptables" || cfg.Firewall.WhitelistAction != "return" {
		t.Fatalf("firewall = %+v (defaults must survive a partial mapping)", cfg.Firewall)
	}
	if len(cfg.Whitelist) != 2 || cfg.Whitelist[1] != "2001:db8::3" {
		t.Fatalf("whitelist = %v", cfg.Whitelist)
	}
	if p := cfg.Pos("jails.sshd.maxretry"); p.Line != 7 || !strings.HasSuffix(p.File, "10-sshd.yaml") {
		t.Fatalf("position of maxretry = %v", p)
	}
}

func TestDropInsMergeKeyByKey(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"10-base.yaml":  issueDropIn,
		"20-local.yaml": "jails:\n  sshd:\n    bantime: permanent\n    ports: [2222]\n",
		"30-off.yaml":   "firewall:\n  whitelist_action: accept\n",
		"README":        "not yaml, ignored: only *.yaml files are read",
	})
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.Effective("sshd")
	if *j.BanTime != Permanent || *j.MaxRetry != 3 || j.Ports[0] != 2222 || len(j.Ports) != 1 {
		t.Fatalf("merged sshd = bantime %v maxretry %v ports %v", *j.BanTime, *j.MaxRetry, j.Ports)
	}
	if cfg.Firewall.Backend != "iptables" || cfg.Firewall.WhitelistAction != "accept" {
		t.Fatalf("merged firewall = %+v", cfg.Firewall)
	}
	if len(cfg.Files) != 3 {
		t.Fatalf("files = %v", cfg.Files)
	}
}

func TestErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "jails:\n  sshd:\n    filter: sshd\n    maxrety: 3\n", []string{"bad.yaml", "line 4", `unknown key "maxrety"`}},
		{"bad duration", "jails:\n  sshd:\n    bantime: 1x\n", []string{"bad.yaml", "line 3", `bad duration "1x"`}},
		{"bad address", "whitelist:\n  - 198.51.100.300\n", []string{"bad.yaml", "line 2", `bad address "198.51.100.300"`}},
		{"bad cidr", "whitelist: [2001:db8::/129]\n", []string{"bad.yaml", "line 1", "bad address"}},
		{"unknown filter", "jails:\n  web:\n    units: [nginx.service]\n    filter: nosuch\n", []string{"bad.yaml", "line 4", `unknown filter "nosuch"`}},
		{"bad port", "jails:\n  sshd:\n    ports: [70000]\n", []string{"bad.yaml", "line 3", "bad port"}},
		{"bad backend", "firewall:\n  backend: pf\n", []string{"bad.yaml", "line 2", `bad firewall backend "pf"`}},
		{"bad maxretry type", "jails:\n  sshd:\n    maxretry: three\n", []string{"bad.yaml", "line 3"}},
		{"zero maxretry", "jails:\n  sshd:\n    maxretry: 0\n", []string{"bad.yaml", "line 3", "maxretry"}},
		{"not a mapping", "- a\n- b\n", []string{"bad.yaml", "line 1"}},
		{"bad yaml", "jails: [\n", []string{"bad.yaml"}},
		{"two documents", "jails: {}\n---\njails: {}\n", []string{"bad.yaml", "one YAML document"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"bad.yaml": c.body})
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load succeeded on a bad config")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDurations(t *testing.T) {
	cases := map[string]time.Duration{
		"10m": 10 * time.Minute, "1h": time.Hour, "1h30m": 90 * time.Minute, "1d": 24 * time.Hour,
		"1w": 7 * 24 * time.Hour, "2w1d": 15 * 24 * time.Hour, "600": 10 * time.Minute, "-1": -1, "permanent": -1,
	}
	for in, want := range cases {
		got, err := ParseDuration(in)
		if err != nil || got.Std() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got.Std(), err, want)
		}
	}
	for _, bad := range []string{"", "x", "1x", "-5", "h", "1.5.3h", "1hh", "5 m"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	// Huge values are a range error, never an overflow into "negative".
	for _, huge := range []string{"99999999999w", "300000d", "36501d", "9223372036854775807", "99999999999999999999", "9999999999999999h"} {
		_, err := ParseDuration(huge)
		if err == nil || !strings.Contains(err.Error(), "out of range, the longest is 100 years") {
			t.Errorf("ParseDuration(%q) = %v, want a range error", huge, err)
		}
	}
	if d, err := ParseDuration("36500d"); err != nil || d.Std() != MaxDuration {
		t.Errorf("ParseDuration(36500d) = %v, %v", d.Std(), err)
	}
}

func TestDisableJail(t *testing.T) {
	dir := writeDir(t, map[string]string{"10.yaml": "jails:\n  sshd:\n    enabled: false\n"})
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.JailNames(); len(n) != 0 {
		t.Fatalf("JailNames = %v after enabled: false", n)
	}
}

func TestMissingDirUsesDefaults(t *testing.T) {
	cfg, err := Load(filepath.Join(t.TempDir(), "absent"))
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.JailNames(); len(n) != 1 || n[0] != "sshd" {
		t.Fatalf("default jails = %v", n)
	}
}

// TestJailNamesFirewallAccepts: a jail name the configuration accepts is
// one the firewall can build a layout for, and the other way round, so
// `jailkeeper check` never says OK to a configuration the daemon then
// cannot start with.
func TestJailNamesFirewallAccepts(t *testing.T) {
	names := []string{"a", "sshd", "web-1_x", "sixteen-chars-ab", "seventeen-chars-a", "twenty-characters-ab",
		"-dash", "_under", "Upper", "dot.ted", strings.Repeat("x", 40)}
	for _, name := range names {
		dir := writeDir(t, map[string]string{"j.yaml": "jails:\n  " + name + ":\n    filter: sshd\n"})
		cfg, err := Load(dir)
		var rt *Runtime
		if err == nil {
			rt, err = cfg.Resolve()
		}
		fwErr := (&firewall.None{}).Setup(firewall.Layout{Jails: []firewall.JailRules{{Name: name}}}, nil)
		if (err == nil) != (fwErr == nil) {
			t.Errorf("jail %q: config says %v, firewall says %v", name, err, fwErr)
		}
		if err == nil {
			if err := (&firewall.None{}).Setup(rt.Layout, nil); err != nil {
				t.Errorf("jail %q: the resolved layout is refused: %v", name, err)
			}
		} else if !strings.Contains(err.Error(), "j.yaml") || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("jail %q: error %q does not name the file and line", name, err)
		}
	}
	if firewall.MaxJailName != 16 {
		t.Errorf("MaxJailName = %d; the names above assume 16", firewall.MaxJailName)
	}
}

// TestVendorDefaultsAreTheEngines: the defaults an administrator sees in
// the vendor file are the ones the engine applies to unset fields.
func TestVendorDefaultsAreTheEngines(t *testing.T) {
	cfg, err := Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Defaults
	if *d.MaxRetry != jails.DefaultMaxRetry || d.FindTime.Std() != jails.DefaultFindTime ||
		d.BanTime.Std() != jails.DefaultBanTime || *d.IPv6Prefix != jails.DefaultIPv6Prefix ||
		*d.MaxTracked != jails.DefaultMaxTracked {
		t.Errorf("vendor defaults maxretry %d findtime %v bantime %v ipv6_prefix %d max_tracked %d differ from the engine's",
			*d.MaxRetry, d.FindTime.Std(), d.BanTime.Std(), *d.IPv6Prefix, *d.MaxTracked)
	}
}

// TestWhitelistCoveringEverything: a whitelist that together covers a
// whole family is refused like 0.0.0.0/0, naming the key.
func TestWhitelistCoveringEverything(t *testing.T) {
	for _, wl := range []string{"[0.0.0.0/0]", "[0.0.0.0/1, 128.0.0.0/1]", "['::/1', '8000::/1']", "[0.0.0.0/2, 64.0.0.0/2, 128.0.0.0/1]"} {
		cfg, err := LoadBytes([2]string{"wl.yaml", "ignoreself: false\nwhitelist: " + wl + "\n"})
		if err != nil {
			t.Fatalf("%s: %v", wl, err)
		}
		_, err = cfg.Resolve()
		if err == nil || !strings.Contains(err.Error(), "would exempt every source") || !strings.Contains(err.Error(), "wl.yaml") {
			t.Errorf("whitelist %s: Resolve = %v, want refused naming wl.yaml", wl, err)
		}
	}
	cfg, err := LoadBytes([2]string{"wl.yaml", "ignoreself: false\nwhitelist: [0.0.0.0/1, 128.0.0.0/2]\n"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Resolve(); err != nil {
		t.Errorf("a whitelist with a gap refused: %v", err)
	}
}

// TestLoosePermissionsRefused: a world-writable configuration directory
// or drop-in is refused with an error naming it (sshd's StrictModes).
func TestLoosePermissionsRefused(t *testing.T) {
	dir := writeDir(t, map[string]string{"10-a.yaml": "jails: {}\n", "20-b.yaml": "jails: {}\n"})
	if _, err := Load(dir); err != nil {
		t.Fatalf("tight permissions refused: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, "20-b.yaml"), 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "20-b.yaml: it is world-writable (mode 0666)") {
		t.Errorf("world-writable drop-in: Load = %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, "20-b.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "world-writable (mode 0777)") {
		t.Errorf("world-writable directory: Load = %v", err)
	}
}

// TestWhitelistNameNotResolving: a host name that does not resolve (DNS
// not up at boot) is no error: the whitelist holds the rest, the name is
// in Unresolved and a warning says so.
func TestWhitelistNameNotResolving(t *testing.T) {
	orig := jails.LookupNetIP
	t.Cleanup(func() { jails.LookupNetIP = orig })
	jails.LookupNetIP = func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if host == "ok.example.com" {
			return []netip.Addr{netip.MustParseAddr("198.51.100.77")}, nil
		}
		return nil, fmt.Errorf("lookup %s: no answer", host)
	}
	cfg, err := LoadBytes([2]string{"wl.yaml", "ignoreself: false\nwhitelist: [admin-box.example.com, ok.example.com, 203.0.113.5]\n"})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := cfg.Resolve()
	if err != nil {
		t.Fatalf("Resolve with a name not resolving: %v", err)
	}
	if len(rt.Unresolved) != 1 || rt.Unresolved[0] != "admin-box.example.com" {
		t.Errorf("Unresolved = %q", rt.Unresolved)
	}
	for _, a := range []string{"198.51.100.77", "203.0.113.5"} {
		if !rt.Whitelist.Contains(netip.MustParseAddr(a)) {
			t.Errorf("whitelist lacks %s", a)
		}
	}
	if w := strings.Join(rt.Warnings, "\n"); !strings.Contains(w, `"admin-box.example.com": lookup admin-box.example.com: no answer`) || !strings.Contains(w, "retrying in the background") {
		t.Errorf("warnings: %s", w)
	}
}
