package sdjournal

import (
	"context"
	"errors"
	"fmt"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// These tests run against a real journald, as root. Most use a private
// journald (testbed.StartJournald) so that they may rotate, vacuum and
// restart it; TestReaderUnitMatch uses the system's journal.

func TestOpenNeedsMatches(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without units or identifiers succeeded")
	}
}

// follow is a running Reader under test.
type follow struct {
	r      *Reader
	out    chan []journal.Entry
	cancel context.CancelFunc
	errc   chan error
	logs   *logBuf
}

// logBuf collects the Reader's Logf lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logBuf) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startFollow opens a Reader with opts and runs it until the test ends.
func startFollow(t *testing.T, opts Options) *follow {
	t.Helper()
	logs := &logBuf{}
	opts.Logf = logs.logf
	r, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &follow{r: r, out: make(chan []journal.Entry, 16), cancel: cancel, errc: make(chan error, 1), logs: logs}
	go func() { f.errc <- r.Run(ctx, f.out) }()
	t.Cleanup(func() { f.stop(t) })
	return f
}

// stop cancels Run, checks that it returned ctx's error and closes.
func (f *follow) stop(t *testing.T) {
	t.Helper()
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.cancel = nil
	if err := <-f.errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	if err := f.r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// collect receives entries until it has n of them; it fails the test when
// they do not arrive within d.
func (f *follow) collect(t *testing.T, n int, d time.Duration) []journal.Entry {
	t.Helper()
	var got []journal.Entry
	deadline := time.After(d)
	for len(got) < n {
		select {
		case b := <-f.out:
			got = append(got, b...)
		case err := <-f.errc:
			t.Fatalf("Run ended early: %v (after %d of %d entries)", err, len(got), n)
		case <-deadline:
			t.Fatalf("got %d of %d entries in %s; reader log:\n%s", len(got), n, d, f.logs)
		}
	}
	return got
}

// quiet fails the test if any entry arrives within d.
func (f *follow) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case b := <-f.out:
		t.Fatalf("unexpected entries: %q…", b[0].Message)
	case <-time.After(d):
	}
}

func messages(n int, format string) []string {
	m := make([]string, n)
	for i := range m {
		m[i] = fmt.Sprintf(format, i)
	}
	return m
}

// checkExactlyOnce fails unless got's messages are want, in order.
func checkExactlyOnce(t *testing.T, got []journal.Entry, want []string) {
	t.Helper()
	msgs := make([]string, len(got))
	for i, e := range got {
		msgs[i] = e.Message
	}
	if slices.Equal(msgs, want) {
		return
	}
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m]++
	}
	var dup, missing, extra []string
	for _, w := range want {
		switch seen[w] {
		case 0:
			missing = append(missing, w)
		case 1:
		default:
			dup = append(dup, w)
		}
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	for i, m := range msgs {
		if !wanted[m] {
			extra = append(extra, fmt.Sprintf("#%d %q (%+v)", i, m, got[i]))
		}
	}
	t.Fatalf("got %d entries, want %d: missing %d %q, duplicated %d %q, not written %d %q", len(msgs), len(want),
		len(missing), head(missing), len(dup), head(dup), len(extra), head(extra))
}

// head is the first five of s.
func head(s []string) []string {
	return s[:min(len(s), 5)]
}

func newUnit() string { return "jk-test-" + testbed.Suffix() + ".service" }

