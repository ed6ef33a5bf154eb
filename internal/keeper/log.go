package keeper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/coreos/go-systemd/v22/journal"
)

// Fixed MESSAGE_IDs, one per event kind, so that
// `journalctl -u jailkeeper MESSAGE_ID=…` finds every event of a kind.
const (
	MsgStarted  = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a01"
	MsgBan      = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a02"
	MsgUnban    = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a03"
	MsgExpire   = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a04"
	MsgRepair   = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a05"
	MsgConfig   = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a06"
	MsgJournal  = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a07"
	MsgStopping = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a08"
	MsgWarning  = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a09"
	// MsgSave: bans that could not be saved (disk full…), and once they are.
	MsgSave = "8c2e4fd3b1a24a6f9d1b6a0f3c5e7a0a"
)

// Logger writes structured entries to the journal (JAIL=, ADDRESS=,
// MESSAGE_ID=) when it is reachable, and plain lines to stderr otherwise.
// It speaks journald's native protocol itself over one connected datagram
// socket: go-systemd's journal.Send takes a map (no repeated fields, which
// an entry naming many addresses needs) and resolves the socket's path on
// every send, which showed in make bench's profile.
type Logger struct {
	mu      sync.Mutex
	journal bool
	socket  string        // journalSocket, or a test's
	conn    *net.UnixConn // nil until the first send, and after an error
	buf     []byte
	out     io.Writer
}

// journalSocket is journald's native protocol socket.
const journalSocket = "/run/systemd/journal/socket"

func NewLogger(out io.Writer) *Logger {
	return &Logger{journal: journal.Enabled() && os.Getenv("JAILKEEPER_LOG") != "stderr", socket: journalSocket, out: out}
}

// Event logs one line. fields are KEY, value pairs (upper-case journal
// field names); a key may repeat.
func (l *Logger) Event(pri journal.Priority, msgID, msg string, fields ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.journal && l.send(pri, msgID, msg, fields) == nil {
		return
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

// send writes one entry to journald, dialling (again) when needed: a
// journald restart breaks the connected socket. An entry too large for a
// datagram goes through go-systemd, which passes it in a memfd (without
// repeated fields: the last value of a key wins there).
func (l *Logger) send(pri journal.Priority, msgID, msg string, fields []string) error {
	b := l.buf[:0]
	b = appendJournalField(b, "MESSAGE", msg)
	b = appendJournalField(b, "PRIORITY", strconv.Itoa(int(pri)))
	b = appendJournalField(b, "MESSAGE_ID", msgID)
	b = appendJournalField(b, "SYSLOG_IDENTIFIER", "jailkeeper")
	for i := 0; i+1 < len(fields); i += 2 {
		b = appendJournalField(b, fields[i], fields[i+1])
	}
	l.buf = b
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if l.conn == nil {
			if l.conn, err = net.DialUnix("unixgram", nil, &net.UnixAddr{Name: l.socket, Net: "unixgram"}); err != nil {
				l.conn = nil
				return err
			}
			_ = l.conn.SetWriteBuffer(8 << 20)
		}
		if _, err = l.conn.Write(b); err == nil {
			return nil
		}
		if errors.Is(err, syscall.EMSGSIZE) || errors.Is(err, syscall.ENOBUFS) {
			vars := map[string]string{"MESSAGE_ID": msgID, "SYSLOG_IDENTIFIER": "jailkeeper"}
			for i := 0; i+1 < len(fields); i += 2 {
				vars[fields[i]] = fields[i+1]
			}
			return journal.Send(msg, pri, vars)
		}
		_ = l.conn.Close()
		l.conn = nil
	}
	return err
}

// appendJournalField appends KEY=value in journald's native format; a
// value with a newline uses the length-prefixed binary form.
func appendJournalField(b []byte, key, value string) []byte {
	b = append(b, key...)
	if !strings.ContainsRune(value, '\n') {
		b = append(b, '=')
		b = append(b, value...)
		return append(b, '\n')
	}
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, '\n')
}

func (l *Logger) Infof(msgID, format string, args ...any) {
	l.Event(journal.PriInfo, msgID, fmt.Sprintf(format, args...))
}

func (l *Logger) Warnf(format string, args ...any) {
	l.Event(journal.PriWarning, MsgWarning, fmt.Sprintf(format, args...))
}

func (l *Logger) Errorf(msgID, format string, args ...any) {
	l.Event(journal.PriErr, msgID, fmt.Sprintf(format, args...))
}

// ToJournal says whether entries go to the journal (else to stderr).
func (l *Logger) ToJournal() bool { return l.journal }
