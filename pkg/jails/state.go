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
// the ban path follows the failures of the batch, not the tracker's size.
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
// that changed since the last call (a nil value: delete the record), then
// forgets the changes. The first call, or RestoreState, starts the
// recording; until then nothing is recorded. Keys and values are the
// caller's to keep.
func (e *Engine) TakeState(put func(key, value []byte)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recordState()
	for _, k := range e.gone {
		put(k, nil)
	}
	e.gone = nil
	for _, js := range e.jails {
		if js.totalDirty {
			put(totalKey(js.Name), binary.AppendUvarint(nil, uint64(js.total)))
			js.totalDirty = false
		}
		t := js.tracker
		for p := range t.changed {
			var v []byte
			if n := t.keys.get(p); n != nil {
				v = encodeTrack(n)
			}
			put(trackKey(js.Name, p), v)
		}
		clear(t.changed)
	}
}

// RestoreState loads records saved from TakeState, given by each (the ban
// table's EachState), into an engine that has counted nothing yet, and
// starts recording changes. Records of jails no longer configured, tracked
// keys of another ipv6_prefix and keys whose last failure is older than
// findtime at now are dropped, and deleted at the next TakeState; a
// record that does not decode is dropped the same way and reported in the
// error, after everything else was loaded. It returns the number of keys
// restored.
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
	pending := map[*jailState][]restored{}
	var bad []error
	err := each(func(k, v []byte) {
		keep := false
		defer func() {
			if !keep {
				e.gone = append(e.gone, bytes.Clone(k))
			}
		}()
		if len(k) < 2 {
			bad = append(bad, fmt.Errorf("record %q: too short", k))
			return
		}
		switch k[0] {
		case recTotal:
			js := byName[string(k[1:])]
			if js == nil {
				return
			}
			n, used := binary.Uvarint(v)
			if used <= 0 || used != len(v) {
				bad = append(bad, fmt.Errorf("total of jail %s: bad value", js.Name))
				return
			}
			js.total, keep = int(n), true
		case recTrack:
			name, ptext, ok := bytes.Cut(k[1:], []byte{0})
			js := byName[string(name)]
			if !ok || js == nil {
				return
			}
			p, err := netip.ParsePrefix(string(ptext))
			if err != nil {
				bad = append(bad, fmt.Errorf("tracked key of jail %s: %w", js.Name, err))
				return
			}
			if p != Key(p.Addr(), js.IPv6Prefix) {
				return // ipv6_prefix changed: the key means something else
			}
			rec, last, err := decodeTrack(v)
			if err != nil {
				bad = append(bad, fmt.Errorf("tracked key %s of jail %s: %w", p, js.Name, err))
				return
			}
			if last < now.Add(-js.FindTime).UnixNano() {
				return
			}
			if len(rec.times) > js.MaxRetry {
				rec.times = rec.times[len(rec.times)-js.MaxRetry:]
			}
			pending[js] = append(pending[js], restored{p, rec, last})
			keep = true
		default:
			bad = append(bad, fmt.Errorf("record %q: unknown kind", k))
		}
	})
	if err != nil {
		return 0, fmt.Errorf("restoring failure counts: %w", err)
	}
	n := 0
	for js, rs := range pending {
		// The tracker's list is ordered by last failure, oldest first.
		slices.SortFunc(rs, func(a, b restored) int { return cmpInt64(a.at, b.at) })
		if over := len(rs) - js.tracker.maxTracked; over > 0 {
			for _, r := range rs[:over] {
				e.gone = append(e.gone, trackKey(js.Name, r.key))
			}
			rs = rs[over:]
		}
		for _, r := range rs {
			t := js.tracker
			if t.keys.get(r.key) != nil {
				continue
			}
			node := t.keys.add(r.key, r.at)
			node.val = r.rec
			if len(r.rec.times) > 0 {
				t.active++
			}
			n++
		}
	}
	if len(bad) > 0 {
		return n, fmt.Errorf("restoring failure counts: %d records dropped: %w", len(bad), errors.Join(bad...))
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

// dropState queues the deletion of every record of js (a jail removed, or
// a tracker not carried over on reload). Called with e.mu held.
func (e *Engine) dropState(js *jailState, tracker, total bool) {
	if !e.state {
		return
	}
	if total {
		e.gone = append(e.gone, totalKey(js.Name))
	}
	if !tracker {
		return
	}
	t := js.tracker
	for p := range t.changed {
		if t.keys.get(p) == nil {
			e.gone = append(e.gone, trackKey(js.Name, p))
		}
	}
	t.keys.each(func(n *lruNode[netip.Prefix, trackEntry]) {
		e.gone = append(e.gone, trackKey(js.Name, n.key))
	})
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