// TestReaderUnitMatch reads the system journal: only entries whose trusted
// _SYSTEMD_UNIT is the jail's unit are delivered; the same identifier and
// text from a process outside the unit are not, unless identifiers are
// opted in.
func TestReaderUnitMatch(t *testing.T) {
	testbed.Require(t, "systemd-cat", "journalctl", "logger")
	testbed.EnsureJournald(t)
	unit := newUnit()
	ident := strings.TrimSuffix(unit, ".service")
	bare := strings.TrimSuffix(unit, ".service") // no suffix: means .service

	byUnit := startFollow(t, Options{Units: []string{bare}})
	byIdent := startFollow(t, Options{Units: []string{bare}, Identifiers: []string{ident}})
	time.Sleep(50 * time.Millisecond)

	start := time.Now()
	want := messages(50, "Failed password for root from 203.0.113.%d port 22 ssh2")
	if err := testbed.WriteAsUnit(unit, want); err != nil {
		t.Fatal(err)
	}
	// A forger outside the unit, same identifier, same text.
	forged := messages(5, "Failed password for root from 198.51.100.%d port 22 ssh2")
	for _, m := range forged {
		if out, err := exec.Command("logger", "-u", "/run/systemd/journal/dev-log", "-t", ident, m).CombinedOutput(); err != nil {
			t.Fatalf("logger: %v %s", err, out)
		}
	}
	cat := exec.Command("systemd-cat", "-t", ident)
	cat.Stdin = strings.NewReader(strings.Join(forged, "\n") + "\n")
	if out, err := cat.CombinedOutput(); err != nil {
		t.Fatalf("systemd-cat: %v %s", err, out)
	}
	if err := (*testbed.Journald)(nil).Sync(); err != nil {
		t.Fatal(err)
	}
	end := time.Now()

	got := byUnit.collect(t, len(want), 5*time.Second)
	byUnit.quiet(t, 500*time.Millisecond)
	checkExactlyOnce(t, got, want)
	if got[len(got)-1].Cursor == "" {
		t.Fatal("the last entry of the last batch has no cursor")
	}
	cursors := map[string]bool{}
	for _, e := range got {
		if e.Unit != unit || e.Identifier != ident || e.Cursor != "" && cursors[e.Cursor] {
			t.Fatalf("bad entry %+v", e)
		}
		cursors[e.Cursor] = true
		if e.Time.Before(start.Add(-time.Second)) || e.Time.After(end.Add(time.Second)) {
			t.Fatalf("entry time %v outside [%v, %v]", e.Time, start, end)
		}
	}

	all := byIdent.collect(t, len(want)+2*len(forged), 5*time.Second)
	byIdent.quiet(t, 200*time.Millisecond)
	nForged, withPID := 0, 0
	for _, e := range all {
		if e.Unit != unit {
			nForged++
		}
		if e.PID != 0 {
			withPID++
		}
	}
	// logger's lines (syslog) carry their sender's _PID; those of stdout
	// streams (the unit's writer, systemd-cat), whose _PID is the stream's
	// opener, none.
	if withPID != len(forged) {
		t.Fatalf("%d entries with a PID, want %d (logger's)", withPID, len(forged))
	}
	if nForged != 2*len(forged) {
		t.Fatalf("with identifiers opted in: %d entries from outside the unit, want %d", nForged, 2*len(forged))
	}
}

// TestReaderSourceTime: Entry.Time is _SOURCE_REALTIME_TIMESTAMP when the
// entry has one (native protocol), and journald's receive time otherwise.
func TestReaderSourceTime(t *testing.T) {
	testbed.Require(t, "journalctl", "nsenter")
	jd := testbed.StartJournald(t)
	unit := newUnit()
	f := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir(), LookBack: time.Hour})
	// Native protocol: journald adds _SOURCE_REALTIME_TIMESTAMP.
	w, err := testbed.NewUnitWriter(unit, testbed.WriterOptions{Journald: jd, Native: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(w.Write("native"), w.Close()); err != nil {
		t.Fatal(err)
	}
	if err := jd.WriteAsUnit(unit, []string{"stream"}); err != nil {
		t.Fatal(err)
	}
	got := f.collect(t, 2, 5*time.Second)
	for _, e := range got {
		out, err := exec.Command("journalctl", "-D", jd.Dir(), "-o", "export", "-q", "MESSAGE="+e.Message).Output()
		if err != nil {
			t.Fatal(err)
		}
		want := fieldOf(string(out), "_SOURCE_REALTIME_TIMESTAMP")
		if e.Message == "stream" {
			if want != "" {
				t.Fatalf("stream entry has _SOURCE_REALTIME_TIMESTAMP=%s", want)
			}
			want = fieldOf(string(out), "__REALTIME_TIMESTAMP")
		} else if want == "" {
			t.Fatalf("native entry has no _SOURCE_REALTIME_TIMESTAMP:\n%s", out)
		}
		if gotUs := fmt.Sprint(e.Time.UnixMicro()); gotUs != want {
			t.Errorf("%s: Time %s µs, want %s", e.Message, gotUs, want)
		}
	}
}

func fieldOf(export, field string) string {
	for _, l := range strings.Split(export, "\n") {
		if v, ok := strings.CutPrefix(l, field+"="); ok {
			return v
		}
	}
	return ""
}

// TestReaderResume: a consumer persists the cursor of the last batch it
// handled, more entries arrive and are read but not handled, the reader
// is closed, more entries are written, and a new reader from that cursor
// delivers every later entry exactly once.
func TestReaderResume(t *testing.T) {
	testbed.Require(t, "journalctl", "nsenter")
	jd := testbed.StartJournald(t)
	unit := newUnit()
	first := messages(300, "first %d")
	second := messages(200, "second %d")
	const processed = 137 // the consumer handled entries 0–137
	if err := jd.WriteAsUnit(unit, first[:processed+1]); err != nil {
		t.Fatal(err)
	}
	f := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir(), LookBack: time.Hour})
	got := f.collect(t, processed+1, 5*time.Second)
	saved := got[processed].Cursor
	if saved == "" {
		t.Fatal("the last entry of the last batch has no cursor")
	}
	if err := jd.WriteAsUnit(unit, first[processed+1:]); err != nil {
		t.Fatal(err)
	}
	got = append(got, f.collect(t, len(first)-processed-1, 5*time.Second)...)
	checkExactlyOnce(t, got, first)
	f.stop(t)

	if err := jd.WriteAsUnit(unit, second); err != nil {
		t.Fatal(err)
	}
	g := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir(), Cursor: saved, LookBack: time.Hour})
	rest := append(slices.Clone(first[processed+1:]), second...)
	checkExactlyOnce(t, g.collect(t, len(rest), 5*time.Second), rest)
	g.quiet(t, 300*time.Millisecond)
	if g.logs.contains("gone") {
		t.Fatalf("resume from an existing cursor logged a gap:\n%s", g.logs)
	}
}

