package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux architecture Go supports).
const clockTick = 100

// cpuTime returns the user+system CPU time of process pid, all its threads
// included, from /proc/PID/stat (10 ms resolution).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; the rest follows ") ".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("reading CPU time of pid %d: malformed stat %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("reading CPU time of pid %d: short stat %q", pid, s)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// memory is a process's resident set size now and at its peak, and the
// parts of the current one: anonymous memory (heap, stacks), file pages
// (the binary, libraries) and shared memory (journal files mmapped from
// the tmpfs of a volatile journal), in bytes.
type memory struct{ rss, hwm, anon, file, shmem int64 }

// parts describes where the resident set lies.
func (m memory) parts() string {
	return fmt.Sprintf("anon %s, file %s, shmem %s", mb(m.anon), mb(m.file), mb(m.shmem))
}

// memoryOf reads VmRSS and VmHWM from /proc/PID/status.
func memoryOf(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("reading memory of pid %d: %w", pid, err)
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.hwm
		case "RssAnon":
			dst = &m.anon
		case "RssFile":
			dst = &m.file
		case "RssShmem":
			dst = &m.shmem
		default:
			continue
		}
		f := strings.Fields(v) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return memory{}, fmt.Errorf("reading memory of pid %d: %s: %q", pid, k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("reading memory of pid %d: %s: %w", pid, k, err)
		}
		*dst = n << 10
	}
	if m.rss == 0 || m.hwm == 0 {
		return memory{}, fmt.Errorf("reading memory of pid %d: no VmRSS/VmHWM", pid)
	}
	return m, nil
}

// mb formats bytes as MB (10^6, as the goals are stated) with one decimal.
func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
