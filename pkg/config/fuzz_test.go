package config

import (
	"strings"
	"testing"
)

// FuzzLoad feeds any drop-in to the loader after the vendor defaults. It
// must not panic; an error names the file; a configuration that loads
// has jail names the firewall accepts and durations in range. Resolve is
// left out (it resolves whitelist host names). Seeds: testdata/fuzz/FuzzLoad
// and the documents below.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		issueDropIn,
		"jails:\n  sshd:\n    bantime: 99999999999w\n",
		"jails:\n  sshd:\n    findtime: 300000d\n",
		"whitelist: [0.0.0.0/1, 128.0.0.0/1]\n",
		"jails:\n  web:\n    units: [nginx.service]\n    filter: nginx-http-auth\n    ports: [80, 443]\n",
		"jails: [\n",
		"a: &x [*x]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := LoadBytes([2]string{"fuzz.yaml", doc})
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.yaml") && !strings.Contains(err.Error(), VendorFile) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, name := range cfg.JailNames() {
			j := cfg.Effective(name)
			for _, d := range []*Duration{j.BanTime, j.FindTime} {
				if d != nil && (*d > Duration(MaxDuration) || (*d < 0 && *d != Permanent)) {
					t.Fatalf("jail %s: duration %v out of range", name, d.Std())
				}
			}
		}
	})
}

// FuzzParseDuration: any text is a duration in range or an error.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"10m", "1h30m", "2w1d", "600", "-1", "permanent", "99999999999w", "300000d", "1.5d", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && (d > Duration(MaxDuration) || (d < 0 && d != Permanent)) {
			t.Fatalf("ParseDuration(%q) = %v, out of range", s, d.Std())
		}
	})
}
