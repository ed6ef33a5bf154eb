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

// Unitless names entries that journald wrote without _SYSTEMD_UNIT but
// that belong to a unit: journald reads the unit from the sender's cgroup
// when it handles the message, and a short-lived sender (an FTP daemon's
// process for one connection) may have exited by then. Such entries are
// taken only by fields the sender cannot forge: the _UID journald has from
// the kernel (the socket's credentials) must be the unit's own user, and
// SYSLOG_IDENTIFIER must be the daemon's. Any process of that user can
// therefore write them: UID 0 (root) or a system user the daemon alone
// runs as, never an account people log in with.
type Unitless struct {
	Unit       string // the unit the entries are read as (_SYSTEMD_UNIT is empty)
	Identifier string // SYSLOG_IDENTIFIER
	UID        uint32 // _UID
}

// Adopt gives e, read without _SYSTEMD_UNIT from a sender whose _UID was
// uid (hasUID false: the entry has no _UID), the Unit of the first of
// unitless whose identifier and UID it has. An entry with a unit, or that
// matches none, is left as it is.
func (e *Entry) Adopt(uid uint32, hasUID bool, unitless []Unitless) {
	if e.Unit != "" || !hasUID {
		return
	}
	for _, u := range unitless {
		if u.UID == uid && u.Identifier == e.Identifier {
			e.Unit = u.Unit
			return
		}
	}
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
