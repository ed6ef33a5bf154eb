package jails

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
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
//	key 'f' jail 0x00 prefix              value: a tracked key (encodeTrack)
//	key 'u' jail 0x00 prefix 0x00 user    value: a key's failures against
//	                                      a user (distributed attacks)
//	key 't' jail                          value: the jail's total, uvarint
//
// Only what changed since the last TakeState is handed out, so the cost on
// the ban path follows the failures of the batch, not the tracker's size;
// after a restore that dropped most records, or a reload that left some
// behind, the next one hands out everything, so the store can start afresh. Escalated subnets are not
// part of it: they are bans, in the ban table, and are not banned twice.
// Nor is the pairing of one attempt's two lines without a shared port
// (tracker.go: it hashes user names with a seed of the process): a restart
// in the seconds between them counts that attempt twice.

const (
	recTrack = 'f'
	recDist  = 'u'
	recTotal = 't'
	trackV1  = 1
	distV1   = 1
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
		if js.dist != nil && js.dist.changed == nil {
			js.dist.changed = map[distPair]struct{}{}
		}
	}
}

// TakeState calls put with every record of the engine's counting state
// that changed since the last call (a nil value: delete the record) and
// returns false; or, when all is true or the engine needs it (after a
// restore that dropped most records, or a reload that left some behind),
// with every record it holds, and returns true: the caller then replaces
// what it saved with them. Calling it starts the recording. Keys and
// values are the caller's to keep.
func (e *Engine) TakeState(all bool, put func(key, value []byte)) (full bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.holdLong()()
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
			if d := js.dist; d != nil {
				d.users.each(func(un *lruNode[string, *distUser]) {
					un.val.keys.each(func(kn *lruNode[netip.Prefix, distKey]) {
						put(distKeyOf(js.Name, un.key, kn.key), encodeDist(kn))
					})
				})
			}
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
			if d := js.dist; d != nil {
				for pr := range d.changed {
					var v []byte
					if un := d.users.get(pr.user); un != nil {
						if kn := un.val.keys.get(pr.key); kn != nil {
							v = encodeDist(kn)
						}
					}
					put(distKeyOf(js.Name, pr.user, pr.key), v)
				}
			}
		}
		js.totalDirty = false
		clear(t.changed)
		if js.dist != nil {
			clear(js.dist.changed)
		}
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
	dists := map[*jailState]map[distPair]distSaved{}
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
		case recDist:
			name, rest, ok := bytes.Cut(k[1:], []byte{0})
			ptext, user, ok2 := bytes.Cut(rest, []byte{0})
			js := byName[string(name)]
			if !ok || !ok2 || js == nil || js.dist == nil {
				return
			}
			p, err := netip.ParsePrefix(string(ptext))
			if err != nil {
				bad[string(k)] = fmt.Errorf("distributed count of jail %s: %w", js.Name, err)
				return
			}
			if p != Key(p.Addr(), js.IPv6Prefix) {
				return // ipv6_prefix changed
			}
			m := dists[js]
			if m == nil {
				m = map[distPair]distSaved{}
				dists[js] = m
			}
			pr := distPair{string(user), p}
			if v == nil {
				delete(m, pr)
				return
			}
			if len(v) < 10 || v[0] != distV1 {
				delete(m, pr)
				bad[string(k)] = fmt.Errorf("distributed count of %s in jail %s: bad value", p, js.Name)
				return
			}
			n, used := binary.Uvarint(v[9:])
			if used <= 0 || 9+used != len(v) || n > math.MaxInt32 {
				delete(m, pr)
				bad[string(k)] = fmt.Errorf("distributed count of %s in jail %s: bad value", p, js.Name)
				return
			}
			m[pr] = distSaved{pr, int(n), int64(binary.BigEndian.Uint64(v[1:]))}
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
	n, kept := 0, 0
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
	for js, m := range dists {
		kept += js.dist.restore(slices.Collect(maps.Values(m)), now.Add(-js.Distributed.Window).UnixNano())
	}
	kept += n
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

// distSaved is a restored distributed-attack count: a key's failures
// against a user, and when the last one was.
type distSaved struct {
	pair  distPair
	count int
	at    int64
}

// restore puts saved counts into an empty distTracker, dropping those
// whose last failure is before horizon; it returns how many it kept.
func (d *distTracker) restore(recs []distSaved, horizon int64) int {
	recs = slices.DeleteFunc(recs, func(r distSaved) bool { return r.at < horizon })
	// Both lists are ordered by last touch, oldest first.
	slices.SortFunc(recs, func(a, b distSaved) int { return cmpInt64(a.at, b.at) })
	userLast := map[string]int64{}
	for _, r := range recs {
		userLast[r.pair.user] = r.at // sorted: the last one wins
	}
	users := slices.Collect(maps.Keys(userLast))
	slices.SortFunc(users, func(a, b string) int { return cmpInt64(userLast[a], userLast[b]) })
	for _, u := range users {
		un := d.users.add(u, userLast[u])
		un.val = &distUser{keys: newLRU[netip.Prefix, distKey]()}
	}
	for _, r := range recs {
		un := d.users.get(r.pair.user)
		if un.val.keys.get(r.pair.key) != nil {
			continue
		}
		kn := un.val.keys.add(r.pair.key, r.at)
		kn.val.count = r.count
		d.pairs++
	}
	d.users.each(func(un *lruNode[string, *distUser]) {
		un.val.scanned = un.val.keys.len() >= d.cfg.MinAddresses
	})
	return len(recs)
}

