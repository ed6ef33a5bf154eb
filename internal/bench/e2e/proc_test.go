package main

import (
	"os"
	"testing"
	"time"
)

// TestProcReadings reads this process's own CPU time and memory: a busy
// loop of 200 ms must show as CPU time, and VmHWM is never below VmRSS.
func TestProcReadings(t *testing.T) {
	pid := os.Getpid()
	c0, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 200*time.Millisecond; {
	}
	c1, err := cpuTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if d := c1 - c0; d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("a 200 ms busy loop cost %v of CPU time", d)
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
