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
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
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

func (k key) bytes() []byte { return []byte(k.jail + "\x00" + k.prefix.String()) }

// Table holds the bans. It is safe for concurrent use.
type Table struct {
	mu      sync.Mutex
	db      *bolt.DB // nil for an in-memory table
	active  map[key]Ban
	history map[key][]time.Time // ban start times, oldest first
	totals  map[string]int      // bans ever started, per jail
	cursor  string
	// HistoryKeep bounds the history kept per prefix.
	historyKeep int
	// The state saved with the cursor (state.go).
	st stateLog
}

// NewMemory returns a table that persists nothing (tests, dry runs).
func NewMemory() *Table {
	return &Table{active: map[key]Ban{}, history: map[key][]time.Time{}, totals: map[string]int{}, historyKeep: 32}
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
	return t.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketBans, bucketHistory, bucketMeta, bucketState} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketBans).ForEach(func(k, v []byte) error {
			var b Ban
			if err := json.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("%w: ban %q: %v", ErrCorrupt, k, err)
			}
			t.active[key{b.Jail, b.Prefix}] = b
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketHistory).ForEach(func(k, v []byte) error {
			var h struct {
				Jail   string       `json:"jail"`
				Prefix netip.Prefix `json:"prefix"`
				Starts []time.Time  `json:"starts"`
			}
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("%w: history %q: %v", ErrCorrupt, k, err)
			}
			t.history[key{h.Jail, h.Prefix}] = h.Starts
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
		t.active[key{b.Jail, b.Prefix}] = b
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
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []Ban
	for _, b := range t.active {
		if b.Expired(now) {
			gone = append(gone, b)
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
		delete(t.active, key{b.Jail, b.Prefix})
	}
	return nil
}

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
	err := t.db.Update(func(tx *bolt.Tx) error {
		bb := tx.Bucket(bucketBans)
		for _, b := range put {
			v, err := encodeBan(b)
			if err != nil {
				return err
			}
			if err := bb.Put(key{b.Jail, b.Prefix}.bytes(), v); err != nil {
				return err
			}
		}
		for _, b := range del {
			if err := bb.Delete(key{b.Jail, b.Prefix}.bytes()); err != nil {
				return err
			}
		}
		hb := tx.Bucket(bucketHistory)
		for k, starts := range hist {
			v, err := encodeHistory(historyRecord{k.jail, k.prefix, starts})
			if err != nil {
				return err
			}
			if err := hb.Put(k.bytes(), v); err != nil {
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
func (t *Table) Active(now time.Time) []Ban {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Ban, 0, len(t.active))
	for _, b := range t.active {
		if !b.Expired(now) {
			out = append(out, b)
		}
	}
	// Compared as values: formatting prefixes inside the comparator was
	// most of an idle daemon's CPU (the watchdog reads Active each tick).
	slices.SortFunc(out, func(a, b Ban) int {
		if c := strings.Compare(a.Jail, b.Jail); c != 0 {
			return c
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out
}

// Len returns how many bans the table holds (expired ones linger until the
// next Expire, at most a second in the daemon). O(1), for status lines.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.active)
}

// Total returns how many bans jail has started, ever (persisted).
func (t *Table) Total(jail string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.totals[jail]
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
