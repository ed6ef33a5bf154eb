package prefix

import (
	"errors"
	"net/netip"
	"strings"
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

// TestRefuse: the one rule for what may never be banned.
func TestRefuse(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")}
	for _, c := range []struct {
		in   string
		want string // "" = bannable, else a part of the error
	}{
		{"203.0.113.9", ""},
		{"203.0.113.0/24", ""},
		{"2001:db8::2", ""},
		{"2001:db8::/64", ""}, // contains an own address: the whitelist exempts it
		{"198.51.100.0/24", ""},
		{"0.0.0.0", "0.0.0.0 is the unspecified address"},
		{"0.1.2.3", "is the unspecified address"},
		{"::", ":: is the unspecified address"},
		{"::ffff:0.0.0.0", "0.0.0.0 is the unspecified"},
		{"0.0.0.0/0", "0.0.0.0/0 covers"},
		{"::/0", "::/0 covers"},
		{"128.0.0.0/1", "covers link-local"},
		{"127.0.0.1", "loopback"},
		{"::1", "loopback"},
		{"169.254.1.1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fe80::/64", "link-local"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"198.51.100.1", "198.51.100.1 is an address of this machine"},
		{"2001:db8::1", "an address of this machine"},
	} {
		p, err := Parse(c.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.in, err)
		}
		err = Refuse(p, own)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Refuse(%s) = %v, want bannable", c.in, err)
		case c.want != "" && err == nil:
			t.Errorf("Refuse(%s) = nil, want an error with %q", c.in, c.want)
		case c.want != "" && !errors.Is(err, ErrNotBannable):
			t.Errorf("Refuse(%s) = %v, not ErrNotBannable", c.in, err)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("Refuse(%s) = %q, want %q in it", c.in, err, c.want)
		}
	}
	if err := Refuse(netip.Prefix{}, nil); err == nil {
		t.Error("Refuse(invalid) = nil")
	}
}

func TestCoversAll(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"0.0.0.0/0"}, "IPv4"},
		{[]string{"0.0.0.0/1", "128.0.0.0/1"}, "IPv4"},
		{[]string{"128.0.0.0/1", "10.0.0.0/8", "0.0.0.0/1"}, "IPv4"},
		{[]string{"0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1", "::1/128"}, "IPv4"},
		{[]string{"::/1", "8000::/1"}, "IPv6"},
		{[]string{"::ffff:0.0.0.0/97", "::ffff:128.0.0.0/97"}, "IPv4"},
		{[]string{"0.0.0.0/1", "128.0.0.0/2", "224.0.0.0/3"}, ""}, // 192.0.0.0/3 left
		{[]string{"0.0.0.0/1"}, ""},
		{[]string{"128.0.0.0/1"}, ""},
		{[]string{"0.0.0.0/1", "128.0.0.1/32", "::/1"}, ""},
		{nil, ""},
	} {
		var ps []netip.Prefix
		for _, s := range c.in {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		fam, ok := CoversAll(ps)
		if fam != c.want || ok != (c.want != "") {
			t.Errorf("CoversAll(%v) = %q, %v; want %q", c.in, fam, ok, c.want)
		}
	}
}