// TestReaderLookBack: without a cursor the reader starts LookBack ago.
func TestReaderLookBack(t *testing.T) {
	testbed.Require(t, "journalctl", "nsenter")
	jd := testbed.StartJournald(t)
	unit := newUnit()
	old := messages(20, "old %d")
	recent := messages(20, "recent %d")
	if err := jd.WriteAsUnit(unit, old); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	t0 := time.Now()
	if err := jd.WriteAsUnit(unit, recent); err != nil {
		t.Fatal(err)
	}
	// Look back to 500 ms before the recent entries: they are caught, the
	// old ones (≥ 1.5 s older) are not.
	lb := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir(), LookBack: time.Since(t0) + 500*time.Millisecond})
	checkExactlyOnce(t, lb.collect(t, len(recent), 5*time.Second), recent)
	lb.quiet(t, 300*time.Millisecond)

	// LookBack 0: nothing from before, only what comes next.
	now := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir()})
	now.quiet(t, 300*time.Millisecond)
	next := messages(5, "next %d")
	if err := jd.WriteAsUnit(unit, next); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, now.collect(t, len(next), 5*time.Second), next)
}

// TestReaderLatency measures journal write → Entry on the channel for
// entries written one by one, a few ms to a few tens of ms apart, like
// failures of an attack.
func TestReaderLatency(t *testing.T) {
	testbed.Require(t, "journalctl", "nsenter")
	jd := testbed.StartJournald(t)
	unit := newUnit()
	f := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir()})
	w, err := testbed.NewUnitWriter(unit, testbed.WriterOptions{Journald: jd})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Warm up: the writer process has just started.
	if err := errors.Join(w.Write("warm-up"), w.Flush()); err != nil {
		t.Fatal(err)
	}
	f.collect(t, 1, 5*time.Second)
	const n = 200
	sent := make([]time.Time, n)
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		sent[i] = time.Now()
		if err := w.Write(fmt.Sprintf("lat %d", i)); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(2 * time.Second)
	wait:
		for {
			select {
			case b := <-f.out:
				now := time.Now()
				for _, e := range b {
					var j int
					fmt.Sscanf(e.Message, "lat %d", &j)
					lat = append(lat, now.Sub(sent[j]))
					if now.Sub(sent[j]) > 20*time.Millisecond {
						t.Logf("slow entry %d: journald stamped it %s after the write, the reader delivered it %s after the stamp",
							j, e.Time.Sub(sent[j]), now.Sub(e.Time))
					}
					if j == i {
						break wait
					}
				}
			case <-timeout:
				out, _ := exec.Command("journalctl", "-D", jd.Dir(), "-q", "-o", "short-precise", "_SYSTEMD_UNIT="+unit).CombinedOutput()
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				t.Fatalf("entry %d (sent %s) not delivered in 2s; journal ends with %q; reader log:\n%s",
					i, sent[i].Format("15:04:05.000000"), lines[max(0, len(lines)-2):], f.logs)
			}
		}
		time.Sleep(time.Duration(1+i%20) * time.Millisecond)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	med, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("write → journal.Entry over %d entries: median %s, p99 %s, max %s", len(lat), med, p99, lat[len(lat)-1])
	// journald's own change notification comes only every 250 ms, so a
	// reader that only waited for it would deliver in 140-370 ms: the
	// bounds below tell polling from waiting, even on a loaded 2-core
	// machine (p99 60 ms seen there). The latency itself is measured by
	// the benchmarks and make bench, not here.
	if raceEnabled {
		t.Log("race detector on: latency not checked")
		return
	}
	if med > 20*time.Millisecond || p99 > 200*time.Millisecond {
		t.Errorf("latency median %s (want < 20ms), p99 %s (want < 200ms): the reader is not polling", med, p99)
	}
}

