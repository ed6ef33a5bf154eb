package keeper

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// How bans are logged (and, with the same threshold, announced on D-Bus,
// below). Up to floodLog bans at once get one entry each, with the reason.
// More (a flood decided in one journal batch, a blocklist import, a mass
// expiry) are logged per jail in entries of up to logChunk addresses: the
// message lists them and each is an ADDRESS= field of the entry, so
// `journalctl ADDRESS=…` still finds it. One datagram per ban was a
// quarter of the daemon's CPU in make bench's 5,000-ban burst.
//
// A step of more than floodLog bans made through the API (an import's
// step, a step of UnbanAll; logBulk) is one entry per jail that names the
// count, the caller and the step's first and last address, without an
// ADDRESS= per ban: journald spent 1.8 s of CPU storing the 17,000 entries
// of 64 addresses a 1.1M import wrote, on the two cores the import runs
// on. Each imported ban is in ListBansPage while it lasts, and the
// history's event of the step names its first address and its count.
const (
	floodLog = 8
	logChunk = 64
)

// banEvent says how to log one kind of ban event.
type banEvent struct {
	pri   journal.Priority
	msgID string
	one   func(b bans.Ban) string                        // the message for one ban
	many  func(jail, tail string, addrs []string) string // for a chunk; tail is the group's common part
	// bulk is the message of an API step's entry (logBulk); nil: the
	// kind has none.
	bulk func(n int, jail, tail, origin, first, last string) string
	// byUntil: bans share an entry only if they end at the same second
	// (the entry says until when); otherwise bans of a jail share one.
	byUntil bool
}

var (
	evBanned = banEvent{journal.PriNotice, MsgBan,
		func(b bans.Ban) string {
			return fmt.Sprintf("banned %s in jail %s %s: %s", prefix.Format(b.Prefix), b.Jail, banUntil(b), b.Reason)
		},
		func(jail, tail string, addrs []string) string {
			return fmt.Sprintf("banned %d addresses in jail %s %s: %s", len(addrs), jail, tail, strings.Join(addrs, ", "))
		},
		func(n int, jail, tail, origin, first, last string) string {
			return fmt.Sprintf("banned %d addresses in jail %s %s, by %s: %s … %s", n, jail, tail, origin, first, last)
		},
		true}
	evExpired = banEvent{journal.PriInfo, MsgExpire,
		func(b bans.Ban) string {
			return fmt.Sprintf("ban of %s in jail %s expired", prefix.Format(b.Prefix), b.Jail)
		},
		func(jail, _ string, addrs []string) string {
			return fmt.Sprintf("bans of %d addresses in jail %s expired: %s", len(addrs), jail, strings.Join(addrs, ", "))
		},
		nil,
		false}
	evUnbanned = banEvent{journal.PriNotice, MsgUnban,
		func(b bans.Ban) string {
			return fmt.Sprintf("unbanned %s in jail %s by an administrator", prefix.Format(b.Prefix), b.Jail)
		},
		func(jail, _ string, addrs []string) string {
			return fmt.Sprintf("unbanned %d addresses in jail %s by an administrator: %s", len(addrs), jail, strings.Join(addrs, ", "))
		},
		func(n int, jail, _, origin, first, last string) string {
			return fmt.Sprintf("unbanned %d addresses in jail %s, by %s: %s … %s", n, jail, origin, first, last)
		},
		false}
)

// banUntil is "until <RFC 3339>" or "permanently".
func banUntil(b bans.Ban) string {
	if b.Permanent() {
		return "permanently"
	}
	return "until " + b.Expires.Format(time.RFC3339)
}

// logBans logs bs as ev says: one entry per ban, or per chunk in a flood.
func logBans(l *Logger, ev banEvent, bs []bans.Ban) {
	if len(bs) <= floodLog {
		for _, b := range bs {
			l.Event(ev.pri, ev.msgID, ev.one(b), "JAIL", b.Jail, "ADDRESS", prefix.Format(b.Prefix))
		}
		return
	}
	for _, g := range chunks(bs, ev.byUntil, logChunk) {
		fields := make([]string, 0, 2+2*len(g))
		fields = append(fields, "JAIL", g[0].Jail)
		addrs := make([]string, len(g))
		for i, b := range g {
			addrs[i] = prefix.Format(b.Prefix)
			fields = append(fields, "ADDRESS", addrs[i])
		}
		tail := ""
		if ev.byUntil {
			tail = banUntil(g[0])
		}
		l.Event(ev.pri, ev.msgID, ev.many(g[0].Jail, tail, addrs), fields...)
	}
}

