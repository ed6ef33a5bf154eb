package jails

import (
	"net/netip"
	"time"
)

// distTracker detects distributed attacks on one account: per user, the
// keys (addresses, IPv6 prefixes) that failed against it within the
// window and how often. Its memory is bounded by maxPairs (user, key)
// pairs: when full, the user attacked least recently is dropped.
type distTracker struct {
	cfg      Distributed
	maxPairs int
	pairs    int
	users    *lru[string, *distUser]
	// changed holds the pairs added, updated or dropped since the last
	// TakeState, when recording is on (nil: off). See state.go.
	changed map[distPair]struct{}
}

// distPair is one key failing against one user.
type distPair struct {
	user string
	key  netip.Prefix
}

// mark records that a pair changed, when recording is on.
func (d *distTracker) mark(user string, key netip.Prefix) {
	if d.changed != nil {
		d.changed[distPair{user, key}] = struct{}{}
	}
}

// markUser records that every pair of user changed (it is being dropped).
func (d *distTracker) markUser(un *lruNode[string, *distUser]) {
	if d.changed == nil {
		return
	}
	un.val.keys.each(func(kn *lruNode[netip.Prefix, distKey]) { d.mark(un.key, kn.key) })
}

type distUser struct {
	keys    *lru[netip.Prefix, distKey]
	scanned bool // all keys were checked when the user crossed MinAddresses
}

type distKey struct {
	count int // failures inside the window (reset when the key is banned)
}

// distHit is a key to ban for a distributed attack.
type distHit struct {
	key       netip.Prefix
	addresses int // distinct keys failing against the user in the window
	failures  int
}

func newDistTracker(cfg Distributed, maxPairs int) *distTracker {
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = 1
	}
	if maxPairs <= 0 {
		maxPairs = DefaultMaxTracked
	}
	return &distTracker{cfg: cfg, maxPairs: maxPairs, users: newLRU[string, *distUser]()}
}

// add records a failure of key against user at time at and returns the
// keys to ban now.
func (d *distTracker) add(user string, key netip.Prefix, at time.Time) []distHit {
	now := at.UnixNano()
	horizon := now - int64(d.cfg.Window)
	d.users.pruneBefore(horizon, func(n *lruNode[string, *distUser]) {
		d.markUser(n)
		d.pairs -= n.val.keys.len()
	})
	un := d.users.get(user)
	if un == nil {
		un = d.users.add(user, now)
		un.val = &distUser{keys: newLRU[netip.Prefix, distKey]()}
	}
	d.users.touch(un, now)
	u := un.val
	d.pairs -= u.keys.pruneBefore(horizon, func(kn *lruNode[netip.Prefix, distKey]) { d.mark(user, kn.key) })
	kn := u.keys.get(key)
	if kn == nil {
		for d.pairs >= d.maxPairs && d.users.len() > 0 {
			old := d.users.oldest()
			if old == un {
				// This user alone fills the tracker: drop its oldest key.
				if o := u.keys.oldest(); o != nil {
					d.mark(user, o.key)
					u.keys.remove(o)
					d.pairs--
					continue
				}
				break
			}
			d.markUser(old)
			d.pairs -= old.val.keys.len()
			d.users.remove(old)
		}
		kn = u.keys.add(key, now)
		d.pairs++
	}
	u.keys.touch(kn, now)
	kn.val.count++
	d.mark(user, key)
	n := u.keys.len()
	if n < d.cfg.MinAddresses {
		u.scanned = false
		return nil
	}
	var hits []distHit
	if !u.scanned {
		u.scanned = true
		u.keys.each(func(k *lruNode[netip.Prefix, distKey]) {
			if k.val.count >= d.cfg.MaxRetry {
				hits = append(hits, distHit{key: k.key, addresses: n, failures: k.val.count})
				k.val.count = 0
				d.mark(user, k.key)
			}
		})
		return hits
	}
	if kn.val.count >= d.cfg.MaxRetry {
		hits = append(hits, distHit{key: key, addresses: n, failures: kn.val.count})
		kn.val.count = 0
	}
	return hits
}

// reset zeroes the failure count of key in every user (it was banned);
// the key still counts as taking part.
func (d *distTracker) reset(key netip.Prefix) {
	d.users.each(func(un *lruNode[string, *distUser]) {
		if kn := un.val.keys.get(key); kn != nil {
			kn.val.count = 0
			d.mark(un.key, key)
		}
	})
}

// forget drops every key overlapping p.
func (d *distTracker) forget(p netip.Prefix) {
	d.users.each(func(un *lruNode[string, *distUser]) {
		un.val.keys.each(func(kn *lruNode[netip.Prefix, distKey]) {
			if kn.key.Overlaps(p) {
				d.mark(un.key, kn.key)
				un.val.keys.remove(kn)
				d.pairs--
			}
		})
	})
}
