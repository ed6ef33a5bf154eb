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

type key struct {
	jail   string
	prefix netip.Prefix
}

func (k key) bytes() []byte { return appendKey(nil, k.jail, k.prefix) }

// Table holds the bans. It is safe for concurrent use.
type Table struct {
	mu      sync.Mutex
	db      *bolt.DB // nil for an in-memory table
	active  map[key]Ban
	history map[key][]time.Time // ban start times, oldest first
	totals  map[string]int      // bans ever started, per jail
	perJail map[string]int      // len(active) per jail
	// nextExpiry is no later than the earliest expiry in active (zero:
	// nothing expires), so that Expire can skip the scan until then.
	nextExpiry time.Time
	cursor     string
	// counts is perJail and totals as of the last change, for readers
	// that must not wait for a commit's disk write (status).
	counts atomic.Pointer[counts]
	// HistoryKeep bounds the history kept per prefix.
	historyKeep int
	// The state saved with the cursor (state.go).
	st stateLog
	// The event history (events.go).
	ev eventLog
}

// NewMemory returns a table that persists nothing (tests, dry runs).
func NewMemory() *Table {
	return &Table{active: map[key]Ban{}, history: map[key][]time.Time{}, totals: map[string]int{}, perJail: map[string]int{}, historyKeep: 32}
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

// load creates the buckets and reads the bans, histories, totals and
// cursor into memory.
func (t *Table) load() (err error) {
	defer recoverCorrupt(&err)
	defer faultsPanic()()
	defer func() {
		if err == nil {
			t.publish()
		}
	}()
	return t.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketBans, bucketHistory, bucketMeta, bucketState} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		strs := interner{}
		// Maps sized up front: growing them was a third of loading 1M bans.
		t.active = make(map[key]Ban, tx.Bucket(bucketBans).Stats().KeyN)
		t.history = make(map[key][]time.Time, tx.Bucket(bucketHistory).Stats().KeyN)
		if err := tx.Bucket(bucketBans).ForEach(func(k, v []byte) error {
			b, err := decodeBan(k, v, strs)
			if err != nil {
				return fmt.Errorf("%w: ban %q: %v", ErrCorrupt, k, err)
			}
			// Keys are unique: set without set's lookup.
			t.active[key{b.Jail, b.Prefix}] = b
			t.perJail[b.Jail]++
			if !b.Permanent() && (t.nextExpiry.IsZero() || b.Expires.Before(t.nextExpiry)) {
				t.nextExpiry = b.Expires
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketHistory).ForEach(func(k, v []byte) error {
			jail, p, starts, err := decodeHistory(k, v, strs)
			if err != nil {
				return fmt.Errorf("%w: history %q: %v", ErrCorrupt, k, err)
			}
			t.history[key{jail, p}] = starts
			return nil
		}); err != nil {
			return err
		}
		t.st.open(tx)
		meta := tx.Bucket(bucketMeta)
		t.cursor = string(meta.Get(keyCursor))
		if v := meta.Get(keyTotals); v != nil {
			if err := json.Unmarshal(v, &t.totals); err != nil {
				return fmt.Errorf("%w: totals: %v", ErrCorrupt, err)
			}
		}
		return nil
	})
}

// Close closes the database.
func (t *Table) Close() error {
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
	for _, b := range bs {
		k := key{b.Jail, b.Prefix.Masked()}
		b.Prefix = k.prefix
		if old, ok := t.active[k]; ok && !old.Expired(b.Start) {
			if old.Permanent() || (!b.Permanent() && !b.Expires.After(old.Expires)) {
				continue
			}
			b.Start = old.Start
			changed = append(changed, b)
			continue
		}
		changed = append(changed, b)
		fresh = append(fresh, b)
	}
	return changed, fresh
}

