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
	entries  atomic.Uint64 // journal entries handed to HandleBatch
	lag      atomic.Int64  // nanoseconds: how late the last batch's last entry was handled
	verifyAt atomic.Int64  // UnixNano of the last Verify's end; 0: none yet
	verifyOK atomic.Bool   // whether it left the layout as it must be
	repairs  atomic.Uint64 // Verify runs that found drift and repaired it
}

var _ dbusapi.Metered = (*Keeper)(nil)

// countEntries counts the entries of batches and takes the lag from the
// last entry with a time: how long after the entry was written (its
// source's timestamp, else journald's) it is handled, 0 when that is in
// the future.
func (m *meters) countEntries(now time.Time, batches [][]jjournal.Entry) {
	n := 0
	var last time.Time
	for _, b := range batches {
		n += len(b)
		if len(b) > 0 && !b[len(b)-1].Time.IsZero() {
			last = b[len(b)-1].Time
		}
	}
	m.entries.Add(uint64(n))
	if !last.IsZero() {
		m.lag.Store(int64(max(now.Sub(last), 0)))
	}
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
		JournalLag:         time.Duration(m.lag.Load()),
		LastVerifyOK:       m.verifyOK.Load(),
		FirewallRepairs:    m.repairs.Load(),
	}
	if at := m.verifyAt.Load(); at != 0 {
		dm.LastVerify = time.Unix(0, at)
	}
	return dm
}
