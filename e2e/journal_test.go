package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// burst is a workload of sshd failure lines in three rounds: every
// address fails once per round while it has failures left, so each
// address's failures are spread over the whole burst. "ban" addresses fail
// maxretry (3) times, "keep" addresses twice. IPv6 addresses each in their
// own /64, with benign lines in between.
type burst struct {
	rounds [3][]string
	ban    []string // addresses that end up banned (as /64 prefixes)
	keep   []string // addresses with 2 failures, never banned
}

func newBurst(nBan, nKeep int) burst {
	var b burst
	for i := 0; i < nBan; i++ {
		b.ban = append(b.ban, fmt.Sprintf("2001:db8:100:%x::7", i))
	}
	for i := 0; i < nKeep; i++ {
		b.keep = append(b.keep, fmt.Sprintf("2001:db8:200:%x::7", i))
	}
	port := 40000
	line := func(a string) string {
		port++
		if port%2 == 0 {
			return fmt.Sprintf("Failed password for invalid user admin from %s port %d ssh2", a, port)
		}
		return fmt.Sprintf("Connection closed by authenticating user root %s port %d [preauth]", a, port)
	}
	for r := 0; r < 3; r++ {
		for i, a := range b.ban {
			b.rounds[r] = append(b.rounds[r], line(a))
			if r < 2 && i < len(b.keep) {
				b.rounds[r] = append(b.rounds[r], line(b.keep[i]))
			}
			b.rounds[r] = append(b.rounds[r], fmt.Sprintf("Accepted publickey for deploy from 2001:db8:300::%x port %d ssh2: ED25519 SHA256:x", i, port))
		}
	}
	return b
}

// chunks splits the burst in three writes: round 0 and half of round 1,
// the rest of round 1, round 2 (the one that crosses maxretry).
func (b burst) chunks() [3][]string {
	half := len(b.rounds[1]) / 2
	return [3][]string{
		append(slices.Clone(b.rounds[0]), b.rounds[1][:half]...),
		b.rounds[1][half:],
		b.rounds[2],
	}
}