// logBulk logs bs, one step of a change made through the API (an
// import's, UnbanAll's) by origin, as one entry per jail (and, for bans,
// end to the second): its message and its fields COUNT=, ORIGIN=,
// FIRST_ADDRESS= and LAST_ADDRESS= say how many bans, on whose word, and
// the first and last of them in the step's order (the ban table's key
// order). Up to floodLog bans are logged as logBans does, one entry and
// ADDRESS= each.
func logBulk(l *Logger, ev banEvent, bs []bans.Ban, origin string) {
	if len(bs) <= floodLog || ev.bulk == nil {
		logBans(l, ev, bs)
		return
	}
	for _, g := range chunks(bs, ev.byUntil, len(bs)) {
		first, last := prefix.Format(g[0].Prefix), prefix.Format(g[len(g)-1].Prefix)
		tail := ""
		if ev.byUntil {
			tail = banUntil(g[0])
		}
		l.Event(ev.pri, ev.msgID, ev.bulk(len(g), g[0].Jail, tail, origin, first, last),
			"JAIL", g[0].Jail, "COUNT", strconv.Itoa(len(g)), "ORIGIN", origin,
			"FIRST_ADDRESS", first, "LAST_ADDRESS", last)
	}
}

// groupKey is what the bans of one group share: the jail and, when
// grouped by it, the second the ban ends (permanent: the zero time's).
type groupKey struct {
	jail  string
	until int64
}

// chunks splits bs into groups of equal jail (and, with byUntil, equal
// end to the second), in order of first appearance, each cut into chunks
// of at most n. The groups are counted first and filled into one slice:
// a million imported bans are grouped without growing a slice per group.
func chunks(bs []bans.Ban, byUntil bool, n int) [][]bans.Ban {
	keyOf := func(b bans.Ban) groupKey {
		k := groupKey{jail: b.Jail}
		if byUntil {
			k.until = b.Expires.Unix()
		}
		return k
	}
	var order []groupKey
	sizes := map[groupKey]int{}
	for _, b := range bs {
		k := keyOf(b)
		if _, ok := sizes[k]; !ok {
			order = append(order, k)
		}
		sizes[k]++
	}
	// Each group's place in one slice of len(bs), in order.
	at := make(map[groupKey]int, len(order))
	off := 0
	for _, k := range order {
		at[k] = off
		off += sizes[k]
	}
	sorted := make([]bans.Ban, len(bs))
	for _, b := range bs {
		k := keyOf(b)
		sorted[at[k]] = b
		at[k]++
	}
	out := make([][]bans.Ban, 0, len(bs)/n+len(order))
	off = 0
	for _, k := range order {
		for g := sorted[off : off+sizes[k]]; len(g) > 0; {
			m := min(len(g), n)
			out = append(out, g[:m:m])
			g = g[m:]
		}
		off += sizes[k]
	}
	return out
}

// signalChunk bounds the addresses of one BannedMany or UnbannedMany
// signal.
const signalChunk = 1024

// announceBanned emits Banned per ban, or, when more than floodLog bans
// happen at once (the log's threshold), BannedMany per jail: in a
// 5,000-ban burst one signal per ban was the largest single cost of the
// ban path (16 µs each in the daemon, plus dbus-daemon's share).
func announceBanned(a Announcer, bs []bans.Ban) {
	if len(bs) <= floodLog {
		for _, b := range bs {
			_ = a.Banned(b.Jail, b.Prefix, b.Expires, b.Reason)
		}
		return
	}
	for _, g := range chunks(bs, false, signalChunk) {
		ps := make([]netip.Prefix, len(g))
		exps := make([]time.Time, len(g))
		for i, b := range g {
			ps[i], exps[i] = b.Prefix, b.Expires
		}
		_ = a.BannedMany(g[0].Jail, ps, exps)
	}
}

// announceUnbanned is announceBanned for lifted bans.
func announceUnbanned(a Announcer, bs []bans.Ban) {
	if len(bs) <= floodLog {
		for _, b := range bs {
			_ = a.Unbanned(b.Jail, b.Prefix)
		}
		return
	}
	for _, g := range chunks(bs, false, signalChunk) {
		ps := make([]netip.Prefix, len(g))
		for i, b := range g {
			ps[i] = b.Prefix
		}
		_ = a.UnbannedMany(g[0].Jail, ps)
	}
}
