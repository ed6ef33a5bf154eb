package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// rusageCPU is the kernel's own count of this process's CPU time.
func rusageCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestProcReadings reads this process's own CPU time and memory: a busy
// loop must show as the CPU time getrusage counts (to the 10 ms of a clock
// tick; the loop's wall time says nothing on a loaded machine), and VmHWM
// is never below VmRSS.
func TestProcReadings(t *testing.T) {
	pid := os.Getpid()
	r0 := rusageCPU(t)
	c0, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	for rusageCPU(t)-r0 < 200*time.Millisecond {
	}
	c1, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	r1 := rusageCPU(t)
	if d, r := c1-c0, r1-r0; d < r-50*time.Millisecond || d > r+50*time.Millisecond {
		t.Errorf("a busy loop of %v CPU time (getrusage) read as %v from /proc", r, d)
	}
	m, err := memoryOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	if m.rss <= 1<<20 || m.hwm < m.rss {
		t.Errorf("VmRSS %d, VmHWM %d", m.rss, m.hwm)
	}
	if _, err := cpuTime(1 << 30); err == nil {
		t.Error("cpuTime of a pid that cannot exist: no error")
	}
}
