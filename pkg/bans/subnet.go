package bans

import "net/netip"

// The subnet index behind ActiveWithin (subnet escalation asks, for each
// decision, how many bans of a jail lie inside the decided address's /24 or
// /64). A scan of every ban per question made each decision cost the
// table's size (a million bans: tens of milliseconds per decision, under
// the table's lock). An index is built for a jail, a prefix length and a
// family on their first question and kept up to date by every change of
// the active bans; only the few combinations the jails' configuration
// asks about ever get one.

// subnetIndexKey names one index.
type subnetIndexKey struct {
	jail uint16
	bits int
	v6   bool
}

// subnetIndex maps a subnet (masked to the index's length) to the prefixes
// of the jail's active bans inside it that are at least as long.
type subnetIndex struct {
	bits    int
	members map[netip.Prefix][]netip.Prefix
}

// subnetOf returns the subnet of p in ix and whether p belongs in ix (its
// family and at least ix.bits long).
func (ix *subnetIndex) subnetOf(p netip.Prefix, v6 bool) (netip.Prefix, bool) {
	if p.Addr().Is6() != v6 || p.Bits() < ix.bits {
		return netip.Prefix{}, false
	}
	sub, err := p.Addr().Prefix(ix.bits)
	return sub, err == nil
}

// index returns the index of jail for subnets of bits in the family v6,
// building it on first use; the caller holds t.mu.
func (t *Table) index(jail uint16, bits int, v6 bool) *subnetIndex {
	ik := subnetIndexKey{jail, bits, v6}
	if ix := t.subnets[ik]; ix != nil {
		return ix
	}
	ix := &subnetIndex{bits: bits, members: map[netip.Prefix][]netip.Prefix{}}
	for k := range t.active {
		if k.jail != jail {
			continue
		}
		p := k.prefix()
		if sub, ok := ix.subnetOf(p, v6); ok {
			ix.members[sub] = append(ix.members[sub], p)
		}
	}
	if t.subnets == nil {
		t.subnets = map[subnetIndexKey]*subnetIndex{}
	}
	t.subnets[ik] = ix
	return ix
}

// indexAdd records a new key of active in the indexes of its jail; the
// caller holds t.mu.
func (t *Table) indexAdd(k key) {
	for ik, ix := range t.subnets {
		if ik.jail != k.jail {
			continue
		}
		p := k.prefix()
		if sub, ok := ix.subnetOf(p, ik.v6); ok {
			ix.members[sub] = append(ix.members[sub], p)
		}
	}
}

// indexRemove drops a key removed from active from the indexes of its
// jail; the caller holds t.mu.
func (t *Table) indexRemove(k key) {
	for ik, ix := range t.subnets {
		if ik.jail != k.jail {
			continue
		}
		kp := k.prefix()
		sub, ok := ix.subnetOf(kp, ik.v6)
		if !ok {
			continue
		}
		ps := ix.members[sub]
		for i, p := range ps {
			if p == kp {
				ps[i] = ps[len(ps)-1]
				ps = ps[:len(ps)-1]
				break
			}
		}
		if len(ps) == 0 {
			delete(ix.members, sub)
		} else {
			ix.members[sub] = ps
		}
	}
}
