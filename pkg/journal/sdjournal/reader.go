// Package sdjournal follows the systemd journal for jailkeeper through a
// thin cgo binding to libsystemd's sd-journal: it matches entries by trusted
// _SYSTEMD_UNIT= (and, only where a jail opts in, by SYSLOG_IDENTIFIER=),
// follows new entries, and resumes at a saved cursor. Entries leave it as
// journal.Entry values. Building it needs cgo and libsystemd's headers;
// the pure parts (Entry, offline input, cursors) live in package journal.
package sdjournal

import (
	"context"
	"errors"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options selects what a Reader reads and where it starts.
type Options struct {
	// Units are matched as _SYSTEMD_UNIT=<unit> (OR'ed). A name without a
	// unit suffix means <name>.service.
	Units []string
	// Identifiers are matched as SYSLOG_IDENTIFIER=<id>, OR'ed with the
	// units. Any local user can forge an identifier: only for jails that opt
	// in, and the caller logs that warning.
	Identifiers []string
	// Unitless are matched as SYSLOG_IDENTIFIER=<id> _UID=<uid>, OR'ed
	// with the rest; an entry that has no _SYSTEMD_UNIT and whose
	// identifier and _UID are those of one of them is returned with that
	// one's Unit. Entries of another unit come back with their own unit.
	Unitless []journal.Unitless
	// Cursor resumes right after the entry it names. "" means no cursor.
	Cursor string
	// LookBack applies when there is no cursor: the reader starts at
	// now-LookBack, so that an attack in progress is caught.
	LookBack time.Duration
	// Path reads the journal files in this directory instead of the local
	// system journal (tests, or a journal copied from elsewhere).
	Path string
	// Logf receives notes about gaps, rotation, journald restarts and
	// errors the reader recovered from. nil discards them.
	Logf func(format string, args ...any)
}

// Tuning of the follow loop. journald tells readers about new entries at
// most every 250 ms, but it writes them into the mmapped file at once, so
// the loop also polls: every pollMin while entries came in during the last
// hotWindow, then backing off to pollMax.
const (
	maxBatch  = 1024
	pollMin   = 2 * time.Millisecond
	pollMax   = 100 * time.Millisecond
	hotWindow = 2 * time.Second
	errMin    = 100 * time.Millisecond // first back-off after an error
	errMax    = 5 * time.Second

	invalidateLogEvery = 10 * time.Second // at most one note about file changes per interval
)

// batches recycles the slices of batches consumers hand back with Release:
// a burst otherwise allocates a 100 KB slice per 1024 entries, about half
// of what the reader allocates, and on a 2-CPU machine every garbage
// collection takes a core's worth of time from the reader.
var batches = sync.Pool{New: func() any { return new([]journal.Entry) }}

func newBatch() []journal.Entry {
	b := *batches.Get().(*[]journal.Entry)
	if b == nil {
		b = make([]journal.Entry, 0, maxBatch)
	}
	return b[:0]
}

// Release hands back a batch received from Run once it is handled, for
// the reader to reuse. The batch must not be used afterwards; strings taken
// from its entries stay valid. Not releasing a batch is fine.
func Release(batch []journal.Entry) {
	if cap(batch) != maxBatch {
		return
	}
	clear(batch[:cap(batch)]) // drop the references to the entries' strings
	b := batch[:0]
	batches.Put(&b)
}

// ErrClosed is returned by Run once the Reader is closed.
var ErrClosed = errors.New("journal reader closed")

// Reader follows the journal entries of a set of units. One goroutine,
// locked to its OS thread for the Reader's whole life, owns the sd-journal
// handle (sd-journal objects are bound to one thread); entries leave it as
// values. Open, Run, Alive and Close may be called from any goroutine.
type Reader struct {
	opts  Options
	reqs  chan runRequest
	quit  chan struct{}
	done  chan struct{}
	close sync.Once
	alive atomic.Int64 // UnixNano of the last turn of the loop
	tail  atomic.Pointer[tailState]
}

// tailState is where the reader stands against the journal's tail (Tail).
type tailState struct {
	at     bool
	cursor string
	since  time.Time
}

type runRequest struct {
	ctx context.Context
	out chan<- []journal.Entry
	res chan error
}

// Open opens the journal, installs the matches and positions the reader:
// right after opts.Cursor when it is set, else at now-opts.LookBack. When
// the cursor's entry no longer exists (vacuumed), the reader starts at the
// first entry at or after the cursor's time and logs the gap. An error
// means nothing is open.
func Open(opts Options) (*Reader, error) {
	if len(opts.Units) == 0 && len(opts.Identifiers) == 0 && len(opts.Unitless) == 0 {
		return nil, errors.New("opening the journal: no units or identifiers to match")
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	r := &Reader{
		opts: opts,
		reqs: make(chan runRequest),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	r.alive.Store(time.Now().UnixNano())
	ready := make(chan error, 1)
	go r.own(ready)
	if err := <-ready; err != nil {
		<-r.done
		return nil, err
	}
	return r, nil
}

// Run follows the journal until ctx is done, sending the matching entries
// on out in batches of at most maxBatch, each batch as soon as the journal
// has no more entries right now. The last entry of each batch carries the
// cursor to save once the batch is handled; the others have none. It recovers from rotation, vacuuming and
// journald restarts by itself, logging them. It returns ctx.Err() when ctx
// is done, or ErrClosed after Close; entries read but not yet sent are kept
// for the next Run. Only one Run works at a time; another call waits.
func (r *Reader) Run(ctx context.Context, out chan<- []journal.Entry) error {
	req := runRequest{ctx: ctx, out: out, res: make(chan error, 1)}
	select {
	case r.reqs <- req:
	case <-r.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.res
}

// Tail reports where the reader stands against the journal's tail.
// atTail is true once the reader has sent every matching entry the
// journal holds and waits for more; cursor is then the cursor of the last
// entry it sent ("" when it has sent none), which a consumer compares with
// the last one it handled to know whether it is caught up. since is the
// time of the first entry the reader read after it was last at the tail
// (zero when it has read none since it was opened): while the consumer
// has not handled that entry, nothing older is waiting. Before Run first
// reaches the tail, atTail is false.
func (r *Reader) Tail() (cursor string, atTail bool, since time.Time) {
	if t := r.tail.Load(); t != nil {
		return t.cursor, t.at, t.since
	}
	return "", false, time.Time{}
}

// Alive reports the last time the follow loop went round (at least every
// 100 ms while Run runs and the receiver keeps up; a send blocked on a full
// channel does not count). A watchdog compares it with the clock.
func (r *Reader) Alive() time.Time { return time.Unix(0, r.alive.Load()) }

// Close stops a running Run (it returns ErrClosed), closes the journal on
// its owning thread and waits until that is done. It is safe to call more
// than once.
func (r *Reader) Close() error {
	r.close.Do(func() { close(r.quit) })
	<-r.done
	return nil
}

// own is the goroutine that owns the handle for the Reader's whole life.
// It never unlocks its thread: the thread ends with the goroutine.
func (r *Reader) own(ready chan<- error) {
	runtime.LockOSThread()
	defer close(r.done)
	f := &follower{opts: r.opts, logf: r.opts.Logf, alive: &r.alive, tail: &r.tail, quit: r.quit,
		cursor: r.opts.Cursor, start: time.Now().Add(-r.opts.LookBack)}
	if err := f.open(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	defer f.closeJournal()
	for {
		select {
		case <-r.quit:
			return
		case req := <-r.reqs:
			req.res <- f.follow(req.ctx, req.out)
		}
	}
}

// follower is the state of the owning goroutine.
type follower struct {
	opts  Options
	logf  func(string, ...any)
	alive *atomic.Int64
	tail  *atomic.Pointer[tailState]
	quit  <-chan struct{}

	sj      *sdJournal
	cursor  string          // cursor of the last entry read (or opts.Cursor); "" = none: start at start
	start   time.Time       // where to start while no entry was read
	pending []journal.Entry // read but not sent yet
	cur     journal.Entry   // the last entry read (its Unit/Identifier strings are reused)

	invalidated      int       // INVALIDATE results not logged yet
	loggedInvalidate time.Time // when they were last logged
}

// open opens the handle, installs matches and positions it (seek).
func (f *follower) open() error {
	sj, err := openJournal(f.opts.Path)
	if err != nil {
		return err
	}
	if err := addMatches(sj, f.opts); err != nil {
		sj.close()
		return err
	}
	// The first wait sets up inotify and returns at once (INVALIDATE).
	if _, err := sj.wait(0); err != nil {
		f.logf("journal: setting up change notification: %v (polling only)", err)
	}
	f.sj = sj
	if err := f.seek(); err != nil {
		f.closeJournal()
		return err
	}
	return nil
}

// seek positions the handle right after the last entry read (f.cursor),
// or before the first entry at or after f.start when no entry was read.
// When the cursor's entry is gone (vacuumed), it logs the gap and goes on
// from the first entry at or after the cursor's time.
func (f *follower) seek() error {
	if f.cursor != "" {
		found, err := f.sj.seekCursor(f.cursor)
		if err == nil && found {
			return nil
		}
		if err != nil && !errors.Is(err, syscall.EINVAL) {
			return err
		}
		t, terr := journal.CursorTime(f.cursor)
		if err != nil || terr != nil {
			// A cursor journald cannot parse: start as if there were none.
			f.logf("journal: cannot resume at cursor %q (%v); starting %s back instead",
				f.cursor, errors.Join(err, terr), f.opts.LookBack)
			t = time.Now().Add(-f.opts.LookBack)
		} else {
			f.logf("journal: the entry of cursor %q is gone (vacuumed or rotated away); "+
				"resuming at the first entry at or after %s: entries logged in between are lost",
				f.cursor, t.Format(time.RFC3339Nano))
		}
		f.cursor, f.start = "", t
	}
	return f.sj.seekRealtime(f.start)
}

func addMatches(sj *sdJournal, opts Options) error {
	for _, u := range opts.Units {
		if err := sj.addMatch("_SYSTEMD_UNIT=" + journal.UnitName(u)); err != nil {
			return err
		}
	}
	if len(opts.Units) > 0 && len(opts.Identifiers) > 0 {
		if err := sj.addDisjunction(); err != nil {
			return err
		}
	}
	for _, id := range opts.Identifiers {
		if err := sj.addMatch("SYSLOG_IDENTIFIER=" + id); err != nil {
			return err
		}
	}
	for i, u := range opts.Unitless {
		if i > 0 || len(opts.Units) > 0 || len(opts.Identifiers) > 0 {
			if err := sj.addDisjunction(); err != nil {
				return err
			}
		}
		if err := sj.addMatch("SYSLOG_IDENTIFIER=" + u.Identifier); err != nil {
			return err
		}
		if err := sj.addMatch("_UID=" + strconv.FormatUint(uint64(u.UID), 10)); err != nil {
			return err
		}
	}
	return nil
}

func (f *follower) closeJournal() {
	if f.sj != nil {
		f.sj.close()
		f.sj = nil
	}
}

// reopen closes and reopens the handle after an error, positioned after the
// last entry read; it retries with growing pauses until it works, ctx is
// done or the Reader closes.
func (f *follower) reopen(ctx context.Context, cause error) error {
	pause := errMin
	for {
		f.logf("journal: %v; reopening in %s", cause, pause)
		f.closeJournal()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.quit:
			return ErrClosed
		case <-time.After(pause):
		}
		f.alive.Store(time.Now().UnixNano())
		if cause = f.open(); cause == nil {
			f.logf("journal: reopened")
			return nil
		}
		pause = min(2*pause, errMax)
	}
}

// leaveTail records that the reader has read an entry of time t: if it was
// at the tail, it no longer is, and t is the oldest entry not yet handled.
func (f *follower) leaveTail(t time.Time) {
	if cur := f.tail.Load(); cur == nil || cur.at {
		f.tail.Store(&tailState{since: t})
	}
}

// reachTail records that every entry read has been sent and the journal
// has no further one: the tail is at f.cursor.
func (f *follower) reachTail() {
	cur := f.tail.Load()
	if cur != nil && cur.at && cur.cursor == f.cursor {
		return
	}
	st := &tailState{at: true, cursor: f.cursor}
	if cur != nil {
		st.since = cur.since
	}
	f.tail.Store(st)
}

// follow is Run's loop on the owning goroutine.
func (f *follower) follow(ctx context.Context, out chan<- []journal.Entry) error {
	if f.sj == nil { // an earlier Run ended while reopening
		if err := f.reopen(ctx, errors.New("journal not open")); err != nil {
			return err
		}
	}
	interval := pollMin
	lastEntry := time.Now()
	for {
		f.alive.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.quit:
			return ErrClosed
		default:
		}
		batch := f.pending
		f.pending = nil
		var readErr error
		read := 0
		atEnd := false // sd_journal_next found no further entry
		for len(batch) < maxBatch {
			ok, err := f.sj.next(&f.cur)
			if err != nil {
				readErr = err
				break
			}
			if !ok {
				atEnd = true
				break
			}
			if read == 0 {
				f.leaveTail(f.cur.Time)
			}
			if f.cur.Unit == "" && len(f.opts.Unitless) > 0 {
				f.cur.Adopt(f.sj.uid, f.sj.hasUID, f.opts.Unitless)
			}
			if batch == nil { // taken only when there is something to send
				batch = newBatch()
			}
			batch = append(batch, f.cur)
			read++
		}
		if read > 0 {
			// One cursor per batch, on its last entry: what a consumer
			// saves once it has handled the batch.
			c, err := f.sj.cursor()
			if err == nil {
				f.cursor = c
				batch[len(batch)-1].Cursor = c
			} else {
				// Resume after the last entry's time instead (entries
				// logged in the same microsecond after it would be skipped).
				f.logf("journal: %v; resuming after the last entry read, at %s", err, f.sj.received.Format(time.RFC3339Nano))
				f.cursor, f.start = "", f.sj.received.Add(time.Microsecond)
				readErr = errors.Join(readErr, err)
			}
		}
		if len(batch) > 0 {
			select {
			case out <- batch:
			case <-ctx.Done():
				f.pending = batch
				return ctx.Err()
			case <-f.quit:
				f.pending = batch
				return ErrClosed
			}
			interval = pollMin
			lastEntry = time.Now()
		}
		if readErr != nil {
			if err := f.reopen(ctx, readErr); err != nil {
				return err
			}
			continue
		}
		if atEnd {
			f.reachTail()
		}
		if len(batch) == maxBatch {
			continue // there is probably more right now
		}
		res, err := f.sj.wait(interval)
		if err == nil && len(batch) == 0 {
			// Seek afresh before polling again. sd-journal remembers a
			// file's entry count when it finds nothing new and skips the
			// file until that count changes; journald bumps the count before
			// it links the entry to its fields, so a poll in between would
			// otherwise hide a matching entry until the next write.
			err = f.seek()
		}
		if err != nil {
			if err := f.reopen(ctx, err); err != nil {
				return err
			}
			continue
		}
		switch {
		case res == waitInvalidate:
			f.invalidated++
			if time.Since(f.loggedInvalidate) >= invalidateLogEvery {
				f.logf("journal: journal files changed %d time(s) (rotation, vacuum, journald restart or new files); reading on", f.invalidated)
				f.invalidated, f.loggedInvalidate = 0, time.Now()
			}
		case res == waitNop && time.Since(lastEntry) > hotWindow:
			interval = min(2*interval, pollMax)
		}
	}
}
