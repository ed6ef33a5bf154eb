// Package bans is the one place that knows who is banned, why and until
// when. It keeps the active bans and the ban history (for repeat-offender
// increments), expires bans, and persists all of it — with the journal
// cursor, and with the state another stage must save together with that
// cursor (the engine's failure counts, state.go) — in one bbolt file under
// the state directory, so a restart, crash or reboot restores every
// unexpired ban without re-reading logs. A file found corrupt is reported,
// never trusted (corrupt.go). It does not parse logs and does not talk to
// the firewall.
package bans

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the database file inside the state directory.
const FileName = "jailkeeper.db"

var (
	bucketBans    = []byte("bans")
	bucketHistory = []byte("history")
	bucketMeta    = []byte("meta")
	bucketState   = []byte("state")
	keyCursor     = []byte("cursor")
	keyTotals     = []byte("totals")
	keyStamp      = []byte("kernel-stamp")
)

// Ban is one active ban. A zero Expires means permanent.
type Ban struct {
	Jail    string       `json:"jail"`
	Prefix  netip.Prefix `json:"prefix"`
	Start   time.Time    `json:"start"`
	Expires time.Time    `json:"expires,omitzero"`
	Reason  string       `json:"reason,omitempty"`
}

// Permanent reports whether the ban never expires.
func (b Ban) Permanent() bool { return b.Expires.IsZero() }

// Expired reports whether the ban is over at now.
func (b Ban) Expired(now time.Time) bool { return !b.Permanent() && !now.Before(b.Expires) }

// Table holds the bans. It is safe for concurrent use.
type Table struct {
	mu     sync.Mutex
	db     *bolt.DB // nil for an in-memory table
	active map[key]rec
	// Ban start times, oldest first (store.go): of the prefixes banned
	// once, and of those banned more often.
	hist1   map[key]int64
	histN   map[key][]int64
	names   names          // jails and reasons by index
	totals  map[string]int // bans ever started, per jail
	perJail map[string]int // len(active) per jail
	// nextExpiry is no later than the earliest expiry in active outside
	// expiring (zero: nothing expires), so that Expire can skip the scan
	// until then.
	nextExpiry time.Time
	// expiring are the keys the last scan found expired and ExpireSome
	// has not handed out yet: a million bans that expire together are
	// lifted in steps without a scan per step.
	expiring []key
	cursor   string
	// stamp is the record SaveStamp left at the last stop, taken out of
	// the file when it was loaded (TakeStamp).
	stamp []byte
	// counts is perJail and totals as of the last change, for readers
	// that must not wait for a commit's disk write (status).
	counts atomic.Pointer[counts]
	// histLoaded is closed once the histories are read, in the
	// background (nil: nothing to wait for), which histStart starts
	// (ReadHistories, or the first to wait); histErr says what failed.
	histLoaded chan struct{}
	histStart  sync.Once
	histN0     int // the histories in the file
	histErr    error
	// HistoryKeep bounds the history kept per prefix.
	historyKeep int
	// The state saved with the cursor (state.go); takeMu orders the
	// calls to its source.
	st     stateLog
	takeMu sync.Mutex
	// subnets indexes active by the subnets ActiveWithin has been asked
	// about (subnet.go).
	subnets map[subnetIndexKey]*subnetIndex
	// The event history (events.go).
	ev eventLog
	// The sorted keys Page reads (order.go).
	order order
}

// NewMemory returns a table that persists nothing (tests, dry runs).
func NewMemory() *Table {
	return &Table{active: map[key]rec{}, hist1: map[key]int64{}, histN: map[key][]int64{}, totals: map[string]int{}, perJail: map[string]int{}, historyKeep: 32}
}

// Open opens (creating if needed) the database at path and loads it. A
// second daemon on the same file fails after a second instead of waiting.
// A file that is there but is not a sound ban database — empty, truncated,
// overwritten, a page or a record that does not decode — gives an error
// wrapping ErrCorrupt, never a panic (see OpenRecovering).
func Open(path string) (*Table, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
		return nil, fmt.Errorf("opening ban database %s: %w: the file is empty", path, ErrCorrupt)
	}
	db, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	t := NewMemory()
	t.db = db
	if err := t.load(); err != nil {
		closeQuietly(db)
		return nil, fmt.Errorf("loading ban database %s: %w", path, err)
	}
	return t, nil
}

