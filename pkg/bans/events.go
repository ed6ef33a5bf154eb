package bans

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The event history: what happened to bans (banned, unbanned, expired),
// when, why and on whose word, for people and clients to read back (the
// D-Bus ListHistory, the Cockpit page). It is apart from the per-prefix
// ban history that raises the next bantime, and nothing in the ban path
// reads it.
//
// Recording costs the ban path an append to a slice: events wait in memory
// until FlushEvents writes them, all in one transaction (the daemon
// flushes once a second, with its expiry tick). A crash loses at most the
// events since the last flush; the bans themselves are saved as before.
//
// Retention: at most HistoryKeep events and none older than HistoryMaxAge;
// a flush deletes the oldest beyond either bound (by count in steps of
// HistoryKeep/16, so that a flush deletes nothing most of the time).

// Bounds of the event history.
const (
	HistoryKeep   = 50_000
	HistoryMaxAge = 90 * 24 * time.Hour
)

var bucketEvents = []byte("events")

// EventKind is what happened to a ban.
type EventKind uint8

// The kinds of events.
const (
	EventBan    EventKind = 1 // banned (new or extended)
	EventUnban  EventKind = 2 // lifted by an administrator or a client
	EventExpire EventKind = 3 // its time ran out
)

// String is the kind's name as clients see it: "ban", "unban", "expiry".
func (k EventKind) String() string {
	switch k {
	case EventBan:
		return "ban"
	case EventUnban:
		return "unban"
	case EventExpire:
		return "expiry"
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// Event is one entry of the event history. A change of many bans at once
// (an import, a mass expiry) may be recorded as one event: Count says how
// many bans it stands for, and Prefix, Expires and Reason are those of the
// first of them.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Jail    string
	Prefix  netip.Prefix
	Count   int       // bans this event stands for, at least 1
	Expires time.Time // a ban's end; zero: permanent, or not a ban
	Reason  string
	Origin  string // who decided it: "journal", "admin", a fleet server's name; "" for expiries
}

// eventLog is the table's side of the event history; its own mutex guards
// it, so that recording never waits for the table's lock.
type eventLog struct {
	mu       sync.Mutex
	pending  []Event
	inflight []Event // being written by FlushEvents, under keys from start on
	start    uint64
	mem      []Event // an in-memory table's history, oldest first
	// The bucket's state, read at the first flush.
	opened bool
	next   uint64 // key of the next event
	n      int    // events in the bucket
	// flushing serialises flushes (and their use of opened, next and n).
	flushing sync.Mutex
}

// RecordEvents queues events for the next FlushEvents. It never blocks on
// the disk. Beyond twice HistoryKeep events waiting (a disk that keeps
// refusing them), the oldest are dropped down to HistoryKeep: the history
// keeps no more anyway.
func (t *Table) RecordEvents(evs ...Event) {
	l := &t.ev
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, evs...)
	if len(l.pending) > 2*HistoryKeep {
		l.pending = append(l.pending[:0], l.pending[len(l.pending)-HistoryKeep:]...)
	}
}

