package bans

import (
	"net/netip"
	"time"
)

// How the table holds its bans and histories in memory.
//
// A blocklist import leaves a million bans, and as many histories, in the
// table's maps. Their keys and values hold no pointer — the jail is an
// index into the table's jail names, the prefix its bytes, the times Unix
// nanoseconds, the reason an index into the table's reasons — so the
// garbage collector never scans them (scanning them was a fifth of the
// daemon's CPU in a 1M import, when each held Ban carried five pointers),
// and a map entry takes a third of the memory.

// key is the place of a ban and of a history in the table's maps.
type key struct {
	addr [16]byte // As16 of the prefix's address
	bits uint8
	v6   bool // the address is IPv6 (As16 makes an IPv4 one v4-mapped)
	jail uint16
}

// prefix returns the key's prefix.
func (k key) prefix() netip.Prefix {
	if !k.v6 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(k.addr[12:])), int(k.bits))
	}
	return netip.PrefixFrom(netip.AddrFrom16(k.addr), int(k.bits))
}

// rec is a held ban without its key.
type rec struct {
	start   int64 // Unix nanoseconds
	expires int64 // Unix nanoseconds; 0: permanent
	reason  uint32
}

func (r rec) permanent() bool { return r.expires == 0 }

// expired is Ban.Expired.
func (r rec) expired(now int64) bool { return r.expires != 0 && now >= r.expires }

// nanos returns t in Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// timeOf is the inverse of nanos.
func timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// names are the jails' names and the reasons, each by index. A reason is
// counted by the bans holding it and forgotten when none does; jails are
// few and kept.
type names struct {
	jails   []string
	jailIDs map[string]uint16

	reasons   []string
	reasonIDs map[string]uint32
	refs      []int32
	free      []uint32
}

// jailID returns the index of jail, if it has one.
func (n *names) jailID(jail string) (uint16, bool) {
	id, ok := n.jailIDs[jail]
	return id, ok
}

// addJail returns the index of jail, giving it one if needed.
func (n *names) addJail(jail string) uint16 {
	if id, ok := n.jailIDs[jail]; ok {
		return id
	}
	if n.jailIDs == nil {
		n.jailIDs = map[string]uint16{}
	}
	id := uint16(len(n.jails))
	n.jails = append(n.jails, jail)
	n.jailIDs[jail] = id
	return id
}

// holdReason returns the index of reason and counts one more holder.
func (n *names) holdReason(reason string) uint32 {
	if id, ok := n.reasonIDs[reason]; ok {
		n.refs[id]++
		return id
	}
	if n.reasonIDs == nil {
		n.reasonIDs = map[string]uint32{}
	}
	var id uint32
	if len(n.free) > 0 {
		id = n.free[len(n.free)-1]
		n.free = n.free[:len(n.free)-1]
		n.reasons[id], n.refs[id] = reason, 1
	} else {
		id = uint32(len(n.reasons))
		n.reasons = append(n.reasons, reason)
		n.refs = append(n.refs, 1)
	}
	n.reasonIDs[reason] = id
	return id
}

// releaseReason counts one holder of reason id less.
func (n *names) releaseReason(id uint32) {
	if n.refs[id]--; n.refs[id] == 0 {
		delete(n.reasonIDs, n.reasons[id])
		n.reasons[id] = ""
		n.free = append(n.free, id)
	}
}

// keyOf returns the key of jail and p (masked), if jail has an index.
func (t *Table) keyOf(jail string, p netip.Prefix) (key, bool) {
	id, ok := t.names.jailID(jail)
	if !ok {
		return key{}, false
	}
	return keyWith(id, p), true
}

// keyFor returns the key of jail and p (masked), giving jail an index.
func (t *Table) keyFor(jail string, p netip.Prefix) key {
	return keyWith(t.names.addJail(jail), p)
}

func keyWith(jail uint16, p netip.Prefix) key {
	a := p.Addr()
	return key{addr: a.As16(), bits: uint8(p.Bits()), v6: a.Is6(), jail: jail}
}

// jailOf returns the name of k's jail.
func (t *Table) jailOf(k key) string { return t.names.jails[k.jail] }

// ban returns the Ban k and r hold.
func (t *Table) ban(k key, r rec) Ban {
	return Ban{Jail: t.names.jails[k.jail], Prefix: k.prefix(), Start: timeOf(r.start), Expires: timeOf(r.expires), Reason: t.names.reasons[r.reason]}
}

// starts returns the ban starts of k's history, oldest first (nil: none).
// The slice is the caller's.
func (t *Table) starts(k key) []int64 {
	if s, ok := t.hist1[k]; ok {
		return []int64{s}
	}
	return append([]int64(nil), t.histN[k]...)
}

// setStarts replaces k's history.
func (t *Table) setStarts(k key, starts []int64) {
	switch len(starts) {
	case 0:
		delete(t.hist1, k)
		delete(t.histN, k)
	case 1:
		t.hist1[k] = starts[0]
		delete(t.histN, k)
	default:
		delete(t.hist1, k)
		t.histN[k] = starts
	}
}
