// Package jails turns journal entries into ban decisions. It owns the jail
// model, filters (failregex/ignoreregex with <HOST> and <USER>, anchored,
// in Go's regexp syntax: run by a backtracking matcher with a step budget
// that falls back to Go's linear-time regexp), the failure tracker (maxretry inside findtime, IPv6 prefix
// grouping, distributed attacks, subnet escalation, a memory bound, its
// counts handed out and taken back across restarts: state.go) and the
// decision (bantime, repeat-offender increments). It never touches the
// firewall.
package jails

import (
	"net/netip"
	"time"
)

// Permanent is the Duration of a ban that never expires.
const Permanent time.Duration = -1

// Failure is one failed login or abuse recognised in a journal entry.
type Failure struct {
	Jail string
	Addr netip.Addr
	User string // "" when the filter has no <USER> or the line names none
	Time time.Time
}

// Decision is the engine's verdict: ban Prefix in Jail for Duration
// (Permanent for ever), starting at Time.
type Decision struct {
	Jail     string
	Prefix   netip.Prefix
	Duration time.Duration
	Reason   string // one line for the journal, e.g. "3 failures in 10m0s"
	Time     time.Time
}

// History tells the engine how often a prefix was banned before, for
// bantime increments. The ban table implements it.
type History interface {
	// BanCount returns how many bans of p in jail started at or after since.
	BanCount(jail string, p netip.Prefix, since time.Time) int
	// ActiveWithin returns how many bans in jail, active at now, lie
	// inside subnet (for subnet escalation).
	ActiveWithin(jail string, subnet netip.Prefix, now time.Time) int
}
