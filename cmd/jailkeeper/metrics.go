package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

// cmdMetrics prints the daemon's state in Prometheus' text format, read
// over D-Bus. --textfile writes it for node_exporter's textfile collector;
// --http answers one HTTP request on stdin/stdout (a connection handed
// over by jailkeeper-metrics.socket, Accept=yes). Neither links an HTTP
// server into the binary: the answer is written by hand.
func cmdMetrics(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("metrics", "metrics [--textfile DIR | --http]", stderr)
	textfile := fs.String("textfile", "", "write DIR/jailkeeper.prom atomically instead of printing")
	asHTTP := fs.Bool("http", false, "answer one HTTP request read from stdin (socket activation)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(pos) > 0 || (*textfile != "" && *asHTTP) {
		fs.Usage()
		return 2
	}
	body, scrapeErr := scrape()
	if scrapeErr != nil {
		fmt.Fprintf(stderr, "jailkeeper metrics: %s\n", oneLine(scrapeErr.Error()))
	}
	switch {
	case *asHTTP:
		return serveOne(stdin, stdout, stderr, body)
	case *textfile != "":
		if err := writeAtomic(filepath.Join(*textfile, "jailkeeper.prom"), body); err != nil {
			return fail(stderr, "metrics", err)
		}
		return 0
	}
	stdout.Write(body)
	if scrapeErr != nil {
		return 1
	}
	return 0
}

// scrape reads the object model and formats it. When the daemon cannot
// be read, the exposition still says so (jailkeeper_up 0) and the error
// is returned beside it.
func scrape() ([]byte, error) {
	var (
		di    dbusapi.DaemonInfo
		jails []dbusapi.JailInfo
	)
	c, err := dbusapi.Dial()
	if err == nil {
		di, jails, err = c.Objects()
		c.Close()
	}
	return formatMetrics(err == nil, di, jails), err
}

type metric struct {
	name, kind, help string
	value            func(dbusapi.JailInfo) int64
}

var jailMetrics = []metric{
	{"jailkeeper_jail_failing_addresses", "gauge", "Addresses (IPv6: prefixes) with failures inside findtime.", func(j dbusapi.JailInfo) int64 { return int64(j.CurrentlyFailed) }},
	{"jailkeeper_jail_failures_total", "counter", "Failures counted since the daemon started.", func(j dbusapi.JailInfo) int64 { return int64(j.TotalFailed) }},
	{"jailkeeper_jail_banned_addresses", "gauge", "Bans in force.", func(j dbusapi.JailInfo) int64 { return int64(j.CurrentlyBanned) }},
	{"jailkeeper_jail_bans_total", "counter", "Bans started, ever (kept across restarts).", func(j dbusapi.JailInfo) int64 { return int64(j.TotalBanned) }},
	{"jailkeeper_jail_maxretry", "gauge", "Failures within findtime that ban.", func(j dbusapi.JailInfo) int64 { return int64(j.MaxRetry) }},
	{"jailkeeper_jail_findtime_seconds", "gauge", "Window in which failures count.", func(j dbusapi.JailInfo) int64 { return j.FindTime }},
	{"jailkeeper_jail_bantime_seconds", "gauge", "Length of a first ban; -1 for permanent bans.", func(j dbusapi.JailInfo) int64 { return j.BanTime }},
}