func distKeyOf(jail, user string, p netip.Prefix) []byte {
	k := make([]byte, 0, 3+len(jail)+len(user)+len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
	k = append(k, recDist)
	k = append(k, jail...)
	k = append(k, 0)
	k = p.AppendTo(k)
	k = append(k, 0)
	return append(k, user...)
}

// encodeDist encodes a distributed count: version, last failure, count.
func encodeDist(n *lruNode[netip.Prefix, distKey]) []byte {
	v := make([]byte, 0, 1+8+binary.MaxVarintLen64)
	v = append(v, distV1)
	v = binary.BigEndian.AppendUint64(v, uint64(n.last))
	return binary.AppendUvarint(v, uint64(n.val.count))
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

// stateSweep is a sweep in progress (SweepState): the records the engine
// held when it began. The tracked keys are held without pointers (a
// million of them: 18 MB the collector does not scan).
type stateSweep struct {
	jails []sweepJail
	j     int // the jail being handed out
	pos   int // in its keys, then in its dists
}

type sweepJail struct {
	js    *jailState
	keys  []sweepKey
	dists []distPair
}

// sweepKey is a tracked key's prefix.
type sweepKey struct {
	addr [16]byte
	bits uint8
	v6   bool
}

func sweepKeyOf(p netip.Prefix) sweepKey {
	return sweepKey{p.Addr().As16(), uint8(p.Bits()), p.Addr().Is6()}
}

func (k sweepKey) prefix() netip.Prefix {
	if !k.v6 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(k.addr[12:])), int(k.bits))
	}
	return netip.PrefixFrom(netip.AddrFrom16(k.addr), int(k.bits))
}

// SweepState implements bans.StateSweeper: with start, it notes every
// record the engine holds now (and hands out the jails' totals); then it
// calls put with the current value of up to n of the noted records not
// yet handed out, skipping those the engine no longer holds (their
// deletion is a change TakeState hands out), and reports whether every
// noted record has been handed out. The store re-writes its records this
// way, a part per cursor write, instead of all of them in one (a million
// tracked addresses: about a second under the daemon's lock).
func (e *Engine) SweepState(start bool, n int, put func(key, value []byte)) (done bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.holdLong()()
	if start {
		sw := &stateSweep{}
		for _, js := range e.jails {
			if js.total > 0 {
				put(totalKey(js.Name), binary.AppendUvarint(nil, uint64(js.total)))
			}
			sj := sweepJail{js: js, keys: make([]sweepKey, 0, js.tracker.keys.len())}
			js.tracker.keys.each(func(n *lruNode[netip.Prefix, trackEntry]) {
				sj.keys = append(sj.keys, sweepKeyOf(n.key))
			})
			if d := js.dist; d != nil {
				d.users.each(func(un *lruNode[string, *distUser]) {
					un.val.keys.each(func(kn *lruNode[netip.Prefix, distKey]) {
						sj.dists = append(sj.dists, distPair{un.key, kn.key})
					})
				})
			}
			sw.jails = append(sw.jails, sj)
		}
		e.sweep = sw
	}
	sw := e.sweep
	for sw != nil && n > 0 && sw.j < len(sw.jails) {
		sj := &sw.jails[sw.j]
		js := sj.js
		switch {
		case sw.pos < len(sj.keys):
			end := min(len(sj.keys), sw.pos+n)
			for _, k := range sj.keys[sw.pos:end] {
				p := k.prefix()
				if node := js.tracker.keys.get(p); node != nil {
					put(trackKey(js.Name, p), encodeTrack(node))
				}
			}
			n -= end - sw.pos
			sw.pos = end
		case sw.pos < len(sj.keys)+len(sj.dists):
			i := sw.pos - len(sj.keys)
			end := min(len(sj.dists), i+n)
			for _, pr := range sj.dists[i:end] {
				if js.dist == nil {
					break
				}
				if un := js.dist.users.get(pr.user); un != nil {
					if kn := un.val.keys.get(pr.key); kn != nil {
						put(distKeyOf(js.Name, pr.user, pr.key), encodeDist(kn))
					}
				}
			}
			n -= end - i
			sw.pos += end - i
		default:
			sw.j, sw.pos = sw.j+1, 0
		}
	}
	if sw == nil || sw.j == len(sw.jails) {
		e.sweep = nil
		return true
	}
	return false
}
