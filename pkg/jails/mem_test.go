package jails

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// measureTracker returns the heap bytes per address of a Tracker holding
// n IPv4 addresses with one failure each.
func measureTracker(n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := NewTracker(5, time.Hour, 0)
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tr.Add(netip.PrefixFrom(a, 32), a, uint16(i), 0, t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(tr)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// TestTrackerHugeMaxRetry: a jail with maxretry 100,000 costs no more per
// tracked address than one with maxretry 5 (the failure times grow with
// the failures, not with maxretry: they took 800 kB an address).
func TestTrackerHugeMaxRetry(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := NewTracker(100_000, time.Hour, 0)
	const n = 200
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		tr.Add(netip.PrefixFrom(a, 32), a, uint16(i), 0, t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(tr)
	if per := float64(after.HeapAlloc-before.HeapAlloc) / n; per > 400 {
		t.Fatalf("%.0f bytes per tracked address with maxretry 100,000, budget 400", per)
	}
}
