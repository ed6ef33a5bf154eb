package keeper

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
	"github.com/jailkeeper/jailkeeper/pkg/journal/sdjournal"
)

// TestJournalLagRealReader: a real journald holds a backlog of 3,000
// entries and a real reader follows it. While the reader is held (its
// batches not taken), and while it is taken batch by batch, the lag is
// above 0; once every entry is handled it is 0, and it stays 0 while the
// daemon idles. A new entry makes it briefly non-zero and then 0 again.
func TestJournalLagRealReader(t *testing.T) {
	t.Parallel()
	testbed.Require(t, "journalctl", "nsenter")
	jd := testbed.StartJournald(t)
	unit := "jk-lag-" + testbed.Suffix() + ".service"
	msgs := make([]string, 3000)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("backlog entry %d", i)
	}
	if err := jd.WriteAsUnit(unit, msgs); err != nil {
		t.Fatal(err)
	}
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	r, err := sdjournal.Open(sdjournal.Options{Units: []string{unit}, Path: jd.Dir(), LookBack: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b.k.SetJournalTail(r)
	out := make(chan []journal.Entry) // unbuffered: the reader waits until a batch is taken
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, out) }()
	defer func() { cancel(); <-done }()

	lag := func() time.Duration { return b.k.DaemonMetrics().JournalLag }
	// The reader reads its first batch and holds it.
	for deadline := time.Now().Add(5 * time.Second); lag() <= 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("reader held with a backlog of %d entries: lag %v after 5 s, want > 0", len(msgs), lag())
		}
	}
	time.Sleep(50 * time.Millisecond)
	if l := lag(); l <= 0 {
		t.Fatalf("reader still held: lag %v, want > 0", l)
	}
	handled, batches := 0, 0
	for handled < len(msgs) {
		select {
		case batch := <-out:
			if l := lag(); l <= 0 && handled+len(batch) < len(msgs) {
				t.Fatalf("after %d of %d entries: lag %v, want > 0", handled, len(msgs), l)
			}
			b.k.HandleBatch(batch)
			handled += len(batch)
			batches++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d entries after 10 s", handled, len(msgs))
		}
	}
	waitZero := func(what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for lag() != 0 {
			if time.Now().After(deadline) {
				cursor, at, since := r.Tail()
				t.Fatalf("%s: lag %v 5 s after the last entry was handled (reader at tail %v, cursor %q, since %v; handled %q)", what, lag(), at, cursor, since, b.k.Cursor())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitZero("after the backlog")
	time.Sleep(300 * time.Millisecond)
	if l := lag(); l != 0 {
		t.Fatalf("idle after the backlog: lag %v, want 0", l)
	}
	t.Logf("backlog of %d entries in %d batches; lag 0 once handled and while idle", handled, batches)

	// One more entry: handled, the lag is 0 again.
	if err := jd.WriteAsUnit(unit, []string{"one more"}); err != nil {
		t.Fatal(err)
	}
	select {
	case batch := <-out:
		b.k.HandleBatch(batch)
	case <-time.After(10 * time.Second):
		t.Fatal("the new entry did not arrive")
	}
	waitZero("after one more entry")
}