// load creates the buckets and reads the bans, totals and cursor into
// memory; the histories are read later in the background (ReadHistories):
// a restart's READY=1 needs the bans in the kernel, not the histories,
// which only the ban path's increments and records ask for, and those
// wait for them (waitHistories).
func (t *Table) load() (err error) {
	defer recoverCorrupt(&err)
	defer faultsPanic()()
	defer func() {
		if err == nil {
			t.publish()
		}
	}()
	var nBans, nHist int
	if err := t.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketBans, bucketHistory, bucketMeta, bucketState} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		nBans, nHist = tx.Bucket(bucketBans).Stats().KeyN, tx.Bucket(bucketHistory).Stats().KeyN
		t.st.open(tx)
		meta := tx.Bucket(bucketMeta)
		t.cursor = string(meta.Get(keyCursor))
		// The stamp is good for one start: deleted in the transaction
		// that reads it, so that a crash after this start cannot reuse it.
		if v := meta.Get(keyStamp); v != nil {
			t.stamp = append([]byte(nil), v...)
			if err := meta.Delete(keyStamp); err != nil {
				return err
			}
		}
		if v := meta.Get(keyTotals); v != nil {
			if err := json.Unmarshal(v, &t.totals); err != nil {
				return fmt.Errorf("%w: totals: %v", ErrCorrupt, err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := t.loadBans(nBans); err != nil {
		return err
	}
	t.histLoaded, t.histN0 = make(chan struct{}), nHist
	return nil
}

// ReadHistories starts reading the ban histories in the background, if
// that has not started yet. Open leaves them unread so that the caller
// can first use both cores for what must come before READY=1; the first
// call that needs them (Commit, Add, BanCount, HistoryErr, Close) reads
// them itself if nothing started it.
func (t *Table) ReadHistories() {
	if t.histLoaded == nil {
		return
	}
	t.histStart.Do(func() { go t.loadHistories(t.histN0) })
}

// loadHistories reads the histories into the table and closes
// t.histLoaded. A history that does not decode is left out and counted
// in t.histErr (HistoryErr): its prefix's increments start afresh.
func (t *Table) loadHistories(n int) {
	defer close(t.histLoaded)
	var jails names
	h1, hn, bad, err := t.loadHistory(n, &jails)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case bad > 0:
		t.histErr = fmt.Errorf("%w: %d ban histories did not decode and were left out (the first: %v)", ErrCorrupt, bad, err)
	case err != nil:
		t.histErr = fmt.Errorf("reading the ban histories: %w", err)
	}
	// The histories' jail indexes are loadHistory's own: make them the
	// table's (the same unless the jails came in another order).
	remap := make([]uint16, len(jails.jails))
	same := true
	for i, j := range jails.jails {
		remap[i] = t.names.addJail(j)
		same = same && remap[i] == uint16(i)
	}
	if !same {
		r1, rn := make(map[key]int64, len(h1)), make(map[key][]int64, len(hn))
		for k, v := range h1 {
			k.jail = remap[k.jail]
			r1[k] = v
		}
		for k, v := range hn {
			k.jail = remap[k.jail]
			rn[k] = v
		}
		h1, hn = r1, rn
	}
	t.hist1, t.histN = h1, hn
}

// waitHistories waits until the histories are read, starting that if
// needed.
func (t *Table) waitHistories() {
	if t.histLoaded != nil {
		t.ReadHistories()
		<-t.histLoaded
	}
}

// HistoryErr waits until the histories are read (starting that if
// needed) and says what went wrong reading them (nil: nothing). Open
// reads the bans before it returns, and the histories after
// (ReadHistories).
func (t *Table) HistoryErr() error {
	t.waitHistories()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.histErr
}

// loadBans reads the bans bucket into t.active; called by load only. One
// goroutine walks the file and decodes the records (decodeBans), the
// caller puts them into the maps (a cache miss each, the larger half of
// the work): on two cores the load takes about the time of the inserts.
func (t *Table) loadBans(n int) error {
	// Maps sized up front: growing them was a third of loading 1M bans.
	t.active = make(map[key]rec, n)
	const batches = 4
	full, free := make(chan []Ban, batches), make(chan []Ban, batches+2)
	for range batches + 2 {
		free <- make([]Ban, 0, loadBatch)
	}
	errc := make(chan error, 1)
	go func() {
		err := t.decodeBans(full, free)
		close(full)
		errc <- err
	}()
	for bs := range full {
		for _, b := range bs {
			// Keys are unique: set without set's lookup.
			t.active[t.keyFor(b.Jail, b.Prefix.Masked())] = rec{nanos(b.Start), nanos(b.Expires), t.names.holdReason(b.Reason)}
			t.perJail[b.Jail]++
			if !b.Permanent() && (t.nextExpiry.IsZero() || b.Expires.Before(t.nextExpiry)) {
				t.nextExpiry = b.Expires
			}
		}
		free <- bs[:0]
	}
	return <-errc
}

// loadBatch is how many decoded bans loadBans hands over at a time.
const loadBatch = 4096

// decodeBans walks the bans bucket and sends the decoded bans to full in
// batches taken from free.
func (t *Table) decodeBans(full, free chan []Ban) (err error) {
	defer recoverCorrupt(&err)
	defer faultsPanic()()
	strs := interner{}
	bs := <-free
	err = t.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBans).ForEach(func(k, v []byte) error {
			b, err := decodeBan(k, v, strs)
			if err != nil {
				return fmt.Errorf("%w: ban %q: %v", ErrCorrupt, k, err)
			}
			if bs = append(bs, b); len(bs) == loadBatch {
				full <- bs
				bs = <-free
			}
			return nil
		})
	})
	if len(bs) > 0 {
		full <- bs
	}
	return err
}

