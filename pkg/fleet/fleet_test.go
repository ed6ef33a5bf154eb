package fleet

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestKeys(t *testing.T) {
	for _, c := range []struct{ prefix, key string }{
		{"198.51.100.7/32", "ban.web1.sshd.198_51_100_7"},
		{"198.51.100.0/24", "ban.web1.sshd.198_51_100_0/24"},
		{"2001:db8::1/128", "ban.web1.sshd.2001-db8--1"},
		{"2001:db8:1::/64", "ban.web1.sshd.2001-db8-1--/64"},
	} {
		k := Key{Origin: "web1", Jail: "sshd", Prefix: netip.MustParsePrefix(c.prefix)}
		if got := k.String(); got != c.key {
			t.Errorf("key of %s = %q, want %q", c.prefix, got, c.key)
		}
		back, err := ParseKey(c.key)
		if err != nil || back != k {
			t.Errorf("ParseKey(%q) = %+v, %v; want %+v", c.key, back, err, k)
		}
	}
	for _, bad := range []string{
		"", "ban", "ban.web1.sshd", "bam.web1.sshd.198_51_100_7", "ban.web1.sshd.198_51_100_7.x",
		"ban.web 1.sshd.198_51_100_7", "ban.web1.SSHD.198_51_100_7", "ban.web1.sshd.198_51_100_300",
		"ban.web1.sshd.198_51_100_7/32",     // a host is written bare
		"ban.web1.sshd.198_51_100_1/24",     // host bits set
		"ban.web1.sshd.2001-0db8--1",        // not the normal form
		"ban.web1.sshd.--ffff-198_51_100_7", // IPv4-mapped
		"ban." + strings.Repeat("a", MaxOrigin+1) + ".sshd.198_51_100_7",
	} {
		if k, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) = %+v, want an error", bad, k)
		}
	}
}

func TestFilters(t *testing.T) {
	p := netip.MustParsePrefix("2001:db8::7/128")
	if got := AddressFilter(p); got != "ban.*.*.2001-db8--7" {
		t.Errorf("AddressFilter = %q", got)
	}
	if got := OriginFilter("web1"); got != "ban.web1.>" {
		t.Errorf("OriginFilter = %q", got)
	}
}

func TestOriginFromHostname(t *testing.T) {
	for host, want := range map[string]string{"web1": "web1", "web1.example.org": "web1", "mail_2": "mail_2", "hôte": "h_te"} {
		if got, err := OriginFromHostname(host); err != nil || got != want {
			t.Errorf("OriginFromHostname(%q) = %q, %v; want %q", host, got, err, want)
		}
	}
	for _, host := range []string{"", ".example.org", "-web"} {
		if got, err := OriginFromHostname(host); err == nil {
			t.Errorf("OriginFromHostname(%q) = %q, want an error", host, got)
		}
	}
}

var start = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func record() Record {
	return Record{Prefix: netip.MustParsePrefix("203.0.113.9/32"), Jail: "sshd", Reason: "5 failures",
		Start: start, Expires: start.Add(time.Hour), Origin: "web1"}
}