func (t *Table) commit(cursor *string, bs []Ban) ([]Ban, error) {
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
	newHist := map[key][]time.Time{}
	var newTotals map[string]int
	if len(fresh) > 0 {
		newTotals = map[string]int{}
		for jail, n := range t.totals {
			newTotals[jail] = n
		}
	}
	for _, b := range fresh {
		k := key{b.Jail, b.Prefix}
		h := newHist[k]
		if h == nil {
			h = append([]time.Time(nil), t.history[k]...)
		}
		h = append(h, b.Start)
		if len(h) > t.historyKeep {
			h = h[len(h)-t.historyKeep:]
		}
		newHist[k] = h
		newTotals[k.jail]++
	}
	if err := t.persist(changed, nil, newHist, newTotals, cursor); err != nil {
		return nil, err
	}
	for _, b := range changed {
		t.set(b)
	}
	for k, h := range newHist {
		t.history[k] = h
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
	var gone []Ban
	for k, b := range t.active {
		single := p.Bits() == p.Addr().BitLen()
		if (k.prefix == p || single && k.prefix.Contains(p.Addr())) && (jail == "" || k.jail == jail) {
			gone = append(gone, b)
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
// again for the rest. Until the earliest expiry it costs nothing; from
// then on one call scans the table once.
func (t *Table) ExpireSome(now time.Time, max int) ([]Ban, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nextExpiry.IsZero() || now.Before(t.nextExpiry) {
		return nil, nil
	}
	var gone []Ban
	var next time.Time
	for _, b := range t.active {
		if b.Permanent() {
			continue
		}
		if b.Expired(now) && (max <= 0 || len(gone) < max) {
			gone = append(gone, b)
			continue
		}
		if next.IsZero() || b.Expires.Before(next) {
			next = b.Expires
		}
	}
	if err := t.drop(gone); err != nil {
		return nil, err
	}
	t.nextExpiry = next
	return gone, nil
}

// RemoveBans lifts those of bs (by jail and prefix) that the table still
// holds, in one transaction, and returns them as they were held.
func (t *Table) RemoveBans(bs []Ban) ([]Ban, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []Ban
	for _, b := range bs {
		if held, ok := t.active[key{b.Jail, b.Prefix.Masked()}]; ok {
			gone = append(gone, held)
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
		k := key{b.Jail, b.Prefix}
		if _, ok := t.active[k]; ok {
			delete(t.active, k)
			t.perJail[k.jail]--
		}
	}
	t.publish()
	return nil
}

// set puts b in active, keeping the counts and nextExpiry; the caller
// holds t.mu (or owns t).
func (t *Table) set(b Ban) {
	k := key{b.Jail, b.Prefix}
	if _, ok := t.active[k]; !ok {
		t.perJail[k.jail]++
	}
	t.active[k] = b
	if !b.Permanent() && (t.nextExpiry.IsZero() || b.Expires.Before(t.nextExpiry)) {
		t.nextExpiry = b.Expires
	}
}

// record is a key and value to put (or a key to delete).
type record struct{ k, v []byte }

// fillPercent is how full bbolt packs the pages it splits. Sorted puts
// mostly append, where bbolt's default (half full) would leave every page
// half empty.
const fillPercent = 0.9

// persist writes one transaction: bans put and deleted, history, totals
// (nil: unchanged) and the cursor (nil: unchanged) with the pending state
// changes.
func (t *Table) persist(put, del []Ban, hist map[key][]time.Time, totals map[string]int, cursor *string) error {
	if t.db == nil {
		if cursor != nil {
			t.st.written()
		}
		return nil
	}
	// Keys go in in sorted order: bbolt inserts into an in-memory node by
	// moving every later key, so unsorted puts made a transaction of n
	// keys cost O(n²) (100,000 bans: 24 s; sorted, they append).
	puts := make([]record, 0, len(put))
	for _, b := range put {
		puts = append(puts, record{appendKey(nil, b.Jail, b.Prefix), appendBan(nil, b)})
	}
	dels := make([]record, 0, len(del))
	for _, b := range del {
		dels = append(dels, record{k: appendKey(nil, b.Jail, b.Prefix)})
	}
	hists := make([]record, 0, len(hist))
	for k, starts := range hist {
		hists = append(hists, record{k.bytes(), appendHistory(nil, starts)})
	}
	for _, rs := range [][]record{puts, dels, hists} {
		slices.SortFunc(rs, func(a, b record) int { return bytes.Compare(a.k, b.k) })
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
	for _, b := range t.active {
		if !b.Expired(now) {
			out = append(out, b)
		}
	}
	return out
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
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, s := range t.history[key{jail, p.Masked()}] {
		if !s.Before(since) {
			n++
		}
	}
	return n
}

// ActiveWithin implements jails.History.
func (t *Table) ActiveWithin(jail string, subnet netip.Prefix, now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k, b := range t.active {
		if k.jail == jail && !b.Expired(now) && subnet.Bits() <= k.prefix.Bits() && subnet.Contains(k.prefix.Addr()) {
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