// FlushEvents writes the events recorded since the last flush in one
// transaction and applies the retention bounds as of now. With nothing
// recorded it does nothing. On error the events stay queued.
func (t *Table) FlushEvents(now time.Time) (err error) {
	defer recoverCorrupt(&err)
	l := &t.ev
	l.flushing.Lock()
	defer l.flushing.Unlock()
	l.mu.Lock()
	none := len(l.pending) == 0
	l.mu.Unlock()
	if none {
		return nil
	}
	t.mu.Lock()
	db := t.db
	t.mu.Unlock()
	if db != nil && !l.opened {
		if err := db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketEvents); b != nil {
				l.n = b.Stats().KeyN
				if k, _ := b.Cursor().Last(); len(k) == 8 {
					l.next = binary.BigEndian.Uint64(k) + 1
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("reading the ban history: %w", err)
		}
		l.opened = true
	}
	l.mu.Lock()
	evs := l.pending
	l.pending = nil
	if db == nil {
		l.mem = trimEvents(append(l.mem, evs...), now)
	} else {
		l.inflight, l.start = evs, l.next
	}
	l.mu.Unlock()
	if len(evs) == 0 || db == nil {
		return nil
	}
	next, n := l.next, l.n
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketEvents)
		if err != nil {
			return err
		}
		b.FillPercent = 1 // appends only
		var buf []byte
		for _, e := range evs {
			if cap(buf)-len(buf) < 256+len(e.Reason) {
				buf = make([]byte, 0, max(64<<10, 256+len(e.Reason)))
			}
			buf = buf[len(buf):]
			k := binary.BigEndian.AppendUint64(buf, next)
			v := appendEvent(k[8:], e)
			buf = v
			// bbolt keeps the slices until the transaction commits.
			if err := b.Put(k[:8:8], v); err != nil {
				return err
			}
			next++
			n++
		}
		// Retention: the oldest beyond HistoryKeep (in steps), and those
		// older than HistoryMaxAge.
		drop := 0
		if n > HistoryKeep+HistoryKeep/16 {
			drop = n - HistoryKeep
		}
		old := now.Add(-HistoryMaxAge)
		var gone [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(gone) >= drop {
				if e, err := decodeEvent(v); err == nil && !e.Time.Before(old) {
					break
				}
			}
			gone = append(gone, append([]byte(nil), k...))
		}
		for _, k := range gone {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n -= len(gone)
		return nil
	})
	l.mu.Lock()
	l.inflight = nil
	if err != nil {
		l.pending = append(evs, l.pending...)
	}
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("saving the ban history: %w", err)
	}
	l.next, l.n = next, n
	return nil
}

// trimEvents applies the retention bounds to an in-memory history.
func trimEvents(evs []Event, now time.Time) []Event {
	if len(evs) > HistoryKeep {
		evs = append(evs[:0], evs[len(evs)-HistoryKeep:]...)
	}
	old := now.Add(-HistoryMaxAge)
	i := 0
	for i < len(evs) && evs[i].Time.Before(old) {
		i++
	}
	return evs[i:]
}

// Events returns at most limit events (0: no bound) of jail ("": every
// jail), newest first, skipping the offset newest, and how many events of
// jail the history holds in all. Events recorded and not yet flushed are
// included. It scans the history once (at most HistoryKeep small records).
func (t *Table) Events(jail string, offset, limit int) (page []Event, total int, err error) {
	defer recoverCorrupt(&err)
	defer faultsPanic()()
	offset = max(offset, 0)
	take := func(e Event) {
		if jail != "" && e.Jail != jail {
			return
		}
		if total >= offset && (limit <= 0 || len(page) < limit) {
			page = append(page, e)
		}
		total++
	}
	t.mu.Lock()
	db := t.db
	t.mu.Unlock()
	l := &t.ev
	l.mu.Lock()
	recent := make([]Event, 0, len(l.mem)+len(l.inflight)+len(l.pending))
	recent = append(append(append(recent, l.mem...), l.inflight...), l.pending...)
	// Keys from skip on are events of recent being written.
	skip := uint64(1<<64 - 1)
	if len(l.inflight) > 0 {
		skip = l.start
	}
	var tx *bolt.Tx
	if db != nil {
		// Begun under l.mu: a flush that ends meanwhile has its events
		// either in recent or in this transaction, never in both.
		if tx, err = db.Begin(false); err != nil {
			l.mu.Unlock()
			return nil, 0, fmt.Errorf("reading the ban history: %w", err)
		}
		defer tx.Rollback()
	}
	l.mu.Unlock()
	for i := len(recent) - 1; i >= 0; i-- {
		take(recent[i])
	}
	if tx == nil {
		return page, total, nil
	}
	b := tx.Bucket(bucketEvents)
	if b == nil {
		return page, total, nil
	}
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if len(k) != 8 || binary.BigEndian.Uint64(k) >= skip {
			continue
		}
		if jail == "" && (total < offset || (limit > 0 && len(page) >= limit)) {
			total++
			continue
		}
		e, err := decodeEvent(v)
		if err != nil {
			return nil, 0, fmt.Errorf("reading the ban history: %w: event %x: %v", ErrCorrupt, k, err)
		}
		take(e)
	}
	return page, total, nil
}