// settle waits until the daemon's status stops changing (three equal
// readings 150 ms apart) and returns it.
func settle(t *testing.T, d *testbed.Daemon, timeout time.Duration) testbed.JailStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	same := 0
	for {
		st := d.Status(t, "sshd")
		if len(st) != 1 {
			t.Fatalf("status sshd = %+v", st)
		}
		s := st[0]
		slices.Sort(s.Banned)
		cur := fmt.Sprintf("%+v", s)
		if cur == last {
			same++
			if same >= 2 {
				return s
			}
		} else {
			same = 0
			last = cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("status still changing after %v: %s", timeout, cur)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// outcome is what a burst run ends with.
type outcome struct {
	currentlyFailed, currentlyBanned, totalFailed int
	banned                                        []string
}

// runBurst writes the burst's chunks into a fresh bed's journal with the
// daemon running, calling between(i) after chunk i is written and
// processed (i = 0, 1), and returns the daemon's final status.
func runBurst(t *testing.T, b burst, between func(bed *testbed.Bed, d *testbed.Daemon, i int)) outcome {
	t.Helper()
	bed, d := startDaemon(t, "")
	for i, c := range b.chunks() {
		if err := bed.Journald.WriteAsUnit("sshd.service", c); err != nil {
			t.Fatalf("writing chunk %d: %v", i, err)
		}
		if i < 2 && between != nil {
			between(bed, d, i)
		}
	}
	s := settle(t, d, 30*time.Second)
	for _, a := range b.ban {
		if _, ok := bed.Hosts.SrvBanned(t, a); !ok {
			t.Errorf("%s not in a ban set at the end", a)
			break
		}
	}
	return outcome{s.CurrentlyFailed, s.CurrentlyBanned, s.TotalFailed, s.Banned}
}

// compareToUninterrupted runs the burst uninterrupted and interrupted, and
// compares what the daemon ends with: addresses failing now, bans, the
// banned list and the failures counted (each failure once: none lost,
// none counted twice across the interruption).
func compareToUninterrupted(t *testing.T, name string, between func(bed *testbed.Bed, d *testbed.Daemon, i int)) {
	b := newBurst(300, 300)
	var ref, got outcome
	t.Run("uninterrupted", func(t *testing.T) { ref = runBurst(t, b, nil) })
	if t.Failed() {
		t.FailNow()
	}
	t.Run(name, func(t *testing.T) { got = runBurst(t, b, between) })
	t.Logf("uninterrupted: %d failed now, %d banned, %d failures counted; %s: %d failed now, %d banned, %d failures counted since its last start",
		ref.currentlyFailed, ref.currentlyBanned, ref.totalFailed, name, got.currentlyFailed, got.currentlyBanned, got.totalFailed)
	if ref.currentlyBanned != len(b.ban) || ref.currentlyFailed != len(b.keep) {
		t.Errorf("uninterrupted run: %d banned, %d failed now; want %d, %d", ref.currentlyBanned, ref.currentlyFailed, len(b.ban), len(b.keep))
	}
	if got.currentlyFailed != ref.currentlyFailed || got.currentlyBanned != ref.currentlyBanned {
		t.Errorf("%s: %d failed now, %d banned; uninterrupted: %d, %d", name, got.currentlyFailed, got.currentlyBanned, ref.currentlyFailed, ref.currentlyBanned)
	}
	if got.totalFailed != ref.totalFailed {
		t.Errorf("%s: %d failures counted, uninterrupted: %d", name, got.totalFailed, ref.totalFailed)
	}
	if !slices.Equal(got.banned, ref.banned) {
		t.Errorf("%s: banned list differs from the uninterrupted run (%d vs %d entries)", name, len(got.banned), len(ref.banned))
	}
}

// TestKillDuringBurst: kill -9 the daemon in the middle of a
// burst, write more while it is down, start it again: failure counts and
// bans equal those of an uninterrupted run.
func TestKillDuringBurst(t *testing.T) {
	testbed.Require(t, testbed.BedCommands...)
	compareToUninterrupted(t, "kill -9", func(bed *testbed.Bed, d *testbed.Daemon, i int) {
		switch i {
		case 0:
			// journald has stored chunk 0: the daemon is reading it now.
			d.Kill(t)
		case 1:
			d.Start(t)
			d.WaitReady(t, readyTimeout)
		}
	})
}

// TestJournaldRestartDuringBurst: restart journald in the middle
// of a burst: nothing is lost once it is back.
func TestJournaldRestartDuringBurst(t *testing.T) {
	testbed.Require(t, testbed.BedCommands...)
	compareToUninterrupted(t, "journald restart", func(bed *testbed.Bed, d *testbed.Daemon, i int) {
		if i != 0 {
			return
		}
		if err := bed.Journald.Stop(); err != nil {
			t.Fatalf("stopping journald: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
		if err := bed.Journald.Start(); err != nil {
			t.Fatalf("starting journald: %v", err)
		}
	})
}

// TestVacuumUnderStoppedDaemon: stop the daemon, let more be
// logged, rotate and vacuum the journal so the saved cursor's entry is
// gone: the daemon starts, logs the gap, keeps its bans and carries on.
func TestVacuumUnderStoppedDaemon(t *testing.T) {
	bed, d := startDaemon(t, "")
	jd := bed.Journald
	first := []string{}
	for i := 0; i < 3; i++ {
		first = append(first, fmt.Sprintf("Failed password for root from 203.0.113.10 port %d ssh2", 5000+i))
	}
	if err := jd.WriteAsUnit("sshd.service", first); err != nil {
		t.Fatal(err)
	}
	waitBanned(t, bed.Hosts, []string{"203.0.113.10"}, banTimeout)
	if err := d.Stop(t); err != nil {
		t.Errorf("daemon exit: %v", err)
	}
	if err := jd.WriteAsUnit("sshd.service", []string{"Failed password for root from 203.0.113.11 port 6000 ssh2"}); err != nil {
		t.Fatal(err)
	}
	if err := jd.Rotate(); err != nil {
		t.Fatal(err)
	}
	if out, err := jd.Command("journalctl", "--vacuum-files=1").CombinedOutput(); err != nil {
		t.Fatalf("journalctl --vacuum-files=1: %v\n%s", err, out)
	}
	if n := len(bed.JournalLines(t, "_SYSTEMD_UNIT=sshd.service")); n != 0 {
		t.Logf("after the vacuum the journal still holds %d sshd lines", n)
	}

	d.Start(t)
	d.WaitReady(t, readyTimeout)
	if _, ok := bed.Hosts.SrvBanned(t, "203.0.113.10"); !ok {
		t.Errorf("203.0.113.10 not restored after the vacuum")
	}
	var gap []string
	deadline := time.Now().Add(3 * time.Second)
	for len(gap) == 0 && time.Now().Before(deadline) {
		for _, l := range bed.JournalLines(t, "SYSLOG_IDENTIFIER=jailkeeper") {
			if strings.Contains(l, "cursor") {
				gap = append(gap, l)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(gap) == 0 {
		t.Errorf("the daemon logged nothing about its lost cursor")
	} else {
		t.Logf("daemon: %s", gap[0])
	}
	var next []string
	for i := 0; i < 3; i++ {
		next = append(next, fmt.Sprintf("Failed password for root from 203.0.113.12 port %d ssh2", 7000+i))
	}
	if err := jd.WriteAsUnit("sshd.service", next); err != nil {
		t.Fatal(err)
	}
	waitBanned(t, bed.Hosts, []string{"203.0.113.12"}, banTimeout)
}
