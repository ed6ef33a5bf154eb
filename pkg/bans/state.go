package bans

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// State saved with the journal cursor.
//
// Another stage's state that must match the saved cursor exactly (the
// engine's failure counts) is written in the same transaction as the
// cursor. Its records are opaque here and kept as a log: each cursor
// write appends the records changed since the last one under increasing
// sequence numbers, so the pages written follow the size of the change
// (a B+tree of records updated in place rewrote a page per changed record:
// 300 changed records of 5,000 took a commit from 3 ms to 8.4 ms). When the
// log has grown past twice its size after the last compaction plus 65,536
// entries, it is compacted. A source that can hand out its records in
// parts (StateSweeper) is swept: each cursor write from then on appends
// the current value of up to sweepChunk more of its records, and once all
// are written again, the next writes delete the entries from before the
// sweep, sweepChunk at a time. At every write the log holds the state as
// of its cursor: a later entry of a key replaces an earlier one, and the
// entries from the sweep's start on hold every record then held. Any
// other source is asked for all its records at once, which replace the
// log in one write (a million tracked addresses: about a second).

// compactMin is the log growth, in entries, that never triggers a
// compaction by itself.
const compactMin = 1 << 16

// sweepChunk is how many records a sweep writes again, and how many old
// entries it deletes, per cursor write.
const sweepChunk = 20_000

// Sweep phases.
const (
	sweepNone = iota
	sweepPut  // writing the records again
	sweepDrop // deleting the entries from before the sweep
)

// Log entry operations.
const (
	opPut    = 'p'
	opDelete = 'd'
)

// StateSource is state of another stage saved with the journal cursor
// (AttachState).
type StateSource interface {
	// TakeState calls put with every record changed since its last call
	// (a nil value deletes the record) and returns false; or, when all is
	// true or the source decides so itself, with every record it holds,
	// and returns true. The table keeps the slices.
	TakeState(all bool, put func(key, value []byte)) (full bool)
}

// StateSweeper is a StateSource that hands out its records in parts, so
// that a compaction of the log is spread over many cursor writes.
type StateSweeper interface {
	StateSource
	// SweepState, with start, notes every record the source holds now;
	// then it calls put with the current value of up to n of the noted
	// records not yet handed out (skipping those it no longer holds) and
	// reports whether all have been handed out.
	SweepState(start bool, n int, put func(key, value []byte)) (done bool)
}

// stateLog is the table's side of the saved state; the Table's mutex
// guards it.
type stateLog struct {
	src     StateSource
	pending map[string][]byte // taken, not yet written; nil value = delete
	full    bool              // dump holds a full dump: replace the log
	dump    [][2][]byte       // the full dump, key and value
	next    uint64            // sequence number of the next entry
	first   uint64            // sequence number of the first entry
	base    uint64            // entries right after the last compaction
	// The sweep in progress: its phase, the first sequence number it may
	// have written, and whether the source's sweep must start (again).
	sweep      int
	sweepFrom  uint64
	sweepStart bool
	// wrote is what the write in flight did, applied by written.
	wroteNext, wroteFirst, wroteBase uint64
	wroteSweep                       int
}

// AttachState makes every later write of the journal cursor (Commit,
// SaveCursor) take src's changes and write them in the same transaction.
// Changes taken from a previous source and not yet written are written
// with the next cursor too. A nil src detaches.
func (t *Table) AttachState(src StateSource) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.src = src
	if t.st.sweep == sweepPut {
		// The new source's records are swept from the start.
		t.st.sweepStart = true
	}
}

