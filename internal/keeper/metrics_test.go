package keeper

import (
	"errors"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// TestDaemonMetrics: entries read follow the batches; a verification's
// time and result and the repairs follow Verify.
func TestDaemonMetrics(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	if m := b.k.DaemonMetrics(); m.JournalEntriesRead != 0 || !m.LastVerify.IsZero() || m.FirewallRepairs != 0 {
		t.Fatalf("fresh metrics %+v", m)
	}
	old := failure("203.0.113.9", "")
	old.Time = time.Now().Add(-30 * time.Second)
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.8", "")}, []journal.Entry{failure("203.0.113.7", ""), old})
	m := b.k.DaemonMetrics()
	if m.JournalEntriesRead != 3 {
		t.Errorf("entries read %d, want 3", m.JournalEntriesRead)
	}
	if m.JournalLag != 0 {
		t.Errorf("lag %v without a journal reader, want 0", m.JournalLag)
	}

	before := time.Now()
	if err := b.k.Verify(); err != nil {
		t.Fatal(err)
	}
	if m := b.k.DaemonMetrics(); !m.LastVerifyOK || m.LastVerify.Before(before) || m.FirewallRepairs != 0 {
		t.Errorf("after a clean verification: %+v", m)
	}
	b.fws["iptables"].Drift(firewall.DriftFlushChain)
	if err := b.k.Verify(); err != nil {
		t.Fatal(err)
	}
	if m := b.k.DaemonMetrics(); !m.LastVerifyOK || m.FirewallRepairs != 1 {
		t.Errorf("after a repair: %+v, want 1 repair", m)
	}
	b.fws["iptables"].Fail = errors.New("netlink: operation not permitted")
	b.fws["iptables"].Drift(firewall.DriftDeleteJump)
	if err := b.k.Verify(); err == nil {
		t.Fatal("Verify with a failing repair returned nil")
	}
	if m := b.k.DaemonMetrics(); m.LastVerifyOK || m.FirewallRepairs != 1 {
		t.Errorf("after a failed repair: %+v, want not OK and still 1 repair", m)
	}
}

// fakeTail is a journal reader's position (JournalTail).
type fakeTail struct {
	cursor string
	at     bool
	since  time.Time
}

func (f *fakeTail) Tail() (string, bool, time.Time) { return f.cursor, f.at, f.since }

// TestJournalLag: the lag is the age of the oldest entry waiting while the
// reader is behind or batches are in hand, and 0 once every entry the
// reader found at the tail is handled, however long the daemon then idles.
func TestJournalLag(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	now := time.Now()
	at := func(ago time.Duration, cursor string) journal.Entry {
		e := failure("203.0.113.9", cursor)
		e.Time = now.Add(-ago)
		return e
	}
	near := func(got, want time.Duration) bool { return got >= want && got < want+10*time.Second }
	tail := &fakeTail{since: now.Add(-40 * time.Second)}
	b.k.SetJournalTail(tail)
	if l := b.k.meters.lag(now); !near(l, 40*time.Second) {
		t.Fatalf("reader behind, nothing handled: lag %v, want 40 s (the first entry read)", l)
	}
	// Batches in hand: the age of their oldest entry.
	batch := [][]journal.Entry{{at(40*time.Second, ""), at(30*time.Second, "c=2")}}
	b.k.meters.begin(batch)
	if l := b.k.meters.lag(now); !near(l, 40*time.Second) {
		t.Fatalf("batches in hand: lag %v, want 40 s", l)
	}
	b.k.meters.end(batch)
	// Handled, the reader still behind: the age of the last entry handled.
	if l := b.k.meters.lag(now); !near(l, 30*time.Second) {
		t.Fatalf("reader behind after a batch: lag %v, want 30 s", l)
	}
	// The reader at the tail with an entry not handled yet: still behind.
	tail.at, tail.cursor = true, "c=3"
	if l := b.k.meters.lag(now); !near(l, 30*time.Second) {
		t.Fatalf("tail at c=3, handled c=2: lag %v, want 30 s", l)
	}
	b.k.HandleBatch([]journal.Entry{at(20*time.Second, "c=3")})
	for _, idle := range []time.Duration{0, time.Minute, 24 * time.Hour} {
		if l := b.k.meters.lag(now.Add(idle)); l != 0 {
			t.Fatalf("caught up, idle %v: lag %v, want 0", idle, l)
		}
	}
	if l := b.k.DaemonMetrics().JournalLag; l != 0 {
		t.Fatalf("DaemonMetrics: lag %v, want 0", l)
	}
	// After an idle hour the reader leaves the tail for a new entry: its
	// age, not the hour since the last one.
	tail.at, tail.since = false, now.Add(time.Hour-time.Second)
	if l := b.k.meters.lag(now.Add(time.Hour)); !near(l, time.Second) {
		t.Fatalf("new entry after an idle hour: lag %v, want 1 s", l)
	}
	b.k.SetJournalTail(nil)
	if l := b.k.meters.lag(now); l != 0 {
		t.Fatalf("no reader: lag %v, want 0", l)
	}
}
