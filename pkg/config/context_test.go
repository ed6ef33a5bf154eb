package config

import (
	"net/netip"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

// A filter of the configuration may keep per-process context.
func TestFilterContext(t *testing.T) {
	dir := writeDir(t, map[string]string{"10.yaml": "jails: {myapp: {}}\n" +
		"filters:\n  myapp:\n" +
		"    context: ['^session opened for <HOST> port <PORT>$']\n" +
		"    context_end: ['^session closed$']\n" +
		"    failregex: ['^<CTXHOST>login failed for <USER>$']\n" +
		"    units: [myapp.service]\n"})
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := cfg.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	var f *jails.Filter
	for _, j := range rt.Jails {
		if j.Name == "myapp" {
			f = j.Filter
		}
	}
	if f == nil || !f.HasContext() {
		t.Fatalf("jail myapp's filter %v keeps no context", f)
	}
	c := jails.NewProcContexts(0, time.Minute)
	p := jails.Proc{Unit: "myapp.service", PID: 7}
	now := time.Now()
	f.MatchIn(c, p, "session opened for 203.0.113.4 port 999", now)
	m, ok := f.MatchIn(c, p, "login failed for bob", now)
	if !ok || m.Addr != netip.MustParseAddr("203.0.113.4") || m.User != "bob" {
		t.Fatalf("MatchIn = %+v, %v; want 203.0.113.4 for bob", m, ok)
	}
	f.MatchIn(c, p, "session closed", now)
	if _, ok := f.MatchIn(c, p, "login failed for bob", now); ok {
		t.Fatal("the context outlived its context_end line")
	}
}
