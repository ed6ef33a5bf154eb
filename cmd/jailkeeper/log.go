package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/journal"
)

// Fixed MESSAGE_IDs, one per event kind, so that
// `journalctl -u jailkeeper MESSAGE_ID=…` finds every event of a kind.
const (
	msgStarted  = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a01"
	msgBan      = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a02"
	msgUnban    = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a03"
	msgExpire   = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a04"
	msgRepair   = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a05"
	msgConfig   = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a06"
	msgJournal  = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a07"
	msgStopping = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a08"
	msgWarning  = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a09"
)

// logger writes structured entries to the journal (JAIL=, ADDRESS=,
// MESSAGE_ID=) when it is reachable, and plain lines to stderr otherwise.
type logger struct {
	mu      sync.Mutex
	journal bool
	out     io.Writer
}

func newLogger(out io.Writer) *logger {
	return &logger{journal: journal.Enabled() && os.Getenv("JAILKEEPER_LOG") != "stderr", out: out}
}

// event logs one line. fields are KEY, value pairs (upper-case journal
// field names).
func (l *logger) event(pri journal.Priority, msgID, msg string, fields ...string) {
	vars := map[string]string{"MESSAGE_ID": msgID, "SYSLOG_IDENTIFIER": "jailkeeper"}
	for i := 0; i+1 < len(fields); i += 2 {
		vars[fields[i]] = fields[i+1]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.journal {
		if err := journal.Send(msg, pri, vars); err == nil {
			return
		}
	}
	var extra []string
	for i := 0; i+1 < len(fields); i += 2 {
		extra = append(extra, fields[i]+"="+fields[i+1])
	}
	sort.Strings(extra)
	line := msg
	if len(extra) > 0 {
		line += " [" + strings.Join(extra, " ") + "]"
	}
	fmt.Fprintf(l.out, "<%d>%s\n", pri, line)
}

func (l *logger) infof(msgID, format string, args ...any) {
	l.event(journal.PriInfo, msgID, fmt.Sprintf(format, args...))
}

func (l *logger) warnf(format string, args ...any) {
	l.event(journal.PriWarning, msgWarning, fmt.Sprintf(format, args...))
}

func (l *logger) errorf(msgID, format string, args ...any) {
	l.event(journal.PriErr, msgID, fmt.Sprintf(format, args...))
}
