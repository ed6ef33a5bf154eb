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
	e, err := NewEngine([]Jail{{Name: "sshd", Filter: mustSSHD(t), Units: []string{"sshd.service"}, MaxRetry: 1000, FindTime: time.Hour}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := e.jails[0].tracker
	now := time.Now()
	for i := range 200_000 {
		a := netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
		tr.Add(netip.PrefixFrom(a, 32), a, 22, 0, now)
	}
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