// loadHistory reads the history bucket into maps of ban starts, with
// jail indexes of its own (jails); bad counts the records that do not
// decode, err the first of them or why the bucket could not be read.
// Called by loadHistories only.
func (t *Table) loadHistory(n int, jails *names) (h1 map[key]int64, hn map[key][]int64, bad int, err error) {
	defer recoverCorrupt(&err)
	defer faultsPanic()()
	strs := interner{}
	h1, hn = make(map[key]int64, n), map[key][]int64{}
	var first error
	err = t.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).ForEach(func(k, v []byte) error {
			jail, p, starts, derr := decodeHistory(k, v, strs)
			if derr != nil {
				if bad++; bad == 1 {
					first = fmt.Errorf("history %q: %v", k, derr)
				}
				return nil
			}
			hk := keyWith(jails.addJail(jail), p.Masked())
			switch len(starts) {
			case 0:
			case 1:
				h1[hk] = nanos(starts[0])
			default:
				ns := make([]int64, len(starts))
				for i, s := range starts {
					ns[i] = nanos(s)
				}
				hn[hk] = ns
			}
			return nil
		})
	})
	if err == nil {
		err = first
	}
	return h1, hn, bad, err
}

// Close closes the database.
func (t *Table) Close() error {
	if t.histLoaded != nil {
		// Never started: nothing to read any more. Else wait for it.
		t.histStart.Do(func() { close(t.histLoaded) })
		<-t.histLoaded
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.db == nil {
		return nil
	}
	err := t.db.Close()
	t.db = nil
	return err
}

// Add records bans (and, for new ones, their history) in one transaction.
// A ban of a prefix already banned in that jail replaces it when it lasts
// longer and is otherwise ignored. It returns the bans that are new or
// extended, which the caller must push to the firewall.
func (t *Table) Add(bs ...Ban) ([]Ban, error) {
	return t.commit(nil, bs)
}

// Commit is Add plus the journal cursor up to which the bans were decided,
// written in the same transaction (one sync instead of two), with the
// attached state's changes (AttachState).
func (t *Table) Commit(cursor string, bs ...Ban) ([]Ban, error) {
	return t.commit(&cursor, bs)
}

// Changes returns the bans Add would record as new or extended, without
// recording anything: a caller may push them to the firewall first.
func (t *Table) Changes(bs ...Ban) []Ban {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed, _ := t.plan(bs)
	return changed
}

// plan splits bs into the bans that are new or extended (changed) and,
// among those, the new ones (fresh); the caller holds t.mu.
func (t *Table) plan(bs []Ban) (changed, fresh []Ban) {
	changed, fresh = make([]Ban, 0, len(bs)), make([]Ban, 0, len(bs))
	for _, b := range bs {
		b.Prefix = b.Prefix.Masked()
		k, known := t.keyOf(b.Jail, b.Prefix)
		if old, ok := t.active[k]; known && ok && !old.expired(nanos(b.Start)) {
			if old.permanent() || (!b.Permanent() && nanos(b.Expires) <= old.expires) {
				continue
			}
			b.Start = timeOf(old.start)
			changed = append(changed, b)
			continue
		}
		changed = append(changed, b)
		fresh = append(fresh, b)
	}
	return changed, fresh
}

func (t *Table) commit(cursor *string, bs []Ban) ([]Ban, error) {
	t.waitHistories()
	if cursor != nil {
		t.takeState()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	changed, fresh := t.plan(bs)
	if cursor != nil && *cursor == t.cursor && !t.st.dirty() {
		cursor = nil
	}
	if len(changed) == 0 && cursor == nil {
		return nil, nil
	}
	// Stage the new state, persist, then commit it to memory.
	newHist := make([]histChange, 0, len(fresh))
	var newTotals map[string]int
	if len(fresh) > 0 {
		newTotals = map[string]int{}
		for jail, n := range t.totals {
			newTotals[jail] = n
		}
	}
	// The histories of prefixes never banned before (an import: nearly
	// all) are one start each, carved from one array instead of a slice
	// allocated per ban; setStarts keeps such a start by value.
	ones := make([]int64, len(fresh))
	at := make(map[key]int, len(fresh)) // a prefix twice in bs: one history
	for i, b := range fresh {
		k := t.keyFor(b.Jail, b.Prefix)
		j, ok := at[k]
		var h []int64
		if ok {
			h = newHist[j].starts
		} else {
			h = t.starts(k)
		}
		if len(h) == 0 {
			ones[i] = nanos(b.Start)
			h = ones[i : i+1 : i+1]
		} else {
			h = append(h, nanos(b.Start))
		}
		if len(h) > t.historyKeep {
			h = h[len(h)-t.historyKeep:]
		}
		if ok {
			newHist[j].starts = h
		} else {
			at[k] = len(newHist)
			newHist = append(newHist, histChange{k, h})
		}
		newTotals[b.Jail]++
	}
	if err := t.persist(changed, nil, newHist, newTotals, cursor); err != nil {
		return nil, err
	}
	for _, b := range changed {
		t.set(b)
	}
	for _, h := range newHist {
		t.setStarts(h.k, h.starts)
	}
	if newTotals != nil {
		t.totals = newTotals
	}
	if cursor != nil {
		t.cursor = *cursor
	}
	t.publish()
	return changed, nil
}

// Remove lifts the bans of p in jail, or in every jail when jail is "". A
// prefix removes the ban of exactly that prefix; a single address (a /32 or
// /128) also removes the bans of prefixes that contain it, so unbanning
// 2001:db8::2 lifts a ban of 2001:db8::/64. It returns the bans removed.
func (t *Table) Remove(jail string, p netip.Prefix) ([]Ban, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p = p.Masked()
	// Looked up, not scanned: the prefix itself and, for an address, each
	// shorter prefix that contains it, in the jail or in each jail.
	lengths := []int{p.Bits()}
	if p.Bits() == p.Addr().BitLen() {
		lengths = lengths[:0]
		for bits := 0; bits <= p.Bits(); bits++ {
			lengths = append(lengths, bits)
		}
	}
	var jails []uint16
	if jail == "" {
		for id := range t.names.jails {
			jails = append(jails, uint16(id))
		}
	} else if id, ok := t.names.jailID(jail); ok {
		jails = append(jails, id)
	}
	var gone []Ban
	for _, id := range jails {
		for _, bits := range lengths {
			q, _ := p.Addr().Prefix(bits)
			k := keyWith(id, q)
			if r, ok := t.active[k]; ok {
				gone = append(gone, t.ban(k, r))
			}
		}
	}
	return gone, t.drop(gone)
}

// Expire removes and returns the bans over at now.
func (t *Table) Expire(now time.Time) ([]Ban, error) {
	return t.ExpireSome(now, 0)
}

// ExpireSome removes and returns at most max (0: no bound) of the bans
// over at now, in one transaction; a caller that gets max bans back calls
// again for the rest. Until the earliest expiry it costs nothing; then one
// call scans the table once and keeps what it found expired for the calls
// after it, which cost what they remove.
func (t *Table) ExpireSome(now time.Time, max int) ([]Ban, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.expiring) == 0 {
		if t.nextExpiry.IsZero() || now.Before(t.nextExpiry) {
			return nil, nil
		}
		var next int64
		at := nanos(now)
		for k, r := range t.active {
			if r.permanent() {
				continue
			}
			if r.expired(at) {
				t.expiring = append(t.expiring, k)
				continue
			}
			if next == 0 || r.expires < next {
				next = r.expires
			}
		}
		t.nextExpiry = timeOf(next)
	}
	var gone []Ban
	for len(t.expiring) > 0 && (max <= 0 || len(gone) < max) {
		k := t.expiring[len(t.expiring)-1]
		t.expiring = t.expiring[:len(t.expiring)-1]
		// Lifted or renewed since the scan: a renewed ban's expiry is
		// in nextExpiry (set).
		if r, ok := t.active[k]; ok && r.expired(nanos(now)) {
			gone = append(gone, t.ban(k, r))
		}
	}
	if len(t.expiring) == 0 {
		t.expiring = nil
	}
	if err := t.drop(gone); err != nil {
		// Not lifted: found again by the next scan.
		t.expiring = nil
		t.nextExpiry = now
		return nil, err
	}
	return gone, nil
}

// RemoveBans lifts those of bs (by jail and prefix) that the table still
// holds, in one transaction, and returns them as they were held.
func (t *Table) RemoveBans(bs []Ban) ([]Ban, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []Ban
	for _, b := range bs {
		k, known := t.keyOf(b.Jail, b.Prefix.Masked())
		if r, ok := t.active[k]; known && ok {
			gone = append(gone, t.ban(k, r))
		}
	}
	return gone, t.drop(gone)
}

func (t *Table) drop(gone []Ban) error {
	if len(gone) == 0 {
		return nil
	}
	if err := t.persist(nil, gone, nil, nil, nil); err != nil {
		return err
	}
	for _, b := range gone {
		k, known := t.keyOf(b.Jail, b.Prefix)
		if r, ok := t.active[k]; known && ok {
			delete(t.active, k)
			t.noteOrder(k, false)
			t.names.releaseReason(r.reason)
			t.perJail[b.Jail]--
			t.indexRemove(k)
		}
	}
	t.publish()
	return nil
}

// set puts b in active, keeping the counts and nextExpiry; the caller
// holds t.mu (or owns t).
func (t *Table) set(b Ban) {
	k := t.keyFor(b.Jail, b.Prefix)
	r := rec{nanos(b.Start), nanos(b.Expires), t.names.holdReason(b.Reason)}
	n := len(t.active)
	old, held := t.active[k]
	t.active[k] = r
	if len(t.active) > n {
		t.perJail[b.Jail]++
		t.indexAdd(k)
		t.noteOrder(k, true)
	}
	if held {
		t.names.releaseReason(old.reason)
	}
	if !b.Permanent() && (t.nextExpiry.IsZero() || b.Expires.Before(t.nextExpiry)) {
		t.nextExpiry = b.Expires
	}
}

// record is a key and value to put (or a key to delete).
type record struct{ k, v []byte }

// histChange is a prefix's new ban history, to persist.
type histChange struct {
	k      key
	starts []int64
}

// fillPercent is how full bbolt packs the pages it splits. Sorted puts
// mostly append, where bbolt's default (half full) would leave every page
// half empty.
const fillPercent = 0.9

// persist writes one transaction: bans put and deleted, history, totals
// (nil: unchanged) and the cursor (nil: unchanged) with the pending state
// changes.
func (t *Table) persist(put, del []Ban, hist []histChange, totals map[string]int, cursor *string) error {
	if t.db == nil {
		if cursor != nil {
			t.st.written()
		}
		return nil
	}
	// Keys go in in sorted order: bbolt inserts into an in-memory node by
	// moving every later key, so unsorted puts made a transaction of n
	// keys cost O(n²) (100,000 bans: 24 s; sorted, they append). The
	// keeper hands an import's steps in that order already. Keys and
	// values are appended to one array (bbolt copies the keys, and
	// reads the values until the transaction ends), not allocated one
	// by one.
	arena := make([]byte, 0, 64*(len(put)+len(hist))+32*len(del))
	// cut returns the record of the key from arena[from:mid] and the
	// value from arena[mid:].
	cut := func(from, mid int) record {
		return record{arena[from:mid:mid], arena[mid:len(arena):len(arena)]}
	}
	puts := make([]record, 0, len(put))
	for _, b := range put {
		from := len(arena)
		arena = appendKey(arena, b.Jail, b.Prefix)
		mid := len(arena)
		arena = appendBan(arena, b)
		puts = append(puts, cut(from, mid))
	}
	dels := make([]record, 0, len(del))
	for _, b := range del {
		from := len(arena)
		arena = appendKey(arena, b.Jail, b.Prefix)
		dels = append(dels, cut(from, len(arena)))
	}
	hists := make([]record, 0, len(hist))
	for _, h := range hist {
		from := len(arena)
		arena = appendKey(arena, t.jailOf(h.k), h.k.prefix())
		mid := len(arena)
		arena = appendHistory(arena, h.starts)
		hists = append(hists, cut(from, mid))
	}
	byKey := func(a, b record) int { return bytes.Compare(a.k, b.k) }
	for _, rs := range [][]record{puts, dels, hists} {
		if !slices.IsSortedFunc(rs, byKey) {
			slices.SortFunc(rs, byKey)
		}
	}
	err := t.db.Update(func(tx *bolt.Tx) error {
		bb := tx.Bucket(bucketBans)
		bb.FillPercent = fillPercent
		for _, r := range puts {
			if err := bb.Put(r.k, r.v); err != nil {
				return err
			}
		}
		for _, r := range dels {
			if err := bb.Delete(r.k); err != nil {
				return err
			}
		}
		hb := tx.Bucket(bucketHistory)
		hb.FillPercent = fillPercent
		for _, r := range hists {
			if err := hb.Put(r.k, r.v); err != nil {
				return err
			}
		}
		if totals != nil {
			v, err := json.Marshal(totals)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketMeta).Put(keyTotals, v); err != nil {
				return err
			}
		}
		if cursor != nil {
			if err := tx.Bucket(bucketMeta).Put(keyCursor, []byte(*cursor)); err != nil {
				return err
			}
			return t.st.write(tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saving bans: %w", err)
	}
	if cursor != nil {
		t.st.written()
	}
	return nil
}

// Active returns the bans in force at now, sorted by jail then prefix.
// The sort runs after the table's lock is released.
func (t *Table) Active(now time.Time) []Ban {
	out := t.Snapshot(now)
	slices.SortFunc(out, compareBans)
	return out
}

// Snapshot returns the bans in force at now in no particular order: for
// callers that need no order (the firewall's layout and repair), a sort
// of a million bans is most of a second.
func (t *Table) Snapshot(now time.Time) []Ban {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Ban, 0, len(t.active))
	at := nanos(now)
	for k, r := range t.active {
		if !r.expired(at) {
			out = append(out, t.ban(k, r))
		}
	}
	return out
}

// EachActive calls fn with the jail, prefix and expiry (zero: permanent)
// of every ban in force at now, in no particular order, holding the
// table's lock: fn must not call the table. For callers that need no more
// of a ban (the firewall's layout at start): a million Bans with their
// reasons and starts were 110 MB to build and throw away.
func (t *Table) EachActive(now time.Time, fn func(jail string, p netip.Prefix, expires time.Time)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := nanos(now)
	for k, r := range t.active {
		if !r.expired(at) {
			fn(t.names.jails[k.jail], k.prefix(), timeOf(r.expires))
		}
	}
}

// compareBans orders bans by jail, then IPv4 before IPv6, then by address
// and prefix length (numerically: 198.51.100.9 before 198.51.100.10).
func compareBans(a, b Ban) int {
	if c := cmp.Compare(a.Jail, b.Jail); c != 0 {
		return c
	}
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
}

// counts is a published copy of the per-jail numbers.
type counts struct {
	active, totals map[string]int
}

// publish copies perJail and totals for Counts and Total; the caller
// holds t.mu (or owns t). A copy costs O(jails).
func (t *Table) publish() {
	c := &counts{active: make(map[string]int, len(t.perJail)), totals: make(map[string]int, len(t.totals))}
	for j, n := range t.perJail {
		if n > 0 {
			c.active[j] = n
		}
	}
	for j, n := range t.totals {
		c.totals[j] = n
	}
	t.counts.Store(c)
}

// Counts returns how many bans each jail holds (expired ones linger until
// the next Expire). It does not wait for a commit in progress: it gives
// the numbers before it. The caller may keep the map but not change it.
func (t *Table) Counts() map[string]int {
	if c := t.counts.Load(); c != nil {
		return c.active
	}
	return map[string]int{}
}

// Len returns how many bans the table holds (expired ones linger until the
// next Expire, at most a second in the daemon). O(1), for status lines.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.active)
}

// Total returns how many bans jail has started, ever (persisted). Like
// Counts, it does not wait for a commit in progress.
func (t *Table) Total(jail string) int {
	if c := t.counts.Load(); c != nil {
		return c.totals[jail]
	}
	return 0
}

// BanCount implements jails.History.
func (t *Table) BanCount(jail string, p netip.Prefix, since time.Time) int {
	t.waitHistories()
	t.mu.Lock()
	defer t.mu.Unlock()
	k, ok := t.keyOf(jail, p.Masked())
	if !ok {
		return 0
	}
	n := 0
	for _, s := range t.starts(k) {
		if !time.Unix(0, s).Before(since) {
			n++
		}
	}
	return n
}

// ActiveWithin implements jails.History. Its cost follows the bans inside
// subnet, not the table's size: the first call for a jail and a prefix
// length indexes that jail's bans by their subnet of that length (one scan),
// and the table keeps the index from then on (subnet.go).
func (t *Table) ActiveWithin(jail string, subnet netip.Prefix, now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	subnet = subnet.Masked()
	id, ok := t.names.jailID(jail)
	if !ok {
		return 0
	}
	n := 0
	at := nanos(now)
	for _, p := range t.index(id, subnet.Bits(), subnet.Addr().Is6()).members[subnet] {
		if r := t.active[keyWith(id, p)]; !r.expired(at) {
			n++
		}
	}
	return n
}

// Cursor returns the saved journal cursor ("" when none).
func (t *Table) Cursor() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cursor
}

