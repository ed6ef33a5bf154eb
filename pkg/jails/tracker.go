package jails

import (
	"hash/maphash"
	"net/netip"
	"time"
)

// DefaultMaxTracked is the number of keys a Tracker keeps when the jail
// sets no max_tracked.
const DefaultMaxTracked = 1_000_000

// Tracker counts failures per key (an IPv4 /32 or an IPv6 prefix) inside a
// sliding window. It holds at most maxTracked keys: when full, the key
// whose last failure is oldest is evicted, so a flood of unique (spoofed)
// addresses costs bounded memory. It is not safe for concurrent use.
//
// Lines that belong to one connection are counted once: a failure with
// the same address and source port as the previous one of its key, but
// recognised by a different regex ("Invalid user …", then "Failed password
// … port 4711", then "Connection closed by invalid user … port 4711"), is
// not counted again, while repeated lines of one regex (three "Failed
// password" in one connection) each count.
//
// Some services write two lines for one failed attempt that share no
// port: dovecot's PAM passdb logs "pam_unix(dovecot:auth): authentication
// failure; … ruser=U rhost=H", and its login process logs "imap-login:
// Disconnected (auth failed, 1 attempts …): user=<U>, … rip=H". A failure
// that names the same user and address as the last counted failure of
// its key, recognised by a different regex, within pairWindow of it, and
// where one of the two has no port, is that attempt's second line and is
// not counted (see AddUser). Each other regex pairs once per counted
// failure, so a client alternating two kinds of lines still has every
// second one counted. Lines without a user never pair.
type Tracker struct {
	maxRetry   int
	findTime   time.Duration
	maxTracked int
	keys       *lru[netip.Prefix, trackEntry]
	evicted    int
	active     int // keys with at least one counted failure
	// changed holds the keys added, updated or dropped since the last
	// takeChanges, when recording is on (nil: off). See state.go.
	changed map[netip.Prefix]struct{}
}

// banned as trackEntry.lastRegex marks a connection that led to a ban.
const banned = -2

type trackEntry struct {
	times     []int64 // counted failures inside the window, oldest first
	lastAddr  netip.Addr
	lastPort  uint16
	lastRegex int

	// The last counted failure that named a user, for pairing the two
	// lines of one attempt: when, which regex, a hash of the user (0: none),
	// the source port.
	pairAt    int64
	pairUser  uint64
	pairSeen  uint64 // regexes (< 64) already paired with it
	pairRegex int32
	pairPort  uint16
}

// pairWindow is how long after a counted failure the other line of the
// same attempt may arrive. Dovecot writes its login process's line when
// the client disconnects, after its authentication failure delay (2 s by
// default; PAM adds its own): 4–8 s after the PAM line in the e2e test.
const pairWindow = 15 * time.Second

// absDiff returns |a-b|.
func absDiff(a, b int64) int64 {
	if a < b {
		return b - a
	}
	return a - b
}

// userSeed seeds the user hashes of the pairing rule.
var userSeed = maphash.MakeSeed()

// NewTracker returns a Tracker for failures of one jail; maxTracked <= 0
// means DefaultMaxTracked.
func NewTracker(maxRetry int, findTime time.Duration, maxTracked int) *Tracker {
	if maxTracked <= 0 {
		maxTracked = DefaultMaxTracked
	}
	if maxRetry < 1 {
		maxRetry = 1
	}
	return &Tracker{maxRetry: maxRetry, findTime: findTime, maxTracked: maxTracked, keys: newLRU[netip.Prefix, trackEntry]()}
}

// retune applies new settings to a tracker taken over by a reloaded
// engine. Failures outside the new findtime leave at the next Add; a lower
// max_tracked evicts the oldest keys at the next new key.
func (t *Tracker) retune(maxRetry int, findTime time.Duration, maxTracked int) {
	if maxTracked <= 0 {
		maxTracked = DefaultMaxTracked
	}
	if maxRetry < 1 {
		maxRetry = 1
	}
	t.maxRetry, t.findTime, t.maxTracked = maxRetry, findTime, maxTracked
}

// Add records a failure of addr (grouped under key) at time at, seen by
// failregex regex with source port port (0 if unknown). It returns the
// number of counted failures of key inside the window, and whether this
// one was counted.
func (t *Tracker) Add(key netip.Prefix, addr netip.Addr, port uint16, regex int, at time.Time) (n int, counted bool) {
	return t.AddUser(key, addr, port, regex, "", at)
}

