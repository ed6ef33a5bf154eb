package config

import (
	"slices"
	"strings"
	"testing"
)

// A jail of a built-in service needs nothing but its name.
func TestJailByNameOnly(t *testing.T) {
	dir := writeDir(t, map[string]string{"10.yaml": "jails: {postfix: {}, dovecot: {ports: [993]}, myapp: {}}\n" +
		"filters:\n  myapp:\n    failregex: ['^bad login from <HOST>$']\n    units: [myapp.service]\n"})
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Effective("postfix")
	if p.Filter != "postfix" || !slices.Equal(p.Ports, []Port{25, 465, 587}) {
		t.Errorf("postfix = filter %q ports %v, want postfix [25 465 587]", p.Filter, p.Ports)
	}
	if d := cfg.Effective("dovecot"); d.Filter != "dovecot" || !slices.Equal(d.Ports, []Port{993}) {
		t.Errorf("dovecot = filter %q ports %v, want dovecot [993] (the jail's own ports win)", d.Filter, d.Ports)
	}
	if m := cfg.Effective("myapp"); m.Filter != "myapp" || m.Ports != nil {
		t.Errorf("myapp = filter %q ports %v, want the configuration's filter myapp and every port", m.Filter, m.Ports)
	}
	if s := cfg.Effective("sshd"); !slices.Equal(s.Ports, []Port{22}) {
		t.Errorf("vendor sshd jail ports %v, want [22]", s.Ports)
	}
	rt, err := cfg.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]string{}
	ports := map[string][]uint16{}
	for _, j := range rt.Jails {
		units[j.Name] = strings.Join(j.Units, " ")
	}
	for _, j := range rt.Layout.Jails {
		ports[j.Name] = j.Ports
	}
	if units["postfix"] != "postfix@-.service postfix.service" || units["myapp"] != "myapp.service" {
		t.Errorf("units = %v", units)
	}
	if !slices.Equal(ports["postfix"], []uint16{25, 465, 587}) || len(ports["myapp"]) != 0 {
		t.Errorf("firewall ports = %v", ports)
	}
}

func TestJailByNameOnlyUnknown(t *testing.T) {
	dir := writeDir(t, map[string]string{"10.yaml": "jails:\n  nosuch: {}\n"})
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "no filter and no failregex") || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("Load = %v, want an error naming line 2 and the missing filter", err)
	}
}
