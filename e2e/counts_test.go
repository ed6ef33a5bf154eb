package e2e

import (
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestFailureCountsSurviveRestarts: with maxretry 3, one failure, kill -9,
// one failure, a restart (SIGTERM), one failure → banned. Across both,
// currently_failed and total_failed carry on where they were.
func TestFailureCountsSurviveRestarts(t *testing.T) {
	t.Parallel()
	bed, d := startDaemon(t, "")
	h := bed.Hosts

	fail := func(n int) {
		t.Helper()
		if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Denied {
			t.Fatalf("failure %d: %s, want %s; ssh said %q", n, a.Outcome, testbed.Denied, a.Output)
		}
		waitStatus(t, d, n, 1)
	}
	restarted := func(how string, failed, total int) {
		t.Helper()
		d.Start(t)
		d.WaitReady(t, readyTimeout)
		st := d.Status(t, "sshd")[0]
		if st.CurrentlyFailed != failed || st.TotalFailed != total {
			t.Fatalf("after %s: currently_failed %d, total_failed %d; want %d and %d", how, st.CurrentlyFailed, st.TotalFailed, failed, total)
		}
		t.Logf("after %s: currently_failed %d, total_failed %d", how, st.CurrentlyFailed, st.TotalFailed)
	}

	fail(1)
	// Make sure the cursor past that failure is saved before the crash (at
	// most once a second without a ban, on the next entry): otherwise the
	// restarted daemon reads the failure again and counts it anyway.
	time.Sleep(1100 * time.Millisecond)
	if err := bed.Journald.WriteAsUnit("sshd.service", []string{"Server listening on 0.0.0.0 port 2222."}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	d.Kill(t)
	restarted("kill -9", 1, 1)

	fail(2)
	if err := d.Stop(t); err != nil {
		t.Fatalf("daemon exit on SIGTERM: %v", err)
	}
	restarted("a restart", 1, 2)

	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Denied {
		t.Fatalf("failure 3: %s, want %s", a.Outcome, testbed.Denied)
	}
	waitBanned(t, h, []string{testbed.AtkAddr4}, banTimeout)
	if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != testbed.Refused {
		t.Fatalf("after the third failure: %s, want %s", a.Outcome, testbed.Refused)
	}
	st := d.Status(t, "sshd")[0]
	if st.TotalFailed != 3 || st.TotalBanned != 1 || st.CurrentlyFailed != 0 {
		t.Fatalf("status after the ban %+v; want total_failed 3, total_banned 1, currently_failed 0", st)
	}
}

// waitStatus waits until jail sshd shows total failures and currently
// failed addresses as given.
func waitStatus(t *testing.T, d *testbed.Daemon, total, current int) {
	t.Helper()
	deadline := time.Now().Add(banTimeout)
	for {
		st := d.Status(t, "sshd")[0]
		if st.TotalFailed == total && st.CurrentlyFailed == current {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v; want total_failed %d, currently_failed %d", st, total, current)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
