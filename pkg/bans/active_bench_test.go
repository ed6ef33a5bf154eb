package bans

import (
	"net/netip"
	"path/filepath"
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

// BenchmarkOpen: opening (loading) a state file of 500,000 bans, each
// with its history, as a restart does: until the histories are read
// (ns/op), and until Open returns, before READY=1 (open-ms).
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), FileName)
	t, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for step := range 10 {
		bs := make([]Ban, 0, 50_000)
		for i := step * 50_000; i < (step+1)*50_000; i++ {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			bs = append(bs, Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Start: now, Expires: now.Add(time.Hour), Reason: "imported"})
		}
		if _, err := t.Add(bs...); err != nil {
			b.Fatal(err)
		}
	}
	if err := t.Close(); err != nil {
		b.Fatal(err)
	}
	var opened time.Duration
	for b.Loop() {
		start := time.Now()
		t, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		opened += time.Since(start)
		if t.Len() != 500_000 {
			b.Fatal(t.Len())
		}
		// The histories, read after Open returned.
		if err := t.HistoryErr(); err != nil {
			b.Fatal(err)
		}
		t.Close()
	}
	b.ReportMetric(float64(opened.Milliseconds())/float64(b.N), "open-ms")
}
