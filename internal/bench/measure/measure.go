// Package measure holds what `make bench`'s rows for the services share:
// a process's resident set and CPU time read from /proc, and the layout
// of a result row (what, measured, goal, verdict).
package measure

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RSS returns the resident set size of pid in KiB (VmRSS in
// /proc/PID/status; 0 if the line is missing). It fails tb if the file
// cannot be read.
func RSS(tb testing.TB, pid int) int {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	return 0
}

// CPU returns the CPU time pid has spent, user and system (utime+stime in
// /proc/PID/stat, counted in clock ticks of 10 ms). It fails tb if the
// file cannot be read.
func CPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(u+st) * 10 * time.Millisecond
}

// MiB formats a size in KiB as MiB with one decimal.
func MiB(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// Verdict is "met" or "NOT met".
func Verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// Row writes one result row: what was measured, the value, the goal and
// the verdict, in columns.
func Row(w io.Writer, what, measured, goal, verdict string) {
	fmt.Fprintf(w, "%-58s %-26s %-12s %s\n", what, measured, goal, verdict)
}