func TestRoundTrip(t *testing.T) {
	r := record()
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(r.Key().String(), b)
	if err != nil {
		t.Fatal(err)
	}
	if got != r {
		t.Fatalf("Decode = %+v, want %+v", got, r)
	}
	perm := r
	perm.Expires = time.Time{}
	if b, err = perm.Encode(); err != nil {
		t.Fatal(err)
	}
	if got, err = Decode(perm.Key().String(), b); err != nil || !got.Expires.IsZero() || got.TTL(start) != 0 {
		t.Fatalf("permanent: %+v, %v", got, err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	key := "ban.web1.sshd.203_0_113_9"
	good := `{"prefix":"203.0.113.9/32","jail":"sshd","reason":"x","start":"2026-11-29T10:00:00Z","expires":"2026-11-29T11:00:00Z","origin":"web1"}`
	if _, err := Decode(key, []byte(good)); err != nil {
		t.Fatalf("the good value: %v", err)
	}
	for name, v := range map[string]string{
		"empty":          ``,
		"not json":       `ban`,
		"array":          `[1,2]`,
		"unknown field":  strings.Replace(good, `"jail"`, `"extra":1,"jail"`, 1),
		"trailing data":  good + `{}`,
		"other origin":   strings.Replace(good, `"origin":"web1"`, `"origin":"web2"`, 1),
		"other jail":     strings.Replace(good, `"jail":"sshd"`, `"jail":"postfix"`, 1),
		"other address":  strings.Replace(good, "203.0.113.9/32", "203.0.113.8/32", 1),
		"wider network":  strings.Replace(good, "203.0.113.9/32", "0.0.0.0/0", 1),
		"bad prefix":     strings.Replace(good, "203.0.113.9/32", "203.0.113.900/32", 1),
		"no start":       strings.Replace(good, `"start":"2026-11-29T10:00:00Z",`, ``, 1),
		"expires before": strings.Replace(good, "T11:00", "T09:00", 1),
		"control char":   strings.Replace(good, `"reason":"x"`, `"reason":"x\u001b[2J"`, 1),
		"long reason":    strings.Replace(good, `"reason":"x"`, `"reason":"`+strings.Repeat("x", MaxReason+1)+`"`, 1),
		"oversized":      strings.Replace(good, `"reason":"x"`, `"reason":"x"`+strings.Repeat(" ", MaxValueSize), 1),
	} {
		if r, err := Decode(key, []byte(v)); err == nil {
			t.Errorf("%s: Decode = %+v, want an error", name, r)
		}
	}
	world := strings.Replace(good, "203.0.113.9/32", "0.0.0.0/0", 1)
	if r, err := Decode("ban.web1.sshd.0_0_0_0/0", []byte(world)); err == nil {
		t.Errorf("a ban of every IPv4 address was accepted: %+v", r)
	}
	if _, err := Decode("ban.web1.sshd", []byte(good)); err == nil {
		t.Error("a bad key was accepted")
	}
}

func TestEncodeRefuses(t *testing.T) {
	r := record()
	r.Origin = "web.1"
	if _, err := r.Encode(); err == nil {
		t.Error("an origin with a dot was encoded")
	}
	r = record()
	r.Prefix = netip.MustParsePrefix("203.0.113.9/24")
	if _, err := r.Encode(); err == nil {
		t.Error("a prefix with host bits was encoded")
	}
}

func TestDecide(t *testing.T) {
	p := Policy{Self: "web2", MaxBanTime: 24 * time.Hour}
	r := record()
	if d, ok := p.Decide(r, start.Add(10*time.Minute)); !ok || d != 50*time.Minute {
		t.Errorf("Decide = %v, %v; want 50m", d, ok)
	}
	if _, ok := p.Decide(r, start.Add(time.Hour)); ok {
		t.Error("an expired record was applied")
	}
	own := r
	own.Origin = "web2"
	if _, ok := p.Decide(own, start); ok {
		t.Error("this server's own record was applied")
	}
	long := r
	long.Expires = start.Add(7 * 24 * time.Hour)
	if d, ok := p.Decide(long, start); !ok || d != 24*time.Hour {
		t.Errorf("a week's ban: %v, %v; want the 24h cap", d, ok)
	}
	perm := r
	perm.Expires = time.Time{}
	if d, ok := p.Decide(perm, start); !ok || d != 24*time.Hour {
		t.Errorf("a permanent ban: %v, %v; want the 24h cap", d, ok)
	}
	if d, ok := (Policy{Self: "web2"}).Decide(perm, start); !ok || d != 0 {
		t.Errorf("a permanent ban without cap: %v, %v; want permanent (0)", d, ok)
	}
	if got := r.LocalReason(); got != "fleet: sshd on web1" {
		t.Errorf("LocalReason = %q", got)
	}
}
