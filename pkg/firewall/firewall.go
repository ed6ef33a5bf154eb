// Package firewall owns the kernel side of jailkeeper: the Backend interface
// and its implementations (iptables+ipset, nftables, none, and an in-memory
// fake for unit tests). A backend builds the layout — one jump at the top of
// INPUT into jailkeeper's own chain, the whitelist checked first, then the
// sets of banned prefixes of each jail and family — and adds, removes, lists and
// verifies bans. It never decides who to ban.
package firewall

import (
	"net/netip"
	"time"
)

// Protocol is the transport protocol a jail's rules match.
type Protocol string

// Protocols a jail may name.
const (
	ProtoTCP Protocol = "tcp"
	ProtoUDP Protocol = "udp"
	ProtoAll Protocol = "all"
)

// Action is what happens to a packet from a banned source.
type Action string

// Actions a jail may name. Reject answers TCP with a reset and anything
// else with ICMP port-unreachable; Drop discards silently.
const (
	ActionReject Action = "reject"
	ActionDrop   Action = "drop"
)

// JailRules is the part of a jail's configuration the firewall needs.
type JailRules struct {
	Name     string   // jail name: see CheckJailName
	Ports    []uint16 // empty = all ports
	Protocol Protocol // empty = tcp
	Action   Action   // empty = reject
}

// Layout is everything the backend builds at start and keeps in place.
type Layout struct {
	Jails     []JailRules
	Whitelist []netip.Prefix // exempt from every ban, checked first
	// WhitelistAccept accepts whitelisted sources at the top of INPUT
	// instead of only returning from jailkeeper's chain.
	WhitelistAccept bool
}

// Ban is one banned prefix in one jail. A single address is a /32 or /128
// prefix. A zero Expires means permanent.
type Ban struct {
	Jail    string
	Prefix  netip.Prefix
	Expires time.Time
}

// Backend is the kernel firewall as jailkeeper uses it. Implementations are
// safe for use by one goroutine at a time; the daemon serialises calls.
type Backend interface {
	// Name is the backend's configuration name ("iptables", "nftables", …).
	Name() string
	// Setup builds (or rebuilds) the whole layout and loads bans in one
	// batch. It is idempotent: calling it on an existing layout replaces the
	// layout's contents with exactly what is given.
	Setup(l Layout, bans []Ban) error
	// Add bans prefixes, each with a kernel timeout matching its expiry.
	// Adding a prefix already present refreshes its timeout.
	Add(bans []Ban) error
	// Remove lifts bans. Removing a ban that is not present is not an error.
	Remove(bans []Ban) error
	// List returns the bans the kernel holds now.
	List() ([]Ban, error)
	// Verify compares the kernel with the layout and the given bans and
	// repairs any drift. It returns one human-readable line per problem
	// found (nil when everything was in place) and an error only when the
	// repair itself failed.
	Verify(l Layout, bans []Ban) (found []string, err error)
	// Close releases handles and leaves the layout and bans in the kernel,
	// so a restart leaves no unprotected window.
	Close() error
	// Teardown removes everything the backend created.
	Teardown() error
}
