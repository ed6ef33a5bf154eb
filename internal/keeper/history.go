package keeper

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// The event history (bans.Event) as the daemon records it: every ban,
// unban and expiry, with the ban's reason and who decided it. Origins:
// OriginJournal for the engine's decisions, OriginAdmin for Ban, BanMany
// and unbans over D-Bus, a fleet server's name for BanFrom with an origin.
const (
	OriginJournal = "journal"
	OriginAdmin   = "admin"
	// OriginConfig: a ban dropped at a start or reload because its jail
	// is no longer configured, or its address may no longer be banned.
	OriginConfig = "config"
)

// historyEach bounds the bans of one jail changed at once that get an
// event each; a larger change (an import step, a mass expiry, UnbanAll)
// is one event per jail that says how many bans it stands for, so that
// the history costs an import of a million bans a few hundred events. The
// engine's bans always get one each: each attacker with its own reason is
// what the history is for, and their number is bounded by the journal's
// (a flood of 5,000 attackers: 5,000 events, written in 12 ms).
const historyEach = 256

var _ dbusapi.Historian = (*Keeper)(nil)

// record queues the events of bs for the history. Callers hold k.mu.
func (k *Keeper) record(kind bans.EventKind, bs []bans.Ban, origin string) {
	if len(bs) == 0 {
		return
	}
	now := time.Now()
	ev := func(b bans.Ban, n int) bans.Event {
		e := bans.Event{Time: now, Kind: kind, Jail: b.Jail, Prefix: b.Prefix, Count: n, Origin: origin}
		switch {
		case kind == bans.EventBan:
			e.Expires, e.Reason = b.Expires, b.Reason
		case kind == bans.EventExpire && !b.Expires.IsZero() && b.Expires.Before(now):
			// When it ended: a ban that ended while the daemon was
			// stopped is lifted at its start.
			e.Time = b.Expires
		}
		return e
	}
	if len(bs) <= historyEach || origin == OriginJournal {
		evs := make([]bans.Event, len(bs))
		for i, b := range bs {
			evs[i] = ev(b, 1)
		}
		k.table.RecordEvents(evs...)
		return
	}
	// Per jail: the first ban stands for the others. An import step is
	// of one jail: one comparison per ban, no map.
	one := true
	for _, b := range bs {
		if b.Jail != bs[0].Jail {
			one = false
			break
		}
	}
	if one {
		k.table.RecordEvents(ev(bs[0], len(bs)))
		return
	}
	n := map[string]int{}
	var order []bans.Ban
	for _, b := range bs {
		if n[b.Jail] == 0 {
			order = append(order, b)
		}
		n[b.Jail]++
	}
	for _, b := range order {
		if n[b.Jail] <= historyEach {
			// A small jail's share of a large change.
			for _, c := range bs {
				if c.Jail == b.Jail {
					k.table.RecordEvents(ev(c, 1))
				}
			}
			continue
		}
		k.table.RecordEvents(ev(b, n[b.Jail]))
	}
}

// recordDropped queues the unban of b by the configuration, saying why.
func (k *Keeper) recordDropped(b bans.Ban, why string) {
	k.table.RecordEvents(bans.Event{Time: time.Now(), Kind: bans.EventUnban, Jail: b.Jail, Prefix: b.Prefix, Count: 1,
		Reason: why, Origin: OriginConfig})
}

// flushHistory writes the recorded events in a goroutine of its own, if
// none is writing already: the daemon's expiry tick calls it (through
// Expire) every second, and a write (a flood's second of events: 12 ms
// for 5,000 with the disk's sync) must not hold up its main loop. The ban
// path does not wait for it either: bans reach the kernel before the
// table's transaction, which is all a history write can delay.
func (k *Keeper) flushHistory() {
	if !k.hist.busy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer k.hist.busy.Store(false)
		k.writeHistory()
	}()
}

// writeHistory writes the recorded events now, logging a failure once
// per spell.
func (k *Keeper) writeHistory() error {
	err := k.table.FlushEvents(time.Now())
	k.hist.mu.Lock()
	defer k.hist.mu.Unlock()
	if err != nil && k.hist.err == nil {
		k.log.Errorf(MsgSave, "%v (the events stay queued and are retried every second)", err)
	}
	k.hist.err = err
	return err
}

// historyState is the Keeper's side of the history: whether a write is
// under way, and the last write's error, so that a failing disk is logged
// once per spell.
type historyState struct {
	busy atomic.Bool
	mu   sync.Mutex
	err  error
}

// ListHistory implements dbusapi.Historian: the event history of jail
// ("" = every jail), newest first. A jail that has none (unknown, or not
// yet banning) gives an empty page; a jail removed by a reload keeps its
// history.
func (k *Keeper) ListHistory(jail string, offset, limit int) ([]dbusapi.HistoryEntry, int, error) {
	evs, total, err := k.table.Events(jail, offset, limit)
	if err != nil {
		return nil, 0, err
	}
	out := make([]dbusapi.HistoryEntry, len(evs))
	for i, e := range evs {
		out[i] = dbusapi.HistoryEntry{Time: e.Time.Unix(), Kind: e.Kind.String(), Jail: e.Jail,
			Count: uint32(e.Count), Reason: e.Reason, Origin: e.Origin}
		if e.Prefix.IsValid() {
			out[i].Prefix = prefix.Format(e.Prefix)
		}
		if !e.Expires.IsZero() {
			out[i].Expires = e.Expires.Unix()
		}
	}
	return out, total, nil
}