// SaveCursor persists the cursor of the last journal entry processed,
// with the attached state's changes (AttachState).
func (t *Table) SaveCursor(c string) error {
	t.takeState()
	t.mu.Lock()
	defer t.mu.Unlock()
	if c == t.cursor && !t.st.dirty() {
		return nil
	}
	if t.db != nil {
		if err := t.db.Update(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put(keyCursor, []byte(c)); err != nil {
				return err
			}
			return t.st.write(tx)
		}); err != nil {
			return fmt.Errorf("saving journal cursor: %w", err)
		}
	}
	t.st.written()
	t.cursor = c
	return nil
}

// SaveStamp stores a record of the kernel's state at a clean stop beside
// the table (the keeper's proof that the kernel's sets hold exactly the
// table's bans, see firewall.Stamper). The next Open takes it out of the
// file again (TakeStamp): it serves one start at most. An in-memory table
// keeps nothing.
func (t *Table) SaveStamp(stamp []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.db == nil {
		return nil
	}
	if err := t.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyStamp, stamp)
	}); err != nil {
		return fmt.Errorf("saving the kernel stamp: %w", err)
	}
	return nil
}

// TakeStamp returns the stamp SaveStamp stored before the table was
// opened (nil when there was none), once: the file no longer holds it.
func (t *Table) TakeStamp() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stamp
	t.stamp = nil
	return s
}
