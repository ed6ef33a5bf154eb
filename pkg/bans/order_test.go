package bans

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// TestPageFollowsActive: pages read between random bans, unbans and
// expiries are always the matching slice of Active.
func TestPageFollowsActive(t *testing.T) {
	tb := NewMemory()
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Unix(1_800_000_000, 0)
	jails := []string{"sshd", "nginx", "apache", "zz"}
	addr := func() netip.Prefix {
		if rng.IntN(4) == 0 {
			return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, byte(rng.IntN(8))}), 64)
		}
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.IntN(200))}), 24+rng.IntN(2)*8).Masked()
	}
	check := func(step int) {
		t.Helper()
		want := tb.Active(now)
		for _, limit := range []int{0, 1, 7, 50} {
			for off := 0; off <= len(want)+1; off += max(limit, 1) * 3 {
				got, total := tb.Page(now, off, limit)
				if total != len(want) {
					t.Fatalf("step %d: Page total %d, Active %d", step, total, len(want))
				}
				w := pageSlice(want, off, limit)
				if len(got) != len(w) || (len(w) > 0 && !reflect.DeepEqual(got, w)) {
					t.Fatalf("step %d: Page(%d, %d) = %v\nwant %v", step, off, limit, got, w)
				}
			}
		}
	}
	for step := range 300 {
		switch r := rng.IntN(10); {
		case r < 5:
			var bs []Ban
			for range rng.IntN(20) + 1 {
				b := Ban{Jail: jails[rng.IntN(len(jails))], Prefix: addr(), Start: now, Reason: "r"}
				if rng.IntN(3) > 0 {
					b.Expires = now.Add(time.Duration(rng.IntN(100)+1) * time.Second)
				}
				bs = append(bs, b)
			}
			if _, err := tb.Add(bs...); err != nil {
				t.Fatal(err)
			}
		case r < 8:
			if _, err := tb.Remove(jails[rng.IntN(len(jails))], addr()); err != nil {
				t.Fatal(err)
			}
		default:
			now = now.Add(time.Duration(rng.IntN(10)) * time.Second)
			if rng.IntN(2) == 0 {
				// Lingering expired bans: Page must not list them.
				check(step)
			}
			if _, err := tb.Expire(now); err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(3) == 0 {
			check(step)
		}
	}
	if tb.Len() < 50 {
		t.Fatalf("only %d bans at the end: the test exercised little", tb.Len())
	}
	check(-1)
}

// TestPageOrderDropped: a mass change while nobody pages drops the order;
// the next page is still right.
func TestPageOrderDropped(t *testing.T) {
	tb := NewMemory()
	now := time.Unix(1_800_000_000, 0)
	ban := func(i int) Ban {
		return Ban{Jail: "sshd", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), 32), Start: now}
	}
	var bs []Ban
	for i := range 100 {
		bs = append(bs, ban(i))
	}
	if _, err := tb.Add(bs...); err != nil {
		t.Fatal(err)
	}
	if _, total := tb.Page(now, 0, 10); total != 100 {
		t.Fatalf("total %d, want 100", total)
	}
	bs = bs[:0]
	for i := 100; i < 10000; i++ {
		bs = append(bs, ban(i))
	}
	if _, err := tb.Add(bs...); err != nil {
		t.Fatal(err)
	}
	if tb.order.on {
		t.Fatal("the order still records 9,900 changes nobody read")
	}
	got, total := tb.Page(now, 9998, 10)
	if total != 10000 || len(got) != 2 || got[1].Prefix != ban(9999).Prefix {
		t.Fatalf("Page(9998, 10) = %v, %d", got, total)
	}
}

// BenchmarkPage: one page of 4096 from a table of 500,000 bans that
// changes by one ban between pages.
func BenchmarkPage(b *testing.B) {
	tb := NewMemory()
	now := time.Now()
	bs := make([]Ban, 0, 500_000)
	for i := range 500_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		bs = append(bs, Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Start: now, Expires: now.Add(time.Hour)})
	}
	if _, err := tb.Add(bs...); err != nil {
		b.Fatal(err)
	}
	for _, changing := range []bool{false, true} {
		name := "unchanged"
		if changing {
			name = "one-ban-between-pages"
		}
		b.Run(name, func(b *testing.B) {
			tb.Page(now, 0, 4096)
			i := 0
			for b.Loop() {
				if changing {
					i++
					a := netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)})
					if _, err := tb.Add(Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Start: now, Expires: now.Add(time.Hour)}); err != nil {
						b.Fatal(err)
					}
				}
				if got, _ := tb.Page(now, 250_000, 4096); len(got) != 4096 {
					b.Fatal(len(got))
				}
			}
		})
	}
	b.Run("sort-per-page-before", func(b *testing.B) {
		for b.Loop() {
			if got := pageSlice(tb.Active(now), 250_000, 4096); len(got) != 4096 {
				b.Fatal(len(got))
			}
		}
	})
}
