// Package jailcheck finds jails that are enabled but can never fire on this
// host: a watched unit that does not exist, units that wrote nothing to the
// journal lately, or lines none of which the jail's filter matches (the
// classic fail2ban failure of a jail that is on and silent). `jailkeeper
// check` prints what it finds as warnings; they never make a loadable
// configuration fail.
package jailcheck

import (
	"fmt"
	"strings"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/jails"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// Window is how far back the journal is read.
const Window = 24 * time.Hour

// MaxLines bounds the entries read per jail (the most recent ones).
const MaxLines = 20000

// Warning kinds, as `check --json` gives them.
const (
	KindUnitMissing = "unit-missing" // a watched unit does not exist on this host
	KindSilent      = "silent"       // the jail's units wrote nothing in the window
	KindNoMatch     = "no-match"     // they wrote lines, the filter matched none
	KindUnreadable  = "journal-unreadable"
)

// Warning is one finding about one jail.
type Warning struct {
	Kind    string   `json:"kind"`
	Units   []string `json:"units"`
	Message string   `json:"message"`
}

// Jail is what Check needs to know about a jail.
type Jail struct {
	Name   string
	Filter *jails.Filter
	// FilterName names the filter (and mode) in messages, e.g. "sshd (mode normal)".
	FilterName string
	Units      []string
	// Alternatives is true when the units are a built-in filter's default
	// units, which name one service across distributions (ssh.service on
	// Debian, sshd.service on Fedora): only none of them existing is a
	// finding then.
	Alternatives bool
}

// Host answers questions about this machine's units and journal.
type Host interface {
	// UnitExists reports whether unit is known on this host.
	UnitExists(unit string) (bool, error)
	// Messages returns the MESSAGE of up to max of the most recent journal
	// entries of any of units written since since.
	Messages(units []string, since time.Time, max int) ([]string, error)
}

// Check returns the warnings about j (nil when there is none), reading the
// journal from now-Window.
func Check(j Jail, h Host, now time.Time) []Warning {
	units := make([]string, len(j.Units))
	for i, u := range j.Units {
		units[i] = journal.UnitName(u)
	}
	if len(units) == 0 {
		return nil // identifier matching only: nothing to look up
	}
	msgs, jerr := h.Messages(units, now.Add(-Window), MaxLines)
	var out []Warning
	var missing, present []string
	for _, u := range units {
		ok, err := h.UnitExists(u)
		if err != nil {
			out = append(out, Warning{Kind: KindUnitMissing, Units: []string{u}, Message: fmt.Sprintf("cannot tell whether %s exists: %v", u, err)})
			continue
		}
		if ok {
			present = append(present, u)
		} else {
			missing = append(missing, u)
		}
	}
	// A unit that wrote to the journal exists (a transient unit has no
	// unit file), whatever the lookup said.
	if jerr == nil && len(msgs) > 0 && len(present) == 0 {
		present, missing = missing, nil
	}
	switch {
	case j.Alternatives && len(present) == 0:
		out = append(out, Warning{Kind: KindUnitMissing, Units: missing,
			Message: fmt.Sprintf("none of its units (%s) exists on this host: is the service installed, under another unit name (set units:)?", strings.Join(missing, ", "))})
	case !j.Alternatives:
		for _, u := range missing {
			out = append(out, Warning{Kind: KindUnitMissing, Units: []string{u},
				Message: fmt.Sprintf("unit %s does not exist on this host", u)})
		}
	}
	if jerr != nil {
		return append(out, Warning{Kind: KindUnreadable, Units: units,
			Message: fmt.Sprintf("cannot read the journal of %s: %v", strings.Join(units, ", "), jerr)})
	}
	if len(present) == 0 {
		return out // the missing units are the finding
	}
	if len(msgs) == 0 {
		return append(out, Warning{Kind: KindSilent, Units: units,
			Message: fmt.Sprintf("%s wrote nothing to the journal in the last %s: does the service log to the journal (see docs/services.md)?", strings.Join(units, ", "), hours(Window))})
	}
	for _, m := range msgs {
		if j.Filter.Failed(m) {
			return out
		}
	}
	return append(out, Warning{Kind: KindNoMatch, Units: units,
		Message: fmt.Sprintf("%s wrote %d lines in the last %s and filter %s matched none of them: check the filter, its mode and the service's log format (jailkeeper test FILTER --journal --unit %s replays them)",
			strings.Join(units, ", "), len(msgs), hours(Window), j.FilterName, units[0])})
}

func hours(d time.Duration) string { return fmt.Sprintf("%d h", int(d.Hours())) }
