// Package actions is `jailkeeper actions`, the companion that acts on the
// daemon's bans beyond the firewall: mail (with whois and the journal lines
// that caused the ban, per ban or as a digest), webhooks and commands. It
// is a pure D-Bus client of the daemon: it follows the Banned, BannedMany,
// Unbanned and UnbannedMany signals, reconciles with ListBansPage on start and
// whenever the daemon (re)appears on the bus, and records in its own state
// store which bans it has seen and which (ban, action) jobs are still to
// do, so that a restart neither misses a ban nor acts on one twice.
package actions

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// Kind is what happened to a ban.
type Kind uint8

// The two kinds of event.
const (
	Ban Kind = iota + 1
	Unban
)

func (k Kind) String() string {
	switch k {
	case Ban:
		return "ban"
	case Unban:
		return "unban"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one ban or unban the daemon announced (or that reconciliation
// with ListBansPage found).
type Event struct {
	Kind   Kind
	Jail   string
	Prefix netip.Prefix
	// Start is when the ban began: from ListBansPage, or when the signal
	// arrived. Zero for an unban.
	Start time.Time
	// Expires is when the ban ends; zero for a permanent ban.
	Expires time.Time
	Reason  string
	// Seen is when the actions service learnt of the event (latency).
	Seen time.Time
}

// BanTime is the ban's length; negative for a permanent ban.
func (e Event) BanTime() time.Duration {
	if e.Expires.IsZero() {
		return -1
	}
	return e.Expires.Sub(e.Start).Round(time.Second)
}

// Address is the banned prefix as jailkeeper prints every address: a bare
// address for a single host, CIDR otherwise.
func (e Event) Address() string { return prefix.Format(e.Prefix) }

// Fields returns the event's placeholder values (see config.Placeholders).
func (e Event) Fields(host, action string) map[string]string {
	exp, bt := "permanent", "permanent"
	if !e.Expires.IsZero() {
		exp = e.Expires.UTC().Format(time.RFC3339)
		bt = e.BanTime().String()
	}
	if e.Kind == Unban {
		exp, bt = "", ""
	}
	return map[string]string{
		"event": e.Kind.String(), "jail": e.Jail, "address": e.Address(), "expires": exp,
		"bantime": bt, "reason": e.Reason, "host": host, "action": action,
	}
}
