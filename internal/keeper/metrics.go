package keeper

import (
	"sync/atomic"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	jjournal "github.com/jailkeeper/jailkeeper/pkg/journal"
)

// meters are the daemon's own counters for operators (dbusapi.Metered),
// kept in atomics so that the ban path pays an add and the bus reads them
// without the Keeper's lock.
type meters struct {
	entries  atomic.Uint64          // journal entries handed to HandleBatch
	handling atomic.Int64           // UnixNano of the oldest entry of the batches in hand; 0 when none
	lastTime atomic.Int64           // UnixNano of the last entry handled that has a time
	cursor   atomic.Pointer[string] // the cursor of the last entry handled that has one
	tail     atomic.Pointer[JournalTail]
	verifyAt atomic.Int64  // UnixNano of the last Verify's end; 0: none yet
	verifyOK atomic.Bool   // whether it left the layout as it must be
	repairs  atomic.Uint64 // Verify runs that found drift and repaired it
}

// JournalTail is where the journal reader stands against the journal's
// tail (sdjournal.Reader.Tail): atTail once it has sent every entry the
// journal holds, cursor the last one it sent, since the time of the first
// entry it read after it was last at the tail.
type JournalTail interface {
	Tail() (cursor string, atTail bool, since time.Time)
}

// SetJournalTail tells the keeper where the journal reader stands, for
// the lag metric; nil while no reader runs (the lag is then 0).
func (k *Keeper) SetJournalTail(t JournalTail) {
	if t == nil {
		k.meters.tail.Store(nil)
		return
	}
	k.meters.tail.Store(&t)
}

var _ dbusapi.Metered = (*Keeper)(nil)

// begin records that the batches are in hand: it counts their entries and
// notes the time of the oldest (the first with a time).
func (m *meters) begin(batches [][]jjournal.Entry) {
	n := 0
	var first time.Time
	for _, b := range batches {
		n += len(b)
		for i := 0; first.IsZero() && i < len(b); i++ {
			first = b[i].Time
		}
	}
	m.entries.Add(uint64(n))
	if !first.IsZero() {
		m.handling.Store(first.UnixNano())
	}
}

// end records that the batches are handled: their last entry's time and
// cursor.
func (m *meters) end(batches [][]jjournal.Entry) {
	for i := len(batches) - 1; i >= 0; i-- {
		if b := batches[i]; len(b) > 0 {
			if t := b[len(b)-1].Time; !t.IsZero() {
				m.lastTime.Store(t.UnixNano())
			}
			if c := b[len(b)-1].Cursor; c != "" {
				m.cursor.Store(&c)
			}
			break
		}
	}
	m.handling.Store(0)
}

// lag is how far the daemon is behind the journal's tail at now: 0 when
// it has handled every entry the reader found (or no reader runs); while
// batches are in hand, the age of their oldest entry; otherwise, while
// entries wait (read but not handled, or not read yet), the age of the
// oldest of them as far as known: the newer of the last entry handled and
// the first entry read since the reader was last at the tail.
func (m *meters) lag(now time.Time) time.Duration {
	if h := m.handling.Load(); h != 0 {
		return max(now.Sub(time.Unix(0, h)), 0)
	}
	tp := m.tail.Load()
	if tp == nil {
		return 0
	}
	cursor, at, since := (*tp).Tail()
	handled := ""
	if c := m.cursor.Load(); c != nil {
		handled = *c
	}
	if at && cursor == handled {
		return 0
	}
	oldest := since
	if last := m.lastTime.Load(); last != 0 && time.Unix(0, last).After(oldest) {
		oldest = time.Unix(0, last)
	}
	if oldest.IsZero() {
		return 0
	}
	return max(now.Sub(oldest), 0)
}

// verified records the end of a Verify: found is the drift it repaired,
// err its failure.
func (m *meters) verified(now time.Time, found []string, err error) {
	if len(found) > 0 && err == nil {
		m.repairs.Add(1)
	}
	m.verifyOK.Store(err == nil)
	m.verifyAt.Store(now.UnixNano())
}

// DaemonMetrics implements dbusapi.Metered.
func (k *Keeper) DaemonMetrics() dbusapi.DaemonMetrics {
	m := &k.meters
	dm := dbusapi.DaemonMetrics{
		JournalEntriesRead: m.entries.Load(),
		JournalLag:         m.lag(time.Now()),
		LastVerifyOK:       m.verifyOK.Load(),
		FirewallRepairs:    m.repairs.Load(),
	}
	if at := m.verifyAt.Load(); at != 0 {
		dm.LastVerify = time.Unix(0, at)
	}
	return dm
}
