package testbed

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// countUnit counts the entries of unit with journalctl (dir "" = system).
func countUnit(t *testing.T, dir, unit string) int {
	t.Helper()
	args := []string{"-q", "-o", "cat", "_SYSTEMD_UNIT=" + unit}
	if dir != "" {
		args = append([]string{"-D", dir}, args...)
	}
	out, err := exec.Command("journalctl", args...).Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	return strings.Count(string(out), "\n")
}

func TestWriteAsUnit(t *testing.T) {
	Require(t, "systemd-cat", "journalctl", "unshare", "nsenter")
	jd := StartJournald(t)
	for _, tc := range []struct {
		name   string
		jd     *Journald
		dir    string
		n      int
		native bool
	}{
		{"system", nil, "", 50, false},
		{"private", jd, jd.Dir(), 20000, false},
		{"private-native", jd, jd.Dir(), 2000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.jd == nil {
				EnsureJournald(t)
			}
			unit := "jk-test-" + Suffix() + ".service"
			msgs := make([]string, tc.n)
			for i := range msgs {
				msgs[i] = fmt.Sprintf("entry %d", i)
			}
			w, err := NewUnitWriter(unit, WriterOptions{Journald: tc.jd, Native: tc.native})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if err := w.Write(m); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := countUnit(t, tc.dir, unit); got != tc.n {
				t.Fatalf("journal holds %d entries of %s, want %d", got, unit, tc.n)
			}
		})
	}
}
