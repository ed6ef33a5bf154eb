package prefix

import (
	"net/netip"
	"testing"
)

func TestParseFormat(t *testing.T) {
	for _, c := range []struct{ in, norm, out string }{
		{"198.51.100.7", "198.51.100.7/32", "198.51.100.7"},
		{"198.51.100.7/32", "198.51.100.7/32", "198.51.100.7"},
		{"198.51.100.7/24", "198.51.100.0/24", "198.51.100.0/24"},
		{"::ffff:198.51.100.7", "198.51.100.7/32", "198.51.100.7"},
		{"::ffff:198.51.100.0/120", "198.51.100.0/24", "198.51.100.0/24"},
		{"::ffff:0:0/64", "::/64", "::/64"}, // wider than IPv4: stays IPv6
		{"2001:db8::1", "2001:db8::1/128", "2001:db8::1"},
		{"fe80::1%eth0", "fe80::1/128", "fe80::1"},
		{"2001:db8:1:2::5/64", "2001:db8:1:2::/64", "2001:db8:1:2::/64"},
		{"2001:db8::/128", "2001:db8::/128", "2001:db8::"},
	} {
		p, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if p.String() != c.norm {
			t.Errorf("Parse(%q) = %s, want %s", c.in, p, c.norm)
		}
		if got := Format(p); got != c.out {
			t.Errorf("Format(%s) = %q, want %q", p, got, c.out)
		}
		if back, err := Parse(Format(p)); err != nil || back != p {
			t.Errorf("Parse(Format(%s)) = %s, %v", p, back, err)
		}
	}
	for _, bad := range []string{"", "198.51.100.300", "2001:db8::/129", "host.example", "198.51.100.7/"} {
		if p, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %s, want an error", bad, p)
		}
	}
	if got := Format(netip.Prefix{}); got != "invalid Prefix" {
		t.Errorf("Format(zero) = %q", got)
	}
}