// AddUser is Add for a failure that names user ("" if none): a failure
// that is another line of the last counted failure's attempt (same
// address and user, a regex not yet paired with it, within pairWindow,
// one of the two without a port) is not counted.
func (t *Tracker) AddUser(key netip.Prefix, addr netip.Addr, port uint16, regex int, user string, at time.Time) (n int, counted bool) {
	now := at.UnixNano()
	horizon := now - int64(t.findTime)
	// Keys whose last failure left the window are dropped, oldest first.
	t.keys.pruneBefore(horizon, t.dropped)
	node := t.keys.get(key)
	if node == nil {
		for t.keys.len() >= t.maxTracked {
			old := t.keys.oldest()
			t.keys.remove(old)
			t.dropped(old)
			t.evicted++
		}
		node = t.keys.add(key, now)
		node.val.lastRegex = -1
	}
	t.mark(key)
	e := &node.val
	wasActive := len(e.times) > 0
	// Slide the window.
	drop := 0
	for drop < len(e.times) && e.times[drop] < horizon {
		drop++
	}
	if drop > 0 {
		e.times = append(e.times[:0], e.times[drop:]...)
	}
	if wasActive && len(e.times) == 0 {
		t.active--
	}
	sameConn := port != 0 && e.lastPort == port && e.lastAddr == addr
	t.keys.touch(node, now)
	if sameConn && (e.lastRegex == banned || e.lastRegex != regex) {
		if e.lastRegex != banned {
			e.lastRegex = regex
		}
		return len(e.times), false
	}
	var uh uint64
	if user != "" {
		uh = maphash.String(userSeed, user) | 1 // never 0, the "no user" mark
	}
	if uh != 0 && uh == e.pairUser && regex >= 0 && regex < 64 && int32(regex) != e.pairRegex &&
		e.pairSeen&(1<<regex) == 0 && addr == e.lastAddr &&
		(port == 0 || e.pairPort == 0) && absDiff(now, e.pairAt) <= int64(pairWindow) {
		e.pairSeen |= 1 << regex
		// The second line of the attempt counted last. It becomes the
		// connection's last line, so that its closing lines (same port)
		// do not count either.
		if e.lastRegex != banned {
			e.lastPort, e.lastRegex = port, regex
		} else if port != 0 {
			e.lastPort = port
		}
		return len(e.times), false
	}
	e.lastAddr, e.lastPort, e.lastRegex = addr, port, regex
	if uh != 0 {
		e.pairAt, e.pairUser, e.pairRegex, e.pairPort, e.pairSeen = now, uh, int32(regex), port, 0
	} else {
		e.pairUser = 0
	}
	if len(e.times) >= t.maxRetry {
		e.times = append(e.times[:0], e.times[1:]...)
	}
	if e.times == nil {
		// Room for maxretry failures, but not more than a few up front: a
		// maxretry of a million must not cost 8 MB per address.
		e.times = make([]int64, 0, min(t.maxRetry, 8))
	}
	if len(e.times) == 0 {
		t.active++
	}
	e.times = append(e.times, now)
	return len(e.times), true
}

// Count returns the counted failures of key inside the window ending at.
func (t *Tracker) Count(key netip.Prefix, at time.Time) int {
	node := t.keys.get(key)
	if node == nil {
		return 0
	}
	horizon := at.UnixNano() - int64(t.findTime)
	n := 0
	for _, ts := range node.val.times {
		if ts >= horizon {
			n++
		}
	}
	return n
}

// Reset drops the counted failures of key (after a ban of it). The key's
// last connection is remembered until it leaves the window, so the
// closing lines of the connection that caused the ban do not count again.
func (t *Tracker) Reset(key netip.Prefix) {
	node := t.keys.get(key)
	if node == nil {
		return
	}
	t.mark(key)
	if len(node.val.times) > 0 {
		t.active--
	}
	node.val.times = node.val.times[:0]
	node.val.lastRegex = banned // every later line of this connection is the same connection
}

func (t *Tracker) dropped(node *lruNode[netip.Prefix, trackEntry]) {
	t.mark(node.key)
	if len(node.val.times) > 0 {
		t.active--
	}
}

// Forget drops every key that overlaps p and returns how many it dropped.
func (t *Tracker) Forget(p netip.Prefix) int {
	n := 0
	t.keys.each(func(node *lruNode[netip.Prefix, trackEntry]) {
		if node.key.Overlaps(p) {
			t.keys.remove(node)
			t.dropped(node)
			n++
		}
	})
	return n
}

// Len returns the number of keys with at least one counted failure inside
// the window (as of the last Add).
func (t *Tracker) Len() int { return t.active }

// Evicted returns how many keys were evicted because the tracker was full.
func (t *Tracker) Evicted() int { return t.evicted }

// mark records that key changed, when recording is on.
func (t *Tracker) mark(key netip.Prefix) {
	if t.changed != nil {
		t.changed[key] = struct{}{}
	}
}
