// Package journal holds what jailkeeper's stages share about journal
// entries, without cgo: the Entry type, unit-name normalisation, journal
// cursor helpers, and offline input (journalctl -o json lines, syslog
// lines, bare messages) for `jailkeeper test`. The live reader, a cgo
// binding to libsystemd's sd-journal, is the subpackage sdjournal. It knows
// nothing about regexes.
package journal

import (
	"strings"
	"time"
)

// Entry is one journal entry as it leaves the reader: a value, safe to pass
// between goroutines.
type Entry struct {
	Unit       string    // _SYSTEMD_UNIT, "" when the writer was in no unit
	Identifier string    // SYSLOG_IDENTIFIER
	Message    string    // MESSAGE
	Time       time.Time // _SOURCE_REALTIME_TIMESTAMP, else the receive time
	Cursor     string    // the entry's cursor; the Reader sets it on the last entry of each batch only, offline input from __CURSOR
}

// UnitName returns the unit name a match uses: name itself when it ends in
// a unit type suffix (.service, .socket, …), else name + ".service".
func UnitName(name string) string {
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		switch name[i+1:] {
		case "service", "socket", "scope", "slice", "mount", "automount",
			"swap", "target", "path", "timer", "device":
			return name
		}
	}
	return name + ".service"
}
