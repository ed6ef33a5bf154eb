package bans

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// activeWithinScan is ActiveWithin as a scan of every ban: the reference
// the index must agree with.
func activeWithinScan(t *Table, jail string, subnet netip.Prefix, now time.Time) int {
	n := 0
	for _, b := range t.Snapshot(now) {
		if b.Jail == jail && subnet.Bits() <= b.Prefix.Bits() && subnet.Contains(b.Prefix.Addr()) {
			n++
		}
	}
	return n
}

// TestActiveWithinIndex: over random bans, unbans and expiries in two
// jails and both families, the indexed ActiveWithin counts what a scan of
// every ban counts, for indexes built before and after the changes.
func TestActiveWithinIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb := NewMemory()
	t0 := time.Unix(1_700_000_000, 0)
	jails := []string{"sshd", "web"}
	randPrefix := func() netip.Prefix {
		if rng.IntN(3) == 0 {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(rng.IntN(4)), 0, 0, byte(rng.IntN(4)), 0, 0, 0, 0, 0, 0, byte(rng.IntN(8))})
			bits := []int{128, 64, 56, 48}[rng.IntN(4)]
			return netip.PrefixFrom(a, bits).Masked()
		}
		a := netip.AddrFrom4([4]byte{198, 51, byte(100 + rng.IntN(3)), byte(rng.IntN(16))})
		bits := []int{32, 32, 32, 28, 24, 16}[rng.IntN(6)]
		return netip.PrefixFrom(a, bits).Masked()
	}
	questions := []netip.Prefix{
		netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("198.51.101.0/24"),
		netip.MustParsePrefix("198.51.0.0/16"), netip.MustParsePrefix("198.51.100.0/28"),
		netip.MustParsePrefix("2001:db8:0:1::/64"), netip.MustParsePrefix("2001:db8::/48"),
		netip.MustParsePrefix("2001:db8:0:3::/56"),
	}
	check := func(now time.Time) {
		t.Helper()
		for _, j := range jails {
			for _, q := range questions {
				if got, want := tb.ActiveWithin(j, q, now), activeWithinScan(tb, j, q, now); got != want {
					t.Fatalf("ActiveWithin(%s, %s) = %d, a scan counts %d", j, q, got, want)
				}
			}
		}
	}
	now := t0
	for step := range 3000 {
		now = now.Add(time.Second)
		j := jails[rng.IntN(len(jails))]
		switch r := rng.IntN(10); {
		case r < 6:
			b := Ban{Jail: j, Prefix: randPrefix(), Start: now}
			if rng.IntN(4) > 0 {
				b.Expires = now.Add(time.Duration(1+rng.IntN(120)) * time.Second)
			}
			if _, err := tb.Add(b); err != nil {
				t.Fatal(err)
			}
		case r < 8:
			if _, err := tb.Remove(j, randPrefix()); err != nil {
				t.Fatal(err)
			}
		default:
			if _, err := tb.ExpireSome(now, 1+rng.IntN(5)); err != nil {
				t.Fatal(err)
			}
		}
		if step%50 == 0 || step > 2900 {
			check(now)
		}
	}
	if len(tb.subnets) == 0 {
		t.Fatal("no index was built")
	}
}

// BenchmarkActiveWithin: one subnet-escalation question against a table
// of n bans; the cost must not grow with n.
func BenchmarkActiveWithin(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			t := NewMemory()
			now := time.Now()
			bs := make([]Ban, 0, n)
			for i := range n {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				bs = append(bs, Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Start: now, Expires: now.Add(time.Hour)})
			}
			if _, err := t.Add(bs...); err != nil {
				b.Fatal(err)
			}
			sub := netip.MustParsePrefix("10.0.3.0/24")
			want := min(256, max(0, n-3*256))
			t.ActiveWithin("sshd", sub, now) // builds the index
			b.ResetTimer()
			for range b.N {
				if got := t.ActiveWithin("sshd", sub, now); got != want {
					b.Fatalf("ActiveWithin = %d, want %d", got, want)
				}
			}
		})
	}
}
