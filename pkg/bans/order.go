package bans

import (
	"bytes"
	"cmp"
	"slices"
	"sync"
	"time"
)

// The sorted order that Page reads.
//
// A client reads a million bans in pages of a few thousand. Sorting the
// table for every page made each page cost what the whole table costs
// (about 0.2 s at 500,000 bans). The table therefore keeps the keys in
// Active's order once a page has been asked for, and from then on records
// each key that enters or leaves the table; the next page merges those
// changes into the order (linear, outside the table's lock) instead of
// sorting again, and a page of an unchanged table costs the page only.

// order is the table's sorted keys; its fields are guarded by their own
// lock (mu), except events, which the table's lock guards.
type order struct {
	mu   sync.Mutex
	keys []key // sorted (compareKeys); nil: not built
	rank []int // rank[jail index]: its place among the jails' names, sorted
	// on is true once keys exist; while it is, the table appends to
	// events every key that enters (add) or leaves the table. The table's
	// lock guards on and events.
	on     bool
	events []orderEvent
}

// orderEvent is a key that entered (add) or left the table.
type orderEvent struct {
	k   key
	add bool
}

// orderMaxEvents bounds the changes recorded for an order no one reads:
// beyond it the order is dropped (and rebuilt by the next page).
func orderMaxEvents(n int) int { return n/2 + 4096 }

// noteOrder records that k entered (add) or left the table; the caller
// holds t.mu.
func (t *Table) noteOrder(k key, add bool) {
	o := &t.order
	if !o.on {
		return
	}
	o.events = append(o.events, orderEvent{k, add})
	if len(o.events) > orderMaxEvents(len(t.active)) {
		// Nobody is paging (a mass import or expiry): stop recording.
		// The next page sorts anew.
		o.on, o.events = false, nil
	}
}

// Page returns at most limit (0: no bound) of the bans in force at now
// from the offset-th on, in Active's order, and how many there are in
// all. A page of an unchanged table costs the page; after changes, the
// first page costs a merge of the changes into the order (linear), not a
// sort of the table.
func (t *Table) Page(now time.Time, offset, limit int) ([]Ban, int) {
	o := &t.order
	o.mu.Lock()
	defer o.mu.Unlock()

	t.mu.Lock()
	// Bans past their expiry that the table still holds (up to a second
	// in the daemon, or the length of a mass expiry's steps) are not in
	// force: the order cannot skip them by position, so such a page sorts
	// what is in force, as Active does.
	lingering := len(t.expiring) > 0 || (!t.nextExpiry.IsZero() && !now.Before(t.nextExpiry))
	if lingering {
		t.mu.Unlock()
		active := t.Active(now)
		return pageSlice(active, offset, limit), len(active)
	}
	var events []orderEvent
	var fresh []key
	if !o.on {
		// (Re)build: copy the keys now, sort them after the lock.
		fresh = make([]key, 0, len(t.active))
		for k := range t.active {
			fresh = append(fresh, k)
		}
		o.on, o.events = true, nil
	} else {
		events, o.events = o.events, nil
	}
	// The table only appends to its jail names: the copied slice stays.
	jails := t.names.jails[:len(t.names.jails):len(t.names.jails)]
	t.mu.Unlock()

	o.rank = jailRanks(jails)
	if fresh != nil {
		slices.SortFunc(fresh, o.compare)
		o.keys = fresh
	} else if len(events) > 0 {
		o.keys = o.merge(o.keys, events)
	}

	// The page itself, under the table's lock: the changes since the
	// merge above (usually none) are merged first, so that the order is
	// exactly the table's.
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(o.events) > 0 || !o.on {
		if !o.on {
			// Dropped meanwhile (a mass change): sort under the lock,
			// rare.
			o.keys = o.keys[:0:0]
			for k := range t.active {
				o.keys = append(o.keys, k)
			}
			o.rank = jailRanks(t.names.jails)
			slices.SortFunc(o.keys, o.compare)
			o.on = true
		} else {
			o.rank = jailRanks(t.names.jails)
			o.keys = o.merge(o.keys, o.events)
		}
		o.events = nil
	}
	keys := pageSlice(o.keys, offset, limit)
	out := make([]Ban, len(keys))
	for i, k := range keys {
		out[i] = t.ban(k, t.active[k])
	}
	return out, len(o.keys)
}

// pageSlice returns s[offset:offset+limit], bounded by s (limit 0: no bound).
func pageSlice[T any](s []T, offset, limit int) []T {
	offset = min(max(offset, 0), len(s))
	end := len(s)
	if limit > 0 {
		end = min(offset+limit, len(s))
	}
	return s[offset:end]
}

// jailRanks returns each jail index's place among the names, sorted.
func jailRanks(jails []string) []int {
	idx := make([]int, len(jails))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(jails[a], jails[b]) })
	rank := make([]int, len(jails))
	for r, i := range idx {
		rank[i] = r
	}
	return rank
}

// compare is compareBans on keys: jail name, IPv4 before IPv6, address,
// prefix length.
func (o *order) compare(a, b key) int {
	if a.jail != b.jail {
		return cmp.Compare(o.rank[a.jail], o.rank[b.jail])
	}
	if a.v6 != b.v6 {
		if !a.v6 {
			return -1
		}
		return 1
	}
	if c := bytes.Compare(a.addr[:], b.addr[:]); c != 0 {
		return c
	}
	return cmp.Compare(a.bits, b.bits)
}

// merge returns keys with events applied (the last event of a key
// decides whether it is in), in order; keys is not changed.
func (o *order) merge(keys []key, events []orderEvent) []key {
	last := make(map[key]bool, len(events))
	for _, e := range events {
		last[e.k] = e.add
	}
	adds := make([]key, 0, len(last))
	for k, add := range last {
		if add {
			adds = append(adds, k)
		}
	}
	slices.SortFunc(adds, o.compare)
	out := make([]key, 0, len(keys)+len(adds))
	i := 0
	for _, k := range keys {
		for i < len(adds) && o.compare(adds[i], k) < 0 {
			out = append(out, adds[i])
			i++
		}
		if _, changed := last[k]; changed {
			// Left, or left and came back: the adds put it in again.
			continue
		}
		out = append(out, k)
	}
	return append(out, adds[i:]...)
}