// takeState collects the attached source's changes (and the sweep's next
// part) into the pending ones. It calls the source without holding t.mu:
// the engine calls the table (History) while holding its own lock. One
// call at a time (takeMu): the sweep's parts go in order.
func (t *Table) takeState() {
	t.takeMu.Lock()
	defer t.takeMu.Unlock()
	t.mu.Lock()
	s := &t.st
	src := s.src
	sweeper, canSweep := src.(StateSweeper)
	compact := s.next-s.first > compactMin+2*s.base
	if s.sweep == sweepPut && !canSweep {
		// Detached, or a source that cannot be swept: the entries from
		// before stay until the next compaction.
		s.sweep = sweepNone
	}
	if compact && canSweep && s.sweep == sweepNone {
		s.sweep, s.sweepFrom, s.sweepStart = sweepPut, s.next, true
	}
	all := compact && !canSweep
	sweep, start := s.sweep == sweepPut && canSweep, s.sweepStart
	s.sweepStart = false
	t.mu.Unlock()
	if src == nil {
		return
	}
	var recs [][2][]byte
	put := func(k, v []byte) { recs = append(recs, [2][]byte{k, v}) }
	full := src.TakeState(all, put)
	changes := len(recs)
	done := false
	if sweep && !full {
		// After the changes: a record's current value is the latest.
		done = sweeper.SweepState(start, sweepChunk, put)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if full {
		// Everything there is: earlier pending changes are in it.
		s.full, s.dump = true, recs
		clear(s.pending)
		s.sweep = sweepNone
		return
	}
	if sweep && done {
		// The last part goes into the write that starts the deletes:
		// they are committed together.
		s.sweep = sweepDrop
	}
	if s.full {
		// A full dump not yet written: the changes go on top of it.
		s.dump = append(s.dump, recs[:changes]...)
		return
	}
	if s.pending == nil {
		s.pending = make(map[string][]byte, len(recs))
	}
	for _, r := range recs {
		s.pending[string(r[0])] = r[1]
	}
}

// dirty reports whether changes wait to be written: a cursor write then
// happens even when the cursor has not moved (an unban made the engine
// forget failures, a sweep goes on).
func (s *stateLog) dirty() bool { return s.full || len(s.pending) > 0 || s.sweep != sweepNone }

// open finds the log's ends. Called by Open.
func (s *stateLog) open(tx *bolt.Tx) {
	c := tx.Bucket(bucketState).Cursor()
	if k, _ := c.Last(); len(k) == 8 {
		s.next = binary.BigEndian.Uint64(k) + 1
	}
	if k, _ := c.First(); len(k) == 8 {
		s.first = binary.BigEndian.Uint64(k)
	}
	// Taken as the size after a compaction: the log is compacted once it
	// has doubled (the source asks for a full one itself when it finds
	// the log mostly replaced records).
	s.base = s.next - s.first
}

// write appends the pending changes to the log in tx, or replaces the log
// with a pending full dump, and deletes a part of the entries a finished
// sweep has replaced. Called with t.mu held, in the transaction that
// writes the cursor.
func (s *stateLog) write(tx *bolt.Tx) error {
	s.wroteNext, s.wroteFirst, s.wroteBase, s.wroteSweep = s.next, s.first, s.base, s.sweep
	if len(s.pending) == 0 && !s.full && s.sweep != sweepDrop {
		return nil
	}
	// A full dump may repeat a key (changes taken on top of it): its later
	// records replace the earlier ones when read back, as in any log.
	if s.full {
		if err := tx.DeleteBucket(bucketState); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return fmt.Errorf("compacting saved state: %w", err)
		}
		if _, err := tx.CreateBucket(bucketState); err != nil {
			return fmt.Errorf("compacting saved state: %w", err)
		}
		s.wroteNext, s.wroteFirst, s.wroteSweep = 0, 0, sweepNone
	}
	b := tx.Bucket(bucketState)
	b.FillPercent = 1 // appends only
	var buf []byte
	put := func(k string, v []byte) error {
		op := byte(opPut)
		if v == nil {
			op = opDelete
		}
		// bbolt keeps the slices until the transaction commits.
		buf = buf[len(buf):]
		if cap(buf) < 8+1+binary.MaxVarintLen32+len(k)+len(v) {
			buf = make([]byte, 0, max(64<<10, 8+1+binary.MaxVarintLen32+len(k)+len(v)))
		}
		key := binary.BigEndian.AppendUint64(buf, s.wroteNext)
		e := append(key[8:], op)
		e = binary.AppendUvarint(e, uint64(len(k)))
		e = append(e, k...)
		e = append(e, v...)
		buf = e
		if err := b.Put(key[:8:8], e); err != nil {
			return fmt.Errorf("saving state %q: %w", k, err)
		}
		s.wroteNext++
		return nil
	}
	if s.full {
		for _, r := range s.dump {
			if err := put(string(r[0]), r[1]); err != nil {
				return err
			}
		}
		s.wroteBase = s.wroteNext
		return nil
	}
	for k, v := range s.pending {
		if err := put(k, v); err != nil {
			return err
		}
	}
	if s.sweep == sweepDrop {
		return s.dropSwept(b)
	}
	return nil
}

// dropSwept deletes up to sweepChunk of the entries from before the
// sweep; when none is left, the sweep is over. Part of write.
func (s *stateLog) dropSwept(b *bolt.Bucket) error {
	var old [][]byte
	c := b.Cursor()
	k, _ := c.First()
	for ; len(k) == 8 && binary.BigEndian.Uint64(k) < s.sweepFrom && len(old) < sweepChunk; k, _ = c.Next() {
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("compacting saved state: %w", err)
		}
	}
	if len(old) > 0 {
		s.wroteFirst = binary.BigEndian.Uint64(old[len(old)-1]) + 1
	}
	if len(k) != 8 || binary.BigEndian.Uint64(k) >= s.sweepFrom {
		s.wroteFirst = s.sweepFrom
		s.wroteSweep = sweepNone
		s.wroteBase = s.wroteNext - s.sweepFrom
	}
	return nil
}

// written records that the last write was committed.
func (s *stateLog) written() {
	clear(s.pending)
	s.full, s.dump = false, nil
	s.next, s.first, s.base, s.sweep = s.wroteNext, s.wroteFirst, s.wroteBase, s.wroteSweep
}

// EachState calls fn with every saved state record in the order written,
// inside one read transaction: a later record of a key replaces an earlier
// one, and a nil value deletes the key. fn must copy what it keeps. An
// in-memory table holds no saved state.
func (t *Table) EachState(fn func(key, value []byte)) (err error) {
	defer recoverCorrupt(&err)
	defer faultsPanic()()
	t.mu.Lock()
	db := t.db
	t.mu.Unlock()
	if db == nil {
		return nil
	}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).ForEach(func(k, e []byte) error {
			if len(e) < 2 || (e[0] != opPut && e[0] != opDelete) {
				return fmt.Errorf("entry %x: bad operation", k)
			}
			n, used := binary.Uvarint(e[1:])
			if used <= 0 || uint64(len(e)-1-used) < n {
				return fmt.Errorf("entry %x: bad key length", k)
			}
			key := e[1+used : 1+used+int(n)]
			var val []byte
			if e[0] == opPut {
				val = e[1+used+int(n):]
			}
			fn(key, val)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("reading saved state: %w", err)
	}
	return nil
}
