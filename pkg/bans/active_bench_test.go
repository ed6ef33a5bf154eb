package bans

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkActive: the sorted copy of 55,000 bans the watchdog and
// ListBans read.
func BenchmarkActive(b *testing.B) {
	t := NewMemory()
	now := time.Now()
	bs := make([]Ban, 0, 55000)
	for i := range 55000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		bs = append(bs, Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Start: now, Expires: now.Add(time.Hour)})
	}
	if _, err := t.Add(bs...); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if n := len(t.Active(now)); n != 55000 {
			b.Fatal(n)
		}
	}
}
