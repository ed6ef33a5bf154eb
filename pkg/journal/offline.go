package journal

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseLine turns one line of offline input into an Entry. It accepts:
//
//   - `journalctl -o json` lines (an object with MESSAGE, _SYSTEMD_UNIT,
//     SYSLOG_IDENTIFIER, __REALTIME_TIMESTAMP, __CURSOR …; MESSAGE
//     may be a string or, for binary data, an array of bytes);
//   - classic syslog lines, `Nov 22 10:00:00 host ident[123]: message`
//     (also journalctl's short format) and rsyslog's
//     `2025-03-01T10:00:00.123456+00:00 host ident[123]: message`: the
//     prefix is stripped and becomes Identifier and Time;
//   - the log files FTP daemons write themselves: vsftpd's
//     `Sun Nov 29 09:38:16 2026 [pid 1] …` (the date is stripped) and
//     proftpd's SystemLog `2026-11-29 09:39:50,167 host proftpd[1] …`
//     (date, host and tag, which has no colon there, are stripped);
//   - anything else: a bare message.
//
// A line starting with "{" that is not a JSON object with a MESSAGE is an
// error. Offline entries carry no trusted unit unless the JSON has one.
func ParseLine(line string) (Entry, error) {
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "{") {
		return parseJSON(line)
	}
	if e, ok := parseSyslog(line); ok {
		return e, nil
	}
	return Entry{Message: line}, nil
}

func parseJSON(line string) (Entry, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return Entry{}, fmt.Errorf("parsing journal JSON: %w", err)
	}
	raw, ok := m["MESSAGE"]
	if !ok {
		return Entry{}, fmt.Errorf("journal JSON has no MESSAGE field")
	}
	msg, err := jsonField(raw)
	if err != nil {
		return Entry{}, fmt.Errorf("journal JSON field MESSAGE: %w", err)
	}
	e := Entry{Message: msg}
	str := func(k string) string {
		if r, ok := m[k]; ok {
			s, _ := jsonField(r)
			return s
		}
		return ""
	}
	e.Unit = str("_SYSTEMD_UNIT")
	e.Identifier = str("SYSLOG_IDENTIFIER")
	e.Cursor = str("__CURSOR")
	for _, k := range []string{"_SOURCE_REALTIME_TIMESTAMP", "__REALTIME_TIMESTAMP"} {
		if us, err := strconv.ParseInt(str(k), 10, 64); err == nil && us > 0 {
			e.Time = time.UnixMicro(us)
			break
		}
	}
	return e, nil
}

// jsonField decodes a journal JSON value: a string, null, or an array of
// bytes (journalctl's form for non-UTF-8 data).
func jsonField(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var b []byte
	var nums []int
	if err := json.Unmarshal(raw, &nums); err == nil {
		for _, n := range nums {
			if n < 0 || n > 255 {
				return "", fmt.Errorf("byte %d out of range", n)
			}
			b = append(b, byte(n))
		}
		return string(b), nil
	}
	if string(raw) == "null" {
		return "", nil
	}
	return "", fmt.Errorf("neither a string nor an array of bytes: %.40s", raw)
}

var months = map[string]time.Month{
	"Jan": time.January, "Feb": time.February, "Mar": time.March, "Apr": time.April,
	"May": time.May, "Jun": time.June, "Jul": time.July, "Aug": time.August,
	"Sep": time.September, "Oct": time.October, "Nov": time.November, "Dec": time.December,
}

// parseSyslog recognises "TIMESTAMP HOST TAG: MESSAGE" with an RFC 3164 or
// RFC 3339 timestamp; TAG is "ident" or "ident[pid]".
func parseSyslog(line string) (Entry, bool) {
	var e Entry
	rest := line
	if e, ok := parseDaemonFile(line); ok {
		return e, true
	}
	switch {
	case len(line) >= 16 && months[line[:3]] != 0 && line[3] == ' ':
		// "Nov 22 10:00:00 " (day may be space-padded: "Nov  2")
		t, err := time.ParseInLocation("Jan _2 15:04:05", line[:15], time.Local)
		if err != nil || line[15] != ' ' {
			return Entry{}, false
		}
		now := time.Now()
		t = t.AddDate(now.Year(), 0, 0)
		if t.After(now.Add(24 * time.Hour)) { // December's lines read in January
			t = t.AddDate(-1, 0, 0)
		}
		e.Time = t
		rest = line[16:]
	case len(line) > 20 && line[4] == '-' && line[7] == '-' && line[10] == 'T':
		sp := strings.IndexByte(line, ' ')
		if sp < 0 {
			return Entry{}, false
		}
		t, err := time.Parse(time.RFC3339Nano, line[:sp])
		if err != nil {
			return Entry{}, false
		}
		e.Time = t
		rest = line[sp+1:]
	default:
		return Entry{}, false
	}
	// HOST
	sp := strings.IndexByte(rest, ' ')
	if sp <= 0 {
		return Entry{}, false
	}
	rest = rest[sp+1:]
	// TAG: up to ": "
	colon := strings.Index(rest, ": ")
	if colon <= 0 {
		if strings.HasSuffix(rest, ":") { // empty message
			colon = len(rest) - 1
		} else {
			return Entry{}, false
		}
	}
	tag := rest[:colon]
	if strings.ContainsAny(tag, " \t") {
		return Entry{}, false
	}
	if i := strings.IndexByte(tag, '['); i > 0 && strings.HasSuffix(tag, "]") {
		tag = tag[:i]
	}
	e.Identifier = tag
	if colon+2 <= len(rest) {
		e.Message = rest[colon+2:]
	}
	return e, true
}

// parseDaemonFile reads the lines of the log files vsftpd and proftpd
// write themselves (see ParseLine).
func parseDaemonFile(line string) (Entry, bool) {
	const ctime = "Mon Jan _2 15:04:05 2006"
	if len(line) > len(ctime) && line[3] == ' ' && line[len(ctime)] == ' ' {
		if t, err := time.ParseInLocation(ctime, line[:len(ctime)], time.Local); err == nil {
			return Entry{Time: t, Message: line[len(ctime)+1:]}, true
		}
	}
	const iso = "2006-01-02 15:04:05,000"
	if len(line) <= len(iso) || line[10] != ' ' || line[19] != ',' || line[len(iso)] != ' ' {
		return Entry{}, false
	}
	t, err := time.ParseInLocation(iso, line[:len(iso)], time.Local)
	if err != nil {
		return Entry{}, false
	}
	// HOST TAG[PID] MESSAGE
	f := strings.SplitN(line[len(iso)+1:], " ", 3)
	if len(f) != 3 {
		return Entry{}, false
	}
	tag, ok := strings.CutSuffix(f[1], "]")
	i := strings.IndexByte(tag, '[')
	if !ok || i <= 0 {
		return Entry{}, false
	}
	if _, err := strconv.Atoi(tag[i+1:]); err != nil {
		return Entry{}, false
	}
	return Entry{Time: t, Identifier: tag[:i], Message: f[2]}, true
}