// TestReaderRotation: rotating the journal while entries stream in loses
// nothing and duplicates nothing.
func TestReaderRotation(t *testing.T) {
	testbed.Require(t, "journalctl", "nsenter")
	jd := testbed.StartJournald(t)
	unit := newUnit()
	f := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir()})
	var want []string
	for round := 0; round < 6; round++ {
		msgs := messages(500, fmt.Sprintf("round %d entry %%d", round))
		want = append(want, msgs...)
		if err := jd.WriteAsUnit(unit, msgs); err != nil {
			t.Fatal(err)
		}
		if err := jd.Rotate(); err != nil {
			t.Fatal(err)
		}
	}
	checkExactlyOnce(t, f.collect(t, len(want), 10*time.Second), want)
	f.quiet(t, 300*time.Millisecond)
	if !f.logs.contains("journal files changed") {
		t.Errorf("rotation was not noticed; log:\n%s", f.logs)
	}
}

// TestReaderJournaldRestart: journald stops (cleanly or killed) and comes
// back; the reader keeps going and delivers everything written before and
// after, once.
func TestReaderJournaldRestart(t *testing.T) {
	testbed.Require(t, "journalctl", "nsenter")
	for _, tc := range []struct {
		name string
		stop func(*testbed.Journald) error
	}{
		{"sigterm", (*testbed.Journald).Stop},
		{"sigkill", (*testbed.Journald).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jd := testbed.StartJournald(t)
			unit := newUnit()
			f := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir()})
			before := messages(500, "before %d")
			after := messages(500, "after %d")
			if err := jd.WriteAsUnit(unit, before); err != nil {
				t.Fatal(err)
			}
			got := f.collect(t, len(before), 5*time.Second)
			if err := tc.stop(jd); err != nil {
				t.Fatal(err)
			}
			// The loop goes on while journald is away.
			stopped := time.Now()
			time.Sleep(400 * time.Millisecond)
			if !f.r.Alive().After(stopped) {
				t.Fatalf("reader loop stalled while journald was stopped (alive %v)", f.r.Alive())
			}
			if err := jd.Start(); err != nil {
				t.Fatal(err)
			}
			if err := jd.WriteAsUnit(unit, after); err != nil {
				t.Fatal(err)
			}
			got = append(got, f.collect(t, len(after), 10*time.Second)...)
			checkExactlyOnce(t, got, append(before, after...))
			f.quiet(t, 300*time.Millisecond)
		})
	}
}

// TestReaderVacuumGap: the saved cursor's entry is vacuumed while no reader
// runs; a new reader logs the gap, delivers what is left after it, once,
// and never starts over from the beginning.
func TestReaderVacuumGap(t *testing.T) {
	testbed.Require(t, "journalctl", "nsenter")
	jd := testbed.StartJournald(t)
	unit := newUnit()
	a := messages(100, "a %d")
	f := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir(), LookBack: time.Hour})
	if err := jd.WriteAsUnit(unit, a); err != nil {
		t.Fatal(err)
	}
	got := f.collect(t, len(a), 5*time.Second)
	saved := got[len(got)-1].Cursor
	f.stop(t)

	if err := jd.Rotate(); err != nil { // a is now in an archived file
		t.Fatal(err)
	}
	b := messages(100, "b %d")
	if err := jd.WriteAsUnit(unit, b); err != nil {
		t.Fatal(err)
	}
	if err := jd.Rotate(); err != nil { // b too, in a newer one
		t.Fatal(err)
	}
	c := messages(100, "c %d")
	if err := jd.WriteAsUnit(unit, c); err != nil {
		t.Fatal(err)
	}
	// Remove the oldest archived file (the one holding a): keep 2 files.
	if out, err := exec.Command("journalctl", "-D", jd.Dir(), "--vacuum-files=2").CombinedOutput(); err != nil {
		t.Fatalf("vacuum: %v %s", err, out)
	}
	left, err := exec.Command("journalctl", "-D", jd.Dir(), "-q", "-o", "cat", "_SYSTEMD_UNIT="+unit).Output()
	if err != nil {
		t.Fatal(err)
	}
	remaining := strings.Fields(strings.ReplaceAll(string(left), " ", "_"))
	if slices.Contains(remaining, "a_99") || !slices.Contains(remaining, "b_0") {
		t.Fatalf("vacuum did not leave exactly b and c: %d entries left, first %q", len(remaining), remaining[0])
	}

	g := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir(), Cursor: saved, LookBack: time.Hour})
	checkExactlyOnce(t, g.collect(t, len(b)+len(c), 5*time.Second), append(b, c...))
	g.quiet(t, 300*time.Millisecond)
	if !g.logs.contains("is gone") {
		t.Fatalf("the gap was not logged; log:\n%s", g.logs)
	}
}

