package jails

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// The engine's counting state survives restarts, crashes and watchdog
// kills: the failures each jail tracks inside findtime (with the last
// connection of each key, so its closing lines are not counted again) and
// each jail's total of failures. The daemon saves it in the ban table in
// the same transaction as the journal cursor, so the saved counts are
// always those of the entries up to the saved cursor: entries after it are
// read again after a crash and counted once.
//
// The state is a set of records, key → value, opaque to the store:
//
//	key 'f' jail 0x00 prefix   value: a tracked key (encodeTrack)
//	key 't' jail               value: the jail's total, uvarint
//
// Only what changed since the last TakeState is handed out, so the cost on
// the ban path follows the failures of the batch, not the tracker's size;
// after a restore that dropped records, or a reload, the next one hands
// out everything, so the store can start afresh.
// Distributed-attack counts and escalated subnets are not part of it: after
// a restart they start again (escalated subnets are still in the ban
// table, so they are not banned twice).

const (
	recTrack = 'f'
	recTotal = 't'
	trackV1  = 1
)

// recordState starts recording the changes TakeState hands out. Called
// with e.mu held.
func (e *Engine) recordState() {
	if e.state {
		return
	}
	e.state = true
	for _, js := range e.jails {
		if js.tracker.changed == nil {
			js.tracker.changed = map[netip.Prefix]struct{}{}
		}
	}
}

// TakeState calls put with every record of the engine's counting state
// that changed since the last call (a nil value: delete the record) and
// returns false; or, when all is true or the engine needs it (after a
// restore that dropped records, or a reload), with every record it holds,
// and returns true: the caller then replaces what it saved with them.
// Calling it starts the recording. Keys and values are the caller's to
// keep.
func (e *Engine) TakeState(all bool, put func(key, value []byte)) (full bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recordState()
	full = all || e.fullNext
	e.fullNext = false
	for _, js := range e.jails {
		t := js.tracker
		if full {
			if js.total > 0 {
				put(totalKey(js.Name), binary.AppendUvarint(nil, uint64(js.total)))
			}
			t.keys.each(func(n *lruNode[netip.Prefix, trackEntry]) {
				put(trackKey(js.Name, n.key), encodeTrack(n))
			})
		} else {
			if js.totalDirty {
				put(totalKey(js.Name), binary.AppendUvarint(nil, uint64(js.total)))
			}
			for p := range t.changed {
				var v []byte
				if n := t.keys.get(p); n != nil {
					v = encodeTrack(n)
				}
				put(trackKey(js.Name, p), v)
			}
		}
		js.totalDirty = false
		clear(t.changed)
	}
	return full
}

// RestoreState loads the records saved from TakeState into an engine that
// has counted nothing yet, and starts recording changes. each (the ban
// table's EachState) gives them in the order written: a later record of a
// key replaces an earlier one, a nil value deletes it. Records of jails no
// longer configured, tracked keys of another ipv6_prefix and keys whose
// last failure is older than findtime at now are dropped; a record that
// does not decode is dropped too and reported in the error, after
// everything else was loaded. When the records dropped or replaced
// outnumber the ones kept, the next TakeState is a full one. It returns
// the number of keys restored.
func (e *Engine) RestoreState(each func(fn func(key, value []byte)) error, now time.Time) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recordState()
	byName := map[string]*jailState{}
	for _, js := range e.jails {
		byName[js.Name] = js
	}
	type restored struct {
		key netip.Prefix
		rec trackEntry
		at  int64
	}
	pending := map[*jailState]map[netip.Prefix]restored{}
	totals := map[*jailState]int{}
	bad := map[string]error{}
	records := 0
	err := each(func(k, v []byte) {
		records++
		delete(bad, string(k))
		if len(k) < 2 {
			bad[string(k)] = fmt.Errorf("record %q: too short", k)
			return
		}
		switch k[0] {
		case recTotal:
			js := byName[string(k[1:])]
			if js == nil {
				return
			}
			if v == nil {
				delete(totals, js)
				return
			}
			n, used := binary.Uvarint(v)
			if used <= 0 || used != len(v) {
				bad[string(k)] = fmt.Errorf("total of jail %s: bad value", js.Name)
				return
			}
			totals[js] = int(n)
		case recTrack:
			name, ptext, ok := bytes.Cut(k[1:], []byte{0})
			js := byName[string(name)]
			if !ok || js == nil {
				return
			}
			p, err := netip.ParsePrefix(string(ptext))
			if err != nil {
				bad[string(k)] = fmt.Errorf("tracked key of jail %s: %w", js.Name, err)
				return
			}
			m := pending[js]
			if m == nil {
				m = map[netip.Prefix]restored{}
				pending[js] = m
			}
			if v == nil {
				delete(m, p)
				return
			}
			rec, last, err := decodeTrack(v)
			if err != nil {
				delete(m, p)
				bad[string(k)] = fmt.Errorf("tracked key %s of jail %s: %w", p, js.Name, err)
				return
			}
			m[p] = restored{p, rec, last}
		default:
			bad[string(k)] = fmt.Errorf("record %q: unknown kind", k)
		}
	})
	if err != nil {
		e.fullNext = true
		return 0, fmt.Errorf("restoring failure counts: %w", err)
	}
	for js, n := range totals {
		js.total = n
	}
	n := 0
	for js, m := range pending {
		horizon := now.Add(-js.FindTime).UnixNano()
		rs := make([]restored, 0, len(m))
		for p, r := range m {
			if p != Key(p.Addr(), js.IPv6Prefix) || r.at < horizon {
				continue // ipv6_prefix changed, or outside findtime
			}
			if len(r.rec.times) > js.MaxRetry {
				r.rec.times = r.rec.times[len(r.rec.times)-js.MaxRetry:]
			}
			rs = append(rs, r)
		}
		// The tracker's list is ordered by last failure, oldest first.
		slices.SortFunc(rs, func(a, b restored) int { return cmpInt64(a.at, b.at) })
		rs = rs[max(0, len(rs)-js.tracker.maxTracked):]
		t := js.tracker
		for _, r := range rs {
			node := t.keys.add(r.key, r.at)
			node.val = r.rec
			if len(r.rec.times) > 0 {
				t.active++
			}
			n++
		}
	}
	kept := n
	for _, t := range totals {
		if t > 0 {
			kept++
		}
	}
	// Records replaced, deleted or dropped outweigh the ones kept, or some
	// do not decode: have the store start afresh.
	if records-kept > kept+1024 || len(bad) > 0 {
		e.fullNext = true
	}
	if len(bad) > 0 {
		errs := make([]error, 0, len(bad))
		for _, err := range bad {
			errs = append(errs, err)
		}
		return n, fmt.Errorf("restoring failure counts: %d records dropped: %w", len(bad), errors.Join(errs...))
	}
	return n, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func totalKey(jail string) []byte {
	return append([]byte{recTotal}, jail...)
}

