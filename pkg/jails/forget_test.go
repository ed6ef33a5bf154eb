package jails

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestOverlapSetMatchesOverlaps: the set's answer is Prefix.Overlaps of
// some member, for members and keys of mixed families and lengths.
func TestOverlapSetMatchesOverlaps(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	randPrefix := func() netip.Prefix {
		if r.IntN(2) == 0 {
			p, _ := netip.AddrFrom4([4]byte{198, 51, byte(r.IntN(4)), byte(r.IntN(8))}).Prefix([]int{16, 24, 30, 32}[r.IntN(4)])
			return p
		}
		p, _ := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(r.IntN(4)), 0, 0, byte(r.IntN(4)), 15: byte(r.IntN(4))}).Prefix([]int{32, 48, 56, 64, 128}[r.IntN(5)])
		return p
	}
	for range 200 {
		var members []netip.Prefix
		for range r.IntN(6) {
			members = append(members, randPrefix())
		}
		s := newOverlapSet(members)
		for range 50 {
			k := randPrefix()
			want := false
			for _, m := range members {
				want = want || m.Overlaps(k)
			}
			if got := s.overlaps(k); got != want {
				t.Fatalf("members %v, key %v: overlaps = %v, want %v", members, k, got, want)
			}
		}
	}
}

// TestForgetManyCostsPerBan: forgetting 2,000 addresses among 200,000
// tracked ones drops exactly those, and a /24 among them drops its keys,
// without a scan per address (bounded time, generous for a loaded host).
func TestForgetManyCostsPerBan(t *testing.T) {
	e, tr, _ := trackedEngine(t, 0)
	var ps []netip.Prefix
	for i := range 2000 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 0, byte(i >> 8), byte(i)}), 32))
	}
	start := time.Now()
	for i := 0; i < len(ps); i += 100 {
		e.ForgetMany("sshd", ps[i:i+100])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ForgetMany of 2,000 among 200,000 took %v", d)
	}
	if n := tr.keys.len(); n != 198_000 {
		t.Fatalf("%d keys left, want 198000", n)
	}
	e.ForgetMany("", []netip.Prefix{netip.MustParsePrefix("100.1.0.0/24")})
	if n := tr.keys.len(); n != 198_000-256 {
		t.Fatalf("%d keys left after a /24, want %d", n, 198_000-256)
	}
}

// trackedEngine is an sshd engine (with ipv6Prefix; 0: the default)
// tracking one failure of each of 200,000 IPv4 addresses of 100.0.0.0/8
// at now.
func trackedEngine(t *testing.T, ipv6Prefix int) (e *Engine, tr *Tracker, now time.Time) {
	t.Helper()
	e, err := NewEngine([]Jail{{Name: "sshd", Filter: mustSSHD(t), Units: []string{"sshd.service"}, MaxRetry: 1000, FindTime: time.Hour, IPv6Prefix: ipv6Prefix}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr = e.jails[0].tracker
	now = time.Now()
	for i := range 200_000 {
		a := netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
		tr.Add(netip.PrefixFrom(a, 32), a, 22, 0, now)
	}
	return e, tr, now
}

func mustSSHD(t *testing.T) *Filter {
	t.Helper()
	def, err := Builtin("sshd", "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestForgetManyShortPrefixes: the keys inside prefixes shorter than the
// jail's keys (IPv4 /24s, an IPv6 /56 of /64 keys) are dropped, and only
// those, without a scan of the tracker per call: 300 calls of a /24 each
// among 200,000 tracked keys (a blocklist's steps during a flood; each
// scanned the tracker before).
func TestForgetManyShortPrefixes(t *testing.T) {
	e, tr, now := trackedEngine(t, 64)
	// IPv6: 2001:db8:0:XY00::/64 keys, 512 of them: two /56s' worth.
	for i := range 512 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(i >> 8), byte(i), 15: 1})
		tr.Add(netip.PrefixFrom(a, 64).Masked(), a, 22, 0, now)
	}
	start := time.Now()
	for i := range 300 {
		e.ForgetMany("sshd", []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(i >> 8), byte(i), 0}), 24),
			netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32), // not tracked
		})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("300 ForgetMany of a /24 each among 200,000 tracked keys took %v (a scan each?)", d)
	}
	if n, want := tr.keys.len(), 200_000-300*256+512; n != want {
		t.Fatalf("%d keys left after 300 /24s, want %d", n, want)
	}
	if tr.keys.get(netip.MustParsePrefix("100.1.43.255/32")) != nil || tr.keys.get(netip.MustParsePrefix("100.1.44.0/32")) == nil {
		t.Errorf("the /24s' bounds: 100.1.43.255 kept or 100.1.44.0 dropped")
	}
	e.ForgetMany("sshd", []netip.Prefix{netip.MustParsePrefix("2001:db8:0:100::/56")})
	if n, want := tr.keys.len(), 200_000-300*256+256; n != want {
		t.Fatalf("%d keys left after an IPv6 /56, want %d", n, want)
	}
	if tr.keys.get(netip.MustParsePrefix("2001:db8:0:1ff::/64")) != nil || tr.keys.get(netip.MustParsePrefix("2001:db8:0:ff::/64")) == nil {
		t.Errorf("the /56's bounds: 2001:db8:0:1ff::/64 kept or 2001:db8:0:ff::/64 dropped")
	}
	// Wider than the tracker: one scan, the same result.
	e.ForgetMany("sshd", []netip.Prefix{netip.MustParsePrefix("100.2.0.0/16"), netip.MustParsePrefix("2001:db8::/32")})
	if n, want := tr.keys.len(), 200_000-300*256-(65536-0); n != want {
		t.Fatalf("%d keys left after a /16 and a /32, want %d", n, want)
	}
}

func TestNthKey(t *testing.T) {
	cases := []struct {
		a    string
		i    uint64
		kb   int
		want string
	}{
		{"10.0.0.0", 255, 32, "10.0.0.255"},
		{"10.0.0.0", 3, 30, "10.0.0.12"},
		{"2001:db8::", 0x1ff, 64, "2001:db8:0:1ff::"},
		{"2001:db8::", 5, 128, "2001:db8::5"},
		{"2001:db8::ffff:ffff:ffff:ff00", 0x100, 128, "2001:db8:0:1::"},
		{"2001:db8::", 3, 66, "2001:db8::c000:0:0:0"},
	}
	for _, c := range cases {
		if got := nthKey(netip.MustParseAddr(c.a), c.i, c.kb); got != netip.MustParseAddr(c.want) {
			t.Errorf("nthKey(%s, %d, %d) = %s, want %s", c.a, c.i, c.kb, got, c.want)
		}
	}
}
