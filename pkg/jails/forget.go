package jails

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// overlapSet tells whether a prefix overlaps any of a set of prefixes in a
// few map lookups, so that forgetting a blocklist's bans costs per ban and
// per tracked key, not their product.
type overlapSet struct {
	byBits  map[int]map[netip.Prefix]bool // members by length
	bits    []int                         // their distinct lengths, ascending
	members []netip.Prefix
	masked  map[int]map[netip.Prefix]bool // members longer than a length, masked to it (built on demand)
}

func newOverlapSet(ps []netip.Prefix) *overlapSet {
	s := &overlapSet{byBits: map[int]map[netip.Prefix]bool{}, masked: map[int]map[netip.Prefix]bool{}, members: ps}
	for _, p := range ps {
		m := s.byBits[p.Bits()]
		if m == nil {
			m = map[netip.Prefix]bool{}
			s.byBits[p.Bits()] = m
			s.bits = append(s.bits, p.Bits())
		}
		m[p] = true
	}
	slices.Sort(s.bits)
	return s
}

// overlaps reports whether k contains, or is contained in, a member.
func (s *overlapSet) overlaps(k netip.Prefix) bool {
	k = k.Masked()
	for _, b := range s.bits {
		if b > k.Bits() {
			break
		}
		if m, err := k.Addr().Prefix(b); err == nil && s.byBits[b][m] {
			return true
		}
	}
	if len(s.bits) == 0 || s.bits[len(s.bits)-1] <= k.Bits() {
		return false
	}
	in, ok := s.masked[k.Bits()]
	if !ok {
		in = map[netip.Prefix]bool{}
		for _, p := range s.members {
			if p.Bits() > k.Bits() {
				if m, err := p.Addr().Prefix(k.Bits()); err == nil {
					in[m] = true
				}
			}
		}
		s.masked[k.Bits()] = in
	}
	return in[k]
}

// forgetSet drops every key that overlaps a member of s. Members at least
// as long as the keys they fall in (addresses, IPv6 prefixes inside
// ipv6Prefix) are looked up, and so are the keys inside shorter members
// (a /24 of keys of /32: 256 lookups) while they number fewer than the
// tracked keys; beyond that it scans the tracker, once for the whole set.
// A blocklist's step with a /24 among its addresses scanned a million
// tracked keys in a flood (about 70 ms under the engine's lock, per
// step).
func (t *Tracker) forgetSet(s *overlapSet, ipv6Prefix int) int {
	n := 0
	lookups := 0
	for _, p := range s.members {
		if kb := keyBits(p, ipv6Prefix); kb > p.Bits() {
			if kb-p.Bits() >= 31 {
				lookups = math.MaxInt
				break
			}
			lookups += 1 << (kb - p.Bits())
		}
	}
	if lookups > t.keys.len() {
		t.keys.each(func(node *lruNode[netip.Prefix, trackEntry]) {
			if s.overlaps(node.key) {
				t.keys.remove(node)
				t.dropped(node)
				n++
			}
		})
		return n
	}
	drop := func(a netip.Addr) {
		if node := t.keys.get(Key(a, ipv6Prefix)); node != nil {
			t.keys.remove(node)
			t.dropped(node)
			n++
		}
	}
	for _, p := range s.members {
		kb := keyBits(p, ipv6Prefix)
		if kb <= p.Bits() {
			drop(p.Addr())
			continue
		}
		for i := range uint64(1) << (kb - p.Bits()) {
			drop(nthKey(p.Masked().Addr(), i, kb))
		}
	}
	return n
}

// nthKey returns the address of the i-th key of length kb from a (a
// prefix's first address): a plus i at bit kb.
func nthKey(a netip.Addr, i uint64, kb int) netip.Addr {
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) + uint32(i)<<(32-kb)
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	if sh := 128 - kb; sh >= 64 {
		hi += i << (sh - 64)
	} else {
		var carry uint64
		lo, carry = bits.Add64(lo, i<<sh, 0)
		hi += i>>(64-sh) + carry
	}
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// keyBits is the length of the keys that addresses of p's family count
// under.
func keyBits(p netip.Prefix, ipv6Prefix int) int {
	if p.Addr().Is4() {
		return 32
	}
	return ipv6Prefix
}

// forgetSet drops every key overlapping a member of s.
func (d *distTracker) forgetSet(s *overlapSet) {
	d.users.each(func(un *lruNode[string, *distUser]) {
		un.val.keys.each(func(kn *lruNode[netip.Prefix, distKey]) {
			if s.overlaps(kn.key) {
				un.val.keys.remove(kn)
				d.pairs--
			}
		})
	})
}

// ForgetMany drops the tracked failures of jail inside each of ps (after
// manual bans or unbans of them); an empty jail name means every jail. Its
// cost grows with len(ps), not with len(ps) times the tracked addresses,
// unless distributed detection is on or ps holds prefixes wider than the
// jail's keys: then it scans what is tracked once.
func (e *Engine) ForgetMany(jail string, ps []netip.Prefix) {
	if len(ps) == 0 {
		return
	}
	norm := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		norm[i] = prefix.Norm(p)
	}
	s := newOverlapSet(norm)
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.holdLong()()
	for _, js := range e.jails {
		if jail != "" && js.Name != jail {
			continue
		}
		js.tracker.forgetSet(s, js.IPv6Prefix)
		if js.dist != nil {
			js.dist.forgetSet(s)
		}
		for sub := range js.escalated {
			if s.overlaps(sub) {
				delete(js.escalated, sub)
			}
		}
	}
}
