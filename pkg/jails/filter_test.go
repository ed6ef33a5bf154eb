package jails

import (
	"net/netip"
	"sort"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		def  FilterDef
		want string
	}{
		{"no failregex", FilterDef{}, "no failregex"},
		{"no host", FilterDef{FailRegex: []string{`^x <HOST>$`, `^Failed for <USER>$`}}, `failregex[1] "^Failed for <USER>$": no <HOST>`},
		{"bad regex", FilterDef{FailRegex: []string{`^x <HOST> (unclosed`}}, `failregex[0] "^x <HOST> (unclosed"`},
		{"bad ignoreregex", FilterDef{FailRegex: []string{`^x <HOST>`}, IgnoreRegex: []string{`[`}}, `ignoreregex[0] "["`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.def)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	f, err := Compile(FilterDef{
		FailRegex: []string{
			`^auth failed for <USER> from <HOST> port <PORT>$`,
			`\w+ probe from <HOST>$`, // no literal prefix: always tried, in order
		},
		IgnoreRegex: []string{`^auth failed for trusted `},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		msg   string
		ok    bool
		addr  string
		user  string
		port  uint16
		regex int
	}{
		{"auth failed for bob from 203.0.113.5 port 4711", true, "203.0.113.5", "bob", 4711, 0},
		{"auth failed for bob from ::ffff:203.0.113.5 port 1", true, "203.0.113.5", "bob", 1, 0},
		{"auth failed for bob from fe80::1%eth0 port 2", true, "fe80::1", "bob", 2, 0},
		{"auth failed for trusted from 203.0.113.5 port 1", false, "", "", 0, 0},
		{"xauth failed for bob from 203.0.113.5 port 1", false, "", "", 0, 0}, // anchored
		{"auth failed for bob from 300.1.1.1 port 1", false, "", "", 0, 0},
		{"scan probe from 2001:db8::1", true, "2001:db8::1", "", 0, 1},
		{"", false, "", "", 0, 0},
	}
	for _, tc := range tests {
		m, ok := f.Match(tc.msg)
		if ok != tc.ok {
			t.Errorf("%q: ok=%v, want %v", tc.msg, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if m.Addr != netip.MustParseAddr(tc.addr) || m.User != tc.user || m.Port != tc.port || m.Regex != tc.regex {
			t.Errorf("%q: got %+v, want %s %q %d #%d", tc.msg, m, tc.addr, tc.user, tc.port, tc.regex)
		}
	}
	if !f.Failed("auth failed for trusted from 203.0.113.5 port 1") || !f.Ignored("auth failed for trusted from 203.0.113.5 port 1") {
		t.Error("Failed/Ignored disagree with Match")
	}
}

func TestLiteralPrefixes(t *testing.T) {
	tests := []struct {
		re   string
		want []string
	}{
		{`^Invalid user x`, []string{"Invalid user x"}},
		{`^(?:error: )?Failed (?:password|none) for`, []string{"Failed password for", "Failed none for", "error: Failed password for", "error: Failed none for"}},
		{`^\w+ x`, nil},
		{`^(?i)failed`, nil},
		{`^(?:a|b)+c`, []string{"a", "b"}},
	}
	for _, tc := range tests {
		got := literalPrefixes(tc.re)
		sort.Strings(got)
		sort.Strings(tc.want)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: %q, want %q", tc.re, got, tc.want)
		}
	}
}

func TestBuiltinErrors(t *testing.T) {
	if _, err := Builtin("nosuch", ""); err == nil || !strings.Contains(err.Error(), `unknown filter "nosuch"`) || !strings.Contains(err.Error(), "sshd") {
		t.Errorf("unknown name: %v", err)
	}
	if _, err := Builtin("sshd", "nosuchmode"); err == nil || !strings.Contains(err.Error(), `no mode "nosuchmode"`) || !strings.Contains(err.Error(), "aggressive") {
		t.Errorf("unknown mode: %v", err)
	}
	n, _ := Builtin("sshd", "normal")
	a, _ := Builtin("sshd", "aggressive")
	if len(a.FailRegex) <= len(n.FailRegex) {
		t.Errorf("aggressive adds nothing")
	}
	want := []string{"apache-auth", "apache-badbots", "apache-botsearch", "apache-noscript", "courier-auth", "courier-smtp", "dovecot", "lighttpd-auth", "nginx-botsearch", "nginx-http-auth", "nginx-limit-req", "postfix", "proftpd", "pure-ftpd", "qmail", "sshd", "vsftpd"}
	if got := strings.Join(BuiltinNames(), ","); got != strings.Join(want, ",") {
		t.Errorf("names %s", got)
	}
}

func TestWhitelist(t *testing.T) {
	w := NewWhitelist([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("::ffff:203.0.113.7/128")})
	for _, tc := range []struct {
		a  string
		in bool
	}{{"198.51.100.200", true}, {"::ffff:198.51.100.1", true}, {"203.0.113.7", true}, {"203.0.113.8", false}, {"127.0.0.53", true}, {"::1", true}, {"2001:db8::1", false}} {
		if got := w.Contains(netip.MustParseAddr(tc.a)); got != tc.in {
			t.Errorf("Contains(%s) = %v", tc.a, got)
		}
	}
	if !w.Overlaps(netip.MustParsePrefix("198.0.0.0/8")) || !w.Overlaps(netip.MustParsePrefix("127.0.0.1/32")) || w.Overlaps(netip.MustParsePrefix("203.0.113.8/32")) {
		t.Error("Overlaps wrong")
	}
	ps, err := ResolveWhitelist([]string{"203.0.113.9", "2001:db8::/32", "localhost"}, true)
	if err != nil {
		t.Fatal(err)
	}
	has := map[netip.Prefix]bool{}
	for _, p := range ps {
		has[p] = true
	}
	for _, p := range []string{"203.0.113.9/32", "2001:db8::/32", "127.0.0.1/32"} {
		if !has[netip.MustParsePrefix(p)] {
			t.Errorf("ResolveWhitelist lacks %s: %v", p, ps)
		}
	}
	if _, err := ResolveWhitelist([]string{"not a host/x"}, false); err == nil {
		t.Error("bad entry accepted")
	}
}

func TestRequiredLiterals(t *testing.T) {
	tests := []struct {
		re   string
		want []string
	}{
		{`^(?:Received disconnect from <HOST>(?: port <PORT>)?:\s*3: \S+: Auth (?:fail|cancel))`, []string{": Auth "}},
		{`^(?:Invalid user (.*) from ([0-9.]+) port ([0-9]+)$)`, []string{" from ", " port "}},
		{`^(?:(?:a|b)cdef(?:gh)?ijkl)`, []string{"cdef", "ijkl"}},
		{`^(?:(?i)abcdef x)`, nil},
		{`^(?:abcdef(?:xyzw)+)`, []string{"xyzw"}},
		{`^(?:(abcdef)|xyzw)`, nil},
	}
	for _, tc := range tests {
		exp, _, _ := expand(tc.re)
		got := requiredLiterals(exp)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: %q, want %q", tc.re, got, tc.want)
		}
	}
}