// TestReaderRunAgain: Run may end (ctx done) and be called again on the
// same Reader, which carries on where it stopped; Close ends a running Run
// with ErrClosed, and Run after Close fails at once.
func TestReaderRunAgain(t *testing.T) {
	testbed.Require(t, "journalctl", "nsenter")
	jd := testbed.StartJournald(t)
	unit := newUnit()
	r, err := Open(Options{Units: []string{unit}, Path: jd.Dir(), LookBack: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []journal.Entry
	var want []string
	for round := 0; round < 3; round++ {
		msgs := messages(2000, fmt.Sprintf("round %d entry %%d", round))
		want = append(want, msgs...)
		if err := jd.WriteAsUnit(unit, msgs); err != nil {
			t.Fatal(err)
		}
		// An unbuffered channel read slowly: Run is cancelled while it
		// holds a batch it could not send yet.
		out := make(chan []journal.Entry)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- r.Run(ctx, out) }()
		got = append(got, <-out...)
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
	}
	out := make(chan []journal.Entry, 64)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background(), out) }()
	deadline := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case b := <-out:
			got = append(got, b...)
		case <-deadline:
			t.Fatalf("got %d of %d entries", len(got), len(want))
		}
	}
	checkExactlyOnce(t, got, want)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close returned %v, want ErrClosed", err)
	}
	if err := r.Run(context.Background(), out); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run on a closed Reader returned %v, want ErrClosed", err)
	}
}

var idleFor = 3 * time.Second

// TestReaderIdleCPU: an idle follower backs off and does not spin.
func TestReaderIdleCPU(t *testing.T) {
	testbed.Require(t, "journalctl", "nsenter")
	jd := testbed.StartJournald(t)
	unit := newUnit()
	f := startFollow(t, Options{Units: []string{unit}, Path: jd.Dir()})
	if err := jd.WriteAsUnit(unit, []string{"one"}); err != nil {
		t.Fatal(err)
	}
	f.collect(t, 1, 5*time.Second)
	time.Sleep(hotWindow + time.Second) // past the fast-polling window
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0, w0 := cpu(), time.Now()
	time.Sleep(idleFor)
	used, wall := cpu()-c0, time.Since(w0)
	t.Logf("idle reader: %s CPU in %s (%.2f%%)", used, wall, 100*used.Seconds()/wall.Seconds())
	if used > wall/100 {
		t.Errorf("idle reader used %s CPU in %s (> 1%%)", used, wall)
	}
	if since := time.Since(f.r.Alive()); since > 2*pollMax {
		t.Errorf("idle loop last went round %s ago", since)
	}
	// Still following after the back-off.
	if err := jd.WriteAsUnit(unit, []string{"two"}); err != nil {
		t.Fatal(err)
	}
	if got := f.collect(t, 1, 2*time.Second); got[0].Message != "two" {
		t.Fatalf("got %q, want two", got[0].Message)
	}
}

// TestReleaseClears: a released batch no longer references its entries'
// strings (the pool would otherwise keep them alive), batches of another
// capacity are not pooled, and newBatch always starts empty.
func TestReleaseClears(t *testing.T) {
	b := newBatch()
	if len(b) != 0 || cap(b) != maxBatch {
		t.Fatalf("newBatch: len %d cap %d, want 0, %d", len(b), cap(b), maxBatch)
	}
	b = append(b, journal.Entry{Message: "Failed password for root from 203.0.113.1 port 22 ssh2", Unit: "sshd.service"})
	kept := b[:1]
	Release(b)
	if kept[0] != (journal.Entry{}) {
		t.Fatalf("released batch still holds %+v", kept[0])
	}
	small := []journal.Entry{{Message: "x"}}
	Release(small)
	if small[0].Message != "x" {
		t.Fatal("a batch not made by the reader was cleared")
	}
	if n := newBatch(); len(n) != 0 {
		t.Fatalf("newBatch after Release: len %d", len(n))
	}
}
