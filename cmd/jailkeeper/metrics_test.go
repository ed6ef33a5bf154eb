package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

func TestFormatMetrics(t *testing.T) {
	dm := &dbusapi.DaemonMetrics{JournalEntriesRead: 1234, JournalLag: 1500 * time.Millisecond,
		LastVerify: time.Unix(1795955900, 0), LastVerifyOK: true, FirewallRepairs: 2}
	got := string(formatMetrics(true, dbusapi.DaemonInfo{Version: "1.0", Backend: "nftables", CurrentlyBanned: 3, BannedTotal: 9, Metrics: dm},
		[]dbusapi.JailInfo{{Name: "sshd", MaxRetry: 3, FindTime: 600, BanTime: -1, CurrentlyFailed: 2, TotalFailed: 40, CurrentlyBanned: 3, TotalBanned: 9}}))
	for _, want := range []string{
		"jailkeeper_up 1\n",
		`jailkeeper_info{version="1.0",backend="nftables"} 1` + "\n",
		"# TYPE jailkeeper_jail_failures_total counter\njailkeeper_jail_failures_total{jail=\"sshd\"} 40\n",
		`jailkeeper_jail_bantime_seconds{jail="sshd"} -1` + "\n",
		`jailkeeper_jail_failing_addresses{jail="sshd"} 2` + "\n",
		"jailkeeper_bans_total 9\n",
		"# TYPE jailkeeper_journal_entries_read_total counter\njailkeeper_journal_entries_read_total 1234\n",
		"# TYPE jailkeeper_journal_lag_seconds gauge\njailkeeper_journal_lag_seconds 1.5\n",
		"jailkeeper_firewall_last_verify_timestamp_seconds 1795955900\n",
		"jailkeeper_firewall_last_verify_success 1\n",
		"# TYPE jailkeeper_firewall_repairs_total counter\njailkeeper_firewall_repairs_total 2\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("exposition lacks %q:\n%s", want, got)
		}
	}
	// Every sample's family has HELP and TYPE lines before it.
	typed := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if f, ok := strings.CutPrefix(l, "# TYPE "); ok {
			typed[strings.Fields(f)[0]] = true
			continue
		}
		if strings.HasPrefix(l, "#") {
			continue
		}
		name, _, _ := strings.Cut(l, "{")
		name, _, _ = strings.Cut(name, " ")
		if !typed[name] {
			t.Errorf("sample %q without a TYPE line before it", l)
		}
	}
	// Before the first verification: no verification samples.
	dm.LastVerify = time.Time{}
	if early := string(formatMetrics(true, dbusapi.DaemonInfo{Metrics: dm}, nil)); strings.Contains(early, "last_verify") || !strings.Contains(early, "jailkeeper_firewall_repairs_total 2\n") {
		t.Errorf("before the first verification:\n%s", early)
	}
	if down := string(formatMetrics(false, dbusapi.DaemonInfo{}, nil)); !strings.HasSuffix(down, "jailkeeper_up 0\n") || strings.Contains(down, "jail=") {
		t.Errorf("daemon down:\n%s", down)
	}
	if l := label("a\"b\\c\nd"); l != `"a\"b\\c\nd"` {
		t.Errorf("label = %s", l)
	}
}

func TestServeOne(t *testing.T) {
	var out, errb bytes.Buffer
	serveOne(strings.NewReader("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), &out, &errb, []byte("jailkeeper_up 1\n"))
	if got := out.String(); !strings.HasPrefix(got, "HTTP/1.0 200 OK\r\n") || !strings.Contains(got, "Content-Length: 16\r\n") || !strings.HasSuffix(got, "\r\n\r\njailkeeper_up 1\n") {
		t.Errorf("GET answer %q", got)
	}
	out.Reset()
	serveOne(strings.NewReader("POST / HTTP/1.1\r\n\r\n"), &out, &errb, []byte("x"))
	if !strings.HasPrefix(out.String(), "HTTP/1.0 405 ") {
		t.Errorf("POST answer %q", out.String())
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "jailkeeper.prom")
	for _, body := range []string{"a 1\n", "a 2\n"} {
		if err := writeAtomic(p, []byte(body)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != body {
			t.Errorf("file holds %q, want %q", b, body)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := writeAtomic(filepath.Join(dir, "nosuch", "x.prom"), nil); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
