package faults

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestKillDuringBanMany: kill -9 while a BanMany of 20,000 addresses is
// in flight. The daemon commits a large call in steps of 5,000 (the
// journal's bans go between them), each all or nothing: after the
// restart whole steps are there and nothing of a step cut short, and the
// kernel holds exactly what status lists.
func TestKillDuringBanMany(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	var sb strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&sb, "10.%d.%d.%d\n", 20+i>>16, (i>>8)&255, i&255)
	}
	cmd := exec.Command(b.d.Bin, "ban", "sshd", "-")
	cmd.Env = append(os.Environ(), b.d.Bus.Env())
	cmd.Stdin = strings.NewReader(sb.String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once the daemon is busy with the call: its CPU time grows.
	cpu0 := cpuTicks(t, b.d.PID())
	for deadline := time.Now().Add(5 * time.Second); cpuTicks(t, b.d.PID()) < cpu0+3 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	b.d.Kill(t)
	_ = cmd.Wait()
	b.d.Start(t)
	b.d.WaitReady(t, readyTimeout)
	st := b.d.Status(t, "sshd")
	if len(st) != 1 || st[0].CurrentlyBanned%5000 != 0 || st[0].CurrentlyBanned > 20000 {
		t.Fatalf("after kill -9 during BanMany status = %+v, want 0, 5000, 10000, 15000 or 20000 bans (whole steps)", st)
	}
	t.Logf("%d of the 20000 bans were committed when the daemon was killed", st[0].CurrentlyBanned)
	n := 0
	for _, s := range b.h.SrvSets(t) {
		if !s.IsWhitelist() {
			n += len(s.Members)
		}
	}
	if n != st[0].CurrentlyBanned {
		t.Errorf("the kernel holds %d bans, status lists %d", n, st[0].CurrentlyBanned)
	}
	// Banning still works.
	b.fail(t, "203.0.113.61", 3)
	b.waitBanned(t, "203.0.113.61", banTimeout)
}

// cpuTicks is the user+system CPU time of pid, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	var u, s int
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &s)
	return u + s
}
