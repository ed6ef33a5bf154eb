package config

import (
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

// TestAPIOnlyJail: a jail marked api_only has no filter and no units, its
// own ports and bantime, and the engine takes it (reading nothing for it).
func TestAPIOnlyJail(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"10.yaml": "jails:\n  sshd: {}\n",
		// Named like a built-in filter on purpose: api_only wins over the
		// filter of the jail's own name.
		"20.yaml": "jails:\n  fleet:\n    api_only: true\n    ports: [22, 443]\n    bantime: 1d\n  postfix:\n    api_only: true\n",
	})
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := cfg.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]jails.Jail{}
	for _, j := range rt.Jails {
		got[j.Name] = j
	}
	for _, name := range []string{"fleet", "postfix"} {
		j := got[name]
		if !j.APIOnly || j.Filter != nil || len(j.Units) != 0 || len(j.Identifiers) != 0 {
			t.Errorf("%s: %+v, want an API-only jail without filter and units", name, j)
		}
		if src := rt.Sources[name]; src != (JailSource{}) {
			t.Errorf("%s: source %+v, want none", name, src)
		}
	}
	if j := got["fleet"]; j.BanTime != 24*time.Hour {
		t.Errorf("fleet: bantime %v, want 24h", j.BanTime)
	}
	if j := got["sshd"]; j.APIOnly || j.Filter == nil {
		t.Errorf("sshd: %+v, want a journal jail", j)
	}
	for _, l := range rt.Layout.Jails {
		if l.Name == "fleet" && (len(l.Ports) != 2 || l.Ports[0] != 22 || l.Ports[1] != 443) {
			t.Errorf("fleet's ports: %v, want [22 443]", l.Ports)
		}
		if l.Name == "postfix" && len(l.Ports) != len(cfg.Defaults.Ports) {
			t.Errorf("postfix (API-only): ports %v, want the defaults' %v, not the postfix filter's", l.Ports, cfg.Defaults.Ports)
		}
	}
	e, err := jails.NewEngine(rt.Jails, rt.Whitelist, nil)
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	for _, u := range e.Units() {
		if !strings.HasPrefix(u, "ssh") {
			t.Errorf("engine reads unit %s; only the sshd jail reads units", u)
		}
	}
}

// TestAPIOnlyJailErrors: what reads the journal is refused in an API-only
// jail, and a journal jail still needs both a filter and units; every
// error names the file and line.
func TestAPIOnlyJailErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want, line string
	}{
		{"api_only with filter", "jails:\n  fleet:\n    api_only: true\n    filter: sshd\n", "remove filter", "line 4"},
		{"api_only with units", "jails:\n  fleet:\n    api_only: true\n    units: [a.service]\n", "remove units", "line 4"},
		{"api_only with failregex", "jails:\n  fleet:\n    api_only: true\n    failregex: ['x <HOST>']\n", "remove failregex", "line 4"},
		{"api_only with identifiers", "jails:\n  fleet:\n    api_only: true\n    identifiers: [x]\n", "remove identifiers", "line 4"},
		{"api_only as a default", "defaults:\n  api_only: true\n", "not a default", "line 2"},
		{"units, no filter", "jails:\n  myapp:\n    units: [myapp.service]\n", "no filter and no failregex", "line 2"},
		{"filter, no units", "filters:\n  mine:\n    failregex: ['bad <HOST>']\njails:\n  myapp:\n    filter: mine\n", "no units to read", "line 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeDir(t, map[string]string{"30-x.yaml": tc.yaml}))
			if err == nil {
				_, err = cfg.Resolve()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "30-x.yaml") || !strings.Contains(err.Error(), tc.line) {
				t.Fatalf("error = %v, want %q at 30-x.yaml %s", err, tc.want, tc.line)
			}
		})
	}
}
