// Package journal reads the systemd journal for jailkeeper: it matches
// entries by trusted _SYSTEMD_UNIT= (and, only where a jail opts in, by
// SYSLOG_IDENTIFIER=), follows new entries, and saves and resumes the cursor.
// It also reads offline input (journalctl -o json lines, syslog lines, bare
// messages) for `jailkeeper test`. It knows nothing about regexes.
package journal

import "time"

// Entry is one journal entry as it leaves the reader: a value, safe to pass
// between goroutines.
type Entry struct {
	Unit       string    // _SYSTEMD_UNIT, "" when the writer was in no unit
	Identifier string    // SYSLOG_IDENTIFIER
	Message    string    // MESSAGE
	Time       time.Time // _SOURCE_REALTIME_TIMESTAMP, else the receive time
	PID        int       // _PID, 0 when absent (the reader takes it only when it comes before the fields it needs; nothing uses it)
	Cursor     string    // the entry's cursor; the Reader sets it on the last entry of each batch only, offline input from __CURSOR
}
