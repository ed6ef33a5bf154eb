package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/jailkeeper/jailkeeper/pkg/bans"
)

// How bans are logged. Up to floodLog bans at once get one entry each,
// with the reason. More (a flood decided in one journal batch, a blocklist
// import, a mass expiry) are logged per jail in entries of up to logChunk
// addresses: the message lists them and each is an ADDRESS= field of the
// entry, so `journalctl ADDRESS=…` still finds it. One datagram per ban
// was a quarter of the daemon's CPU in make bench's 5,000-ban burst.
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
	group func(b bans.Ban) string                        // bans with equal groups share an entry
}

var (
	evBanned = banEvent{journal.PriNotice, msgBan,
		func(b bans.Ban) string {
			return fmt.Sprintf("banned %s in jail %s %s: %s", bannedString(b.Prefix), b.Jail, banUntil(b), b.Reason)
		},
		func(jail, tail string, addrs []string) string {
			return fmt.Sprintf("banned %d addresses in jail %s %s: %s", len(addrs), jail, tail, strings.Join(addrs, ", "))
		},
		banUntil}
	evExpired = banEvent{journal.PriInfo, msgExpire,
		func(b bans.Ban) string {
			return fmt.Sprintf("ban of %s in jail %s expired", bannedString(b.Prefix), b.Jail)
		},
		func(jail, _ string, addrs []string) string {
			return fmt.Sprintf("bans of %d addresses in jail %s expired: %s", len(addrs), jail, strings.Join(addrs, ", "))
		},
		func(bans.Ban) string { return "" }}
	evUnbanned = banEvent{journal.PriNotice, msgUnban,
		func(b bans.Ban) string {
			return fmt.Sprintf("unbanned %s in jail %s by an administrator", bannedString(b.Prefix), b.Jail)
		},
		func(jail, _ string, addrs []string) string {
			return fmt.Sprintf("unbanned %d addresses in jail %s by an administrator: %s", len(addrs), jail, strings.Join(addrs, ", "))
		},
		func(bans.Ban) string { return "" }}
)

// banUntil is "until <RFC 3339>" or "permanently".
func banUntil(b bans.Ban) string {
	if b.Permanent() {
		return "permanently"
	}
	return "until " + b.Expires.Format(time.RFC3339)
}

// logBans logs bs as ev says: one entry per ban, or per chunk in a flood.
func (l *logger) logBans(ev banEvent, bs []bans.Ban) {
	if len(bs) <= floodLog {
		for _, b := range bs {
			l.event(ev.pri, ev.msgID, ev.one(b), "JAIL", b.Jail, "ADDRESS", bannedString(b.Prefix))
		}
		return
	}
	type groupKey struct{ jail, tail string }
	var order []groupKey
	groups := map[groupKey][]string{}
	for _, b := range bs {
		k := groupKey{b.Jail, ev.group(b)}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], bannedString(b.Prefix))
	}
	for _, k := range order {
		addrs := groups[k]
		for len(addrs) > 0 {
			n := min(len(addrs), logChunk)
			chunk := addrs[:n]
			addrs = addrs[n:]
			fields := make([]string, 0, 2+2*len(chunk))
			fields = append(fields, "JAIL", k.jail)
			for _, a := range chunk {
				fields = append(fields, "ADDRESS", a)
			}
			l.event(ev.pri, ev.msgID, ev.many(k.jail, k.tail, chunk), fields...)
		}
	}
}