func trackKey(jail string, p netip.Prefix) []byte {
	k := make([]byte, 0, 2+len(jail)+len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
	k = append(k, recTrack)
	k = append(k, jail...)
	k = append(k, 0)
	return p.AppendTo(k)
}

// encodeTrack encodes a tracked key's entry: version, last touch, last
// address, port and regex, then the failure times (unix nanoseconds).
func encodeTrack(n *lruNode[netip.Prefix, trackEntry]) []byte {
	e := &n.val
	times := e.times
	if len(times) > math.MaxUint16 {
		times = times[len(times)-math.MaxUint16:]
	}
	v := make([]byte, 0, 1+8+1+16+2+4+2+8*len(times))
	v = append(v, trackV1)
	v = binary.BigEndian.AppendUint64(v, uint64(n.last))
	a, _ := e.lastAddr.MarshalBinary()
	v = append(v, byte(len(a)))
	v = append(v, a...)
	v = binary.BigEndian.AppendUint16(v, e.lastPort)
	v = binary.BigEndian.AppendUint32(v, uint32(int32(e.lastRegex)))
	v = binary.BigEndian.AppendUint16(v, uint16(len(times)))
	for _, t := range times {
		v = binary.BigEndian.AppendUint64(v, uint64(t))
	}
	return v
}

var errTrackValue = errors.New("bad value")

// decodeTrack is encodeTrack's inverse; it also returns the last touch.
func decodeTrack(v []byte) (trackEntry, int64, error) {
	var e trackEntry
	if len(v) < 1+8+1 || v[0] != trackV1 {
		return e, 0, errTrackValue
	}
	last := int64(binary.BigEndian.Uint64(v[1:]))
	v = v[9:]
	al := int(v[0])
	v = v[1:]
	if al != 0 && al != 4 && al != 16 || len(v) < al+2+4+2 {
		return e, 0, errTrackValue
	}
	if err := e.lastAddr.UnmarshalBinary(v[:al]); err != nil {
		return e, 0, errTrackValue
	}
	v = v[al:]
	e.lastPort = binary.BigEndian.Uint16(v)
	e.lastRegex = int(int32(binary.BigEndian.Uint32(v[2:])))
	nt := int(binary.BigEndian.Uint16(v[6:]))
	v = v[8:]
	if len(v) != 8*nt {
		return e, 0, errTrackValue
	}
	if nt > 0 {
		e.times = make([]int64, nt)
		for i := range e.times {
			e.times[i] = int64(binary.BigEndian.Uint64(v[8*i:]))
			if i > 0 && e.times[i] < e.times[i-1] {
				return e, 0, errTrackValue
			}
		}
	}
	return e, last, nil
}