// How an event is stored: under an 8-byte big-endian sequence number, the
// record
//
//	0x01, kind, flags (bit 0: has an end), time seconds (varint) and
//	nanoseconds (uvarint), with an end its seconds after the time
//	(varint), count (uvarint), then jail, prefix (text), origin each as
//	a length (uvarint) and bytes, then the reason's bytes to the end.
const flagExpires = 0x01

// appendEvent appends e's record to dst.
func appendEvent(dst []byte, e Event) []byte {
	var flags byte
	if !e.Expires.IsZero() {
		flags |= flagExpires
	}
	dst = append(dst, recordV1, byte(e.Kind), flags)
	dst = appendTime(dst, e.Time.Unix(), e.Time.Nanosecond())
	if flags&flagExpires != 0 {
		dst = binary.AppendVarint(dst, e.Expires.Unix()-e.Time.Unix())
	}
	dst = binary.AppendUvarint(dst, uint64(max(e.Count, 1)))
	dst = binary.AppendUvarint(dst, uint64(len(e.Jail)))
	dst = append(dst, e.Jail...)
	dst = binary.AppendUvarint(dst, 0) // the prefix's length, set below
	at := len(dst)
	if e.Prefix.IsValid() {
		dst = e.Prefix.AppendTo(dst)
	}
	// A prefix's text is at most 43 bytes: its length fits the one byte
	// written above.
	dst[at-1] = byte(len(dst) - at)
	dst = binary.AppendUvarint(dst, uint64(len(e.Origin)))
	dst = append(dst, e.Origin...)
	return append(dst, e.Reason...)
}

var errTruncated = errors.New("truncated record")

// eventBytes reads a length-prefixed field.
func eventBytes(b []byte) (field, rest []byte, err error) {
	n, m := binary.Uvarint(b)
	if m <= 0 || uint64(len(b)-m) < n {
		return nil, nil, errTruncated
	}
	return b[m : m+int(n)], b[m+int(n):], nil
}

// decodeEvent reads an event's record.
func decodeEvent(v []byte) (Event, error) {
	if len(v) < 3 || v[0] != recordV1 {
		return Event{}, unknownRecord(v)
	}
	e := Event{Kind: EventKind(v[1])}
	flags := v[2]
	r := recordReader{b: v[3:]}
	e.Time = r.time(0)
	if r.err != nil {
		return Event{}, r.err
	}
	b := r.b
	if flags&flagExpires != 0 {
		d, m := binary.Varint(b)
		if m <= 0 {
			return Event{}, errTruncated
		}
		e.Expires = time.Unix(e.Time.Unix()+d, 0)
		b = b[m:]
	}
	cnt, m := binary.Uvarint(b)
	if m <= 0 {
		return Event{}, errTruncated
	}
	e.Count = int(min(cnt, 1<<31))
	b = b[m:]
	jail, b, err := eventBytes(b)
	if err != nil {
		return Event{}, err
	}
	e.Jail = string(jail)
	p, b, err := eventBytes(b)
	if err != nil {
		return Event{}, err
	}
	if len(p) > 0 {
		if e.Prefix, err = netip.ParsePrefix(string(p)); err != nil {
			return Event{}, fmt.Errorf("prefix: %w", err)
		}
	}
	origin, b, err := eventBytes(b)
	if err != nil {
		return Event{}, err
	}
	e.Origin = string(origin)
	e.Reason = string(b)
	return e, nil
}