// formatMetrics writes the exposition (text format 0.0.4).
func formatMetrics(up bool, di dbusapi.DaemonInfo, jails []dbusapi.JailInfo) []byte {
	var b bytes.Buffer
	upv := 0
	if up {
		upv = 1
	}
	fmt.Fprintf(&b, "# HELP jailkeeper_up Whether the daemon answered on the system bus.\n# TYPE jailkeeper_up gauge\njailkeeper_up %d\n", upv)
	if !up {
		return b.Bytes()
	}
	fmt.Fprintf(&b, "# HELP jailkeeper_info The daemon's version and firewall backend.\n# TYPE jailkeeper_info gauge\njailkeeper_info{version=%s,backend=%s} 1\n",
		label(di.Version), label(di.Backend))
	fmt.Fprintf(&b, "# HELP jailkeeper_banned_addresses Bans in force, all jails.\n# TYPE jailkeeper_banned_addresses gauge\njailkeeper_banned_addresses %d\n", di.CurrentlyBanned)
	fmt.Fprintf(&b, "# HELP jailkeeper_bans_total Bans started, ever, all jails.\n# TYPE jailkeeper_bans_total counter\njailkeeper_bans_total %d\n", di.BannedTotal)
	if m := di.Metrics; m != nil {
		fmt.Fprintf(&b, "# HELP jailkeeper_journal_entries_read_total Journal entries the daemon handled since it started.\n# TYPE jailkeeper_journal_entries_read_total counter\njailkeeper_journal_entries_read_total %d\n", m.JournalEntriesRead)
		fmt.Fprintf(&b, "# HELP jailkeeper_journal_lag_seconds How far behind the journal's tail the daemon is: 0 when caught up, else the age of the oldest entry waiting.\n# TYPE jailkeeper_journal_lag_seconds gauge\njailkeeper_journal_lag_seconds %s\n", strconv.FormatFloat(m.JournalLag.Seconds(), 'g', -1, 64))
		if !m.LastVerify.IsZero() {
			ok := 0
			if m.LastVerifyOK {
				ok = 1
			}
			fmt.Fprintf(&b, "# HELP jailkeeper_firewall_last_verify_timestamp_seconds When the firewall layout was last verified (Unix time).\n# TYPE jailkeeper_firewall_last_verify_timestamp_seconds gauge\njailkeeper_firewall_last_verify_timestamp_seconds %d\n", m.LastVerify.Unix())
			fmt.Fprintf(&b, "# HELP jailkeeper_firewall_last_verify_success Whether the last verification left the layout as it must be (1) or its repair failed (0).\n# TYPE jailkeeper_firewall_last_verify_success gauge\njailkeeper_firewall_last_verify_success %d\n", ok)
		}
		fmt.Fprintf(&b, "# HELP jailkeeper_firewall_repairs_total Verifications of the firewall layout that found drift and repaired it.\n# TYPE jailkeeper_firewall_repairs_total counter\njailkeeper_firewall_repairs_total %d\n", m.FirewallRepairs)
	}
	for _, m := range jailMetrics {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		for _, j := range jails {
			fmt.Fprintf(&b, "%s{jail=%s} %d\n", m.name, label(j.Name), m.value(j))
		}
	}
	return b.Bytes()
}

// label quotes a label value as the text format requires.
func label(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// serveOne reads one HTTP request from r and answers it on w: GET or HEAD
// of any path gets the metrics, anything else 405. The daemon being down
// is not an HTTP error: jailkeeper_up says it.
func serveOne(r io.Reader, w io.Writer, stderr io.Writer, body []byte) int {
	br := bufio.NewReader(io.LimitReader(r, 64<<10))
	line, err := br.ReadString('\n')
	if err != nil {
		fmt.Fprintf(stderr, "jailkeeper metrics: reading the request: %v\n", err)
		return 1
	}
	for { // the headers, up to the empty line
		h, err := br.ReadString('\n')
		if err != nil || strings.TrimSpace(h) == "" {
			break
		}
	}
	method, _, _ := strings.Cut(strings.TrimSpace(line), " ")
	status, ctype := "200 OK", "text/plain; version=0.0.4; charset=utf-8"
	if method != "GET" && method != "HEAD" {
		status, ctype, body = "405 Method Not Allowed", "text/plain; charset=utf-8", []byte("only GET and HEAD\n")
	}
	fmt.Fprintf(w, "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", status, ctype, len(body))
	if method != "HEAD" {
		w.Write(body)
	}
	return 0
}

// writeAtomic writes data to path through a temporary file in the same
// directory, renamed into place: a collector never reads half a file.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".jailkeeper.prom.*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	if _, err = f.Write(data); err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
