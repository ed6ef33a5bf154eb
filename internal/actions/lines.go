package actions

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

// MaxLines is the most journal lines a mail quotes per ban.
const MaxLines = 50

// JournalLines finds the journal lines that failed for a ban: the entries
// of the jail's units (and identifiers) from findtime before the ban's
// start to a few seconds after it whose message the jail's filter matches
// with an address inside the banned prefix. It runs journalctl, so the
// daemon keeps no log lines in memory for it.
func JournalLines(ctx context.Context, j jails.Jail, p netip.Prefix, start time.Time) ([]string, error) {
	if start.IsZero() {
		start = time.Now()
	}
	since := start.Add(-j.FindTime - 2*time.Second)
	until := start.Add(5 * time.Second)
	args := []string{"--no-pager", "-q", "-o", "json", "--output-fields=MESSAGE,_SYSTEMD_UNIT",
		"--since", "@" + strconv.FormatInt(since.Unix(), 10), "--until", "@" + strconv.FormatInt(until.Unix(), 10)}
	first := true
	for _, u := range j.Units {
		if !first {
			args = append(args, "+")
		}
		args = append(args, "_SYSTEMD_UNIT="+u)
		first = false
	}
	for _, id := range j.Identifiers {
		if !first {
			args = append(args, "+")
		}
		args = append(args, "SYSLOG_IDENTIFIER="+id)
		first = false
	}
	if first {
		return nil, nil
	}
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("journalctl: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting journalctl: %w", err)
	}
	var lines []string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Message json.RawMessage `json:"MESSAGE"`
			RT      string          `json:"__REALTIME_TIMESTAMP"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		msg := rawMessage(e.Message)
		if j.Filter != nil {
			m, ok := j.Filter.Match(msg)
			if !ok || !p.Contains(m.Addr.Unmap()) {
				continue
			}
		}
		ts := ""
		if us, err := strconv.ParseInt(e.RT, 10, 64); err == nil {
			ts = time.UnixMicro(us).UTC().Format("2006-01-02 15:04:05") + " "
		}
		lines = append(lines, ts+msg)
	}
	err = cmd.Wait()
	if len(lines) > MaxLines {
		lines = lines[len(lines)-MaxLines:]
	}
	if err != nil && len(lines) == 0 {
		return nil, fmt.Errorf("journalctl: %w", err)
	}
	return lines, nil
}

// rawMessage decodes journalctl's MESSAGE: a string, or an array of bytes
// for a message that is not valid UTF-8.
func rawMessage(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var b []byte
	var ints []int
	if json.Unmarshal(raw, &ints) == nil {
		for _, i := range ints {
			b = append(b, byte(i))
		}
	}
	return string(b)
}
