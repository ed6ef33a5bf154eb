package actions

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/journal"
)

// Fixed MESSAGE_IDs of the actions service, one per kind of entry, so that
// `journalctl -u jailkeeper-actions MESSAGE_ID=…` finds every entry of a kind.
const (
	MsgStarted = "5b0c7e1d2a9f4e3c8d6b4a2f1e0d9c01" // started, stopping, configuration
	MsgDone    = "5b0c7e1d2a9f4e3c8d6b4a2f1e0d9c02" // an action succeeded
	MsgFailed  = "5b0c7e1d2a9f4e3c8d6b4a2f1e0d9c03" // an action failed for good (after its retries)
	MsgDropped = "5b0c7e1d2a9f4e3c8d6b4a2f1e0d9c04" // queue overflow, rate limit, no abuse contact
	MsgOutput  = "5b0c7e1d2a9f4e3c8d6b4a2f1e0d9c05" // a line an exec action's command wrote
	MsgBus     = "5b0c7e1d2a9f4e3c8d6b4a2f1e0d9c06" // bus and daemon: connect, reconcile, restart
	MsgRetry   = "5b0c7e1d2a9f4e3c8d6b4a2f1e0d9c07" // an attempt failed, another follows
)

// Logger writes the service's entries.
type Logger interface {
	// Log writes one entry; fields are upper-case journal field names
	// (JAIL, ADDRESS, ACTION, …) and their values.
	Log(pri journal.Priority, msgID, msg string, fields map[string]string)
}

// JournalLogger writes to the journal when it is reachable and
// JAILKEEPER_LOG is not "stderr", else lines to Out with a <N> priority
// prefix and the fields in brackets.
type JournalLogger struct {
	mu      sync.Mutex
	journal bool
	Out     io.Writer
}

// NewJournalLogger returns a logger for the running process.
func NewJournalLogger(out io.Writer) *JournalLogger {
	return &JournalLogger{journal: journal.Enabled() && os.Getenv("JAILKEEPER_LOG") != "stderr", Out: out}
}

// Log implements Logger.
func (l *JournalLogger) Log(pri journal.Priority, msgID, msg string, fields map[string]string) {
	if l.journal {
		vars := make(map[string]string, len(fields)+2)
		for k, v := range fields {
			vars[k] = v
		}
		vars["MESSAGE_ID"] = msgID
		vars["SYSLOG_IDENTIFIER"] = "jailkeeper-actions"
		if journal.Send(msg, pri, vars) == nil {
			return
		}
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>%s", pri, msg)
	if len(keys) > 0 {
		b.WriteString(" [")
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s=%s", k, fields[k])
		}
		b.WriteString("]")
	}
	b.WriteByte('\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.Out, b.String())
}
