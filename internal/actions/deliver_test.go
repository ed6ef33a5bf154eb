package actions

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

func TestWebhookBodies(t *testing.T) {
	ev := Event{Kind: Ban, Jail: "sshd", Prefix: netip.MustParsePrefix("203.0.113.7/32"),
		Start: time.Unix(1700000000, 0), Expires: time.Unix(1700003600, 0), Reason: `3 failures "in" 10m`}
	w := NewWebhook(config.ResolvedAction{Name: "chat", Format: "json", Workers: 1}, "gate")
	b, err := w.Body(ev)
	if err != nil {
		t.Fatal(err)
	}
	var got WebhookBody
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := WebhookBody{Event: "ban", Jail: "sshd", Address: "203.0.113.7", Expires: "2023-11-14T23:13:20Z", Reason: `3 failures "in" 10m`, Host: "gate"}
	if got != want {
		t.Fatalf("body %+v, want %+v", got, want)
	}
	w = NewWebhook(config.ResolvedAction{Name: "chat", Format: "template", Workers: 1,
		Template: `{"text": "{host}: {event} {address} in {jail} for {bantime} ({reason})"}`}, "gate")
	b, _ = w.Body(ev)
	var slack struct{ Text string }
	if err := json.Unmarshal(b, &slack); err != nil {
		t.Fatalf("template body %s is not JSON: %v", b, err)
	}
	if slack.Text != `gate: ban 203.0.113.7 in sshd for 1h0m0s (3 failures "in" 10m)` {
		t.Fatalf("template text %q", slack.Text)
	}
}

func TestExpandKeepsArgvWhole(t *testing.T) {
	f := map[string]string{"address": "2001:db8::/64", "reason": "a; rm -rf /"}
	if got := Expand("--reason={reason}", f, nil); got != "--reason=a; rm -rf /" {
		t.Fatalf("Expand = %q", got)
	}
	if got := Expand("{address}{nope}", f, nil); got != "2001:db8::/64{nope}" {
		t.Fatalf("Expand = %q", got)
	}
}

func TestExecArgvEnvAndExitStatus(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := filepath.Join(dir, "act.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2 $JK_JAIL $JK_EVENT\" > "+out+"\necho said something\nexit $3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	a := config.ResolvedAction{Name: "blackhole", Argv: []string{script, "{event}", "{address}", "0"}, Timeout: 5 * time.Second}
	ev := Event{Kind: Unban, Jail: "sshd", Prefix: netip.MustParsePrefix("2001:db8::/64")}
	if err := NewExec(a, "gate", rec).Deliver(context.Background(), []Event{ev}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if string(b) != "unban 2001:db8::/64 sshd unban\n" {
		t.Fatalf("the command wrote %q", b)
	}
	if l := rec.logged(MsgOutput); len(l) != 1 || !strings.Contains(l[0], "said something ACTION=blackhole ADDRESS=2001:db8::/64 JAIL=sshd") {
		t.Fatalf("output entries %v", l)
	}
	a.Argv[3] = "3"
	err := NewExec(a, "gate", rec).Deliver(context.Background(), []Event{ev})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("error %v, want exit status 3", err)
	}
	a.Argv = []string{"/bin/sleep", "5"}
	a.Timeout = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()
	start := time.Now()
	err = NewExec(a, "gate", rec).Deliver(ctx, []Event{ev})
	if err == nil || !strings.Contains(err.Error(), "killed after the timeout") || time.Since(start) > 3*time.Second {
		t.Fatalf("error %v after %s, want a kill at the timeout", err, time.Since(start))
	}
}

const ripeRecord = `% This is the RIPE Database query service.
% Abuse contact for '203.0.113.0 - 203.0.113.255' is 'abuse@example.net'

inetnum:        203.0.113.0 - 203.0.113.255
netname:        TEST-NET-3
descr:          documentation
`

func TestAbuseContact(t *testing.T) {
	for rec, want := range map[string]string{
		ripeRecord: "abuse@example.net",
		"inetnum: 198.51.100.0/24\nabuse-mailbox:  noc-abuse@example.org\n":                                              "noc-abuse@example.org",
		"NetRange: 198.51.100.0 - 198.51.100.255\nOrgAbuseEmail:  abuse@arin.example\nOrgTechEmail: tech@arin.example\n": "abuse@arin.example",
		"contact: hostmaster@example.com\nremarks: send spam reports to abuse-team@example.com\n":                        "abuse-team@example.com",
		"contact: hostmaster@example.com\n":                                                                              "",
	} {
		if got := AbuseContact(rec); got != want {
			t.Errorf("AbuseContact(%q) = %q, want %q", rec, got, want)
		}
	}
}

func testMail(a config.ResolvedAction) *Mail {
	f, _ := jails.Compile(jails.FilterDef{FailRegex: []string{`^Failed password for \S+ from <HOST>`}})
	m := NewMail(a, "gate", []jails.Jail{{Name: "sshd", Units: []string{"sshd.service"}, FindTime: 10 * time.Minute, Filter: f}})
	m.Whois = func(_ context.Context, server string, addr netip.Addr) (string, error) {
		return "% queried " + server + " for " + addr.String() + "\n" + ripeRecord, nil
	}
	m.Lines = func(_ context.Context, j jails.Jail, p netip.Prefix, _ time.Time) ([]string, error) {
		return []string{"Failed password for root from " + p.Addr().String() + " port 22 ssh2"}, nil
	}
	return m
}

func TestMailComposition(t *testing.T) {
	ev := Event{Kind: Ban, Jail: "sshd", Prefix: netip.MustParsePrefix("203.0.113.7/32"),
		Start: time.Unix(1700000000, 0), Expires: time.Unix(1700086400, 0), Reason: "3 failures in 10m"}
	m := testMail(config.ResolvedAction{Name: "abuse", To: []string{"root", "abuse"}, Whois: true, Lines: true, WhoisServer: "127.0.0.1"})
	to, msg, err := m.Compose(context.Background(), []Event{ev})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(to, ",") != "root,abuse@example.net" {
		t.Fatalf("recipients %v", to)
	}
	s := string(msg)
	for _, want := range []string{
		"To: root, abuse@example.net\n", "Subject: [jailkeeper] gate: banned 203.0.113.7 in jail sshd\n",
		"Ban time:  24h0m0s (until 2023-11-15T22:13:20Z)", "Reason:    3 failures in 10m",
		"  Failed password for root from 203.0.113.7 port 22 ssh2\n", "% queried 127.0.0.1 for 203.0.113.7",
		"  inetnum:        203.0.113.0 - 203.0.113.255\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("mail lacks %q:\n%s", want, s)
		}
	}
	m.Whois = func(context.Context, string, netip.Addr) (string, error) { return "netname: X\n", nil }
	if _, _, err := m.Compose(context.Background(), []Event{ev}); !errors.Is(err, ErrPermanent) {
		t.Fatalf("no abuse contact: error %v, want a permanent failure", err)
	}
}

func TestMailDigest(t *testing.T) {
	m := testMail(config.ResolvedAction{Name: "admin", To: []string{"root"}, Whois: true, Lines: true, Digest: 10 * time.Minute})
	calls := 0
	m.Whois = func(context.Context, string, netip.Addr) (string, error) { calls++; return "", nil }
	var evs []Event
	for i := 0; i < 5000; i++ {
		evs = append(evs, Event{Kind: Ban, Jail: "sshd", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), 32),
			Start: time.Unix(1700000000, 0), Expires: time.Unix(1700003600, 0)})
	}
	evs = append(evs, Event{Kind: Unban, Jail: "web", Prefix: netip.MustParsePrefix("2001:db8::/64")})
	_, msg, err := m.Compose(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	s := string(msg)
	if !strings.Contains(s, "Subject: [jailkeeper] gate: 5000 bans, 1 unbans\n") || !strings.Contains(s, "  sshd: 5000\n  web: 1\n") ||
		!strings.Contains(s, "203.0.19.135") || !strings.Contains(s, "unban  web                  2001:db8::/64") {
		t.Fatalf("digest:\n%.2000s", s)
	}
	if calls != DigestDetails || strings.Count(s, "\nWhois record of ") != DigestDetails || strings.Count(s, "\nLog lines of sshd.service") != DigestDetails ||
		!strings.Contains(s, "Details of the first 10 bans:\n\n--- 203.0.0.0 in jail sshd\n") || !strings.Contains(s, "Failed password for root from 203.0.0.9 port 22") ||
		strings.Contains(s, "from 203.0.0.10 port") {
		t.Fatalf("a digest of 5000 bans ran %d whois lookups, want the first %d bans' details:\n%.3000s", calls, DigestDetails, s)
	}
}

func TestStoreSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err == nil || !strings.Contains(err.Error(), "another jailkeeper actions holds it") {
		t.Fatalf("second open: %v", err)
	}
	jobs, err := st.Apply([]Event{ban("sshd", "203.0.113.1/32"), ban("sshd", "2001:db8::/64")}, func(e Event) []Job {
		return []Job{{Action: "a", Kind: e.Kind, Jail: e.Jail, Prefix: e.Prefix.String(), Start: unix(e.Start), Expires: unix(e.Expires)}}
	})
	if err != nil || len(jobs) != 2 || jobs[0].Seq == jobs[1].Seq {
		t.Fatalf("Apply = %v, %v", jobs, err)
	}
	if err := st.Done([]uint64{jobs[0].Seq}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, _ := st.Pending()
	seen, _ := st.Seen()
	if len(p) != 1 || p[0].Prefix != "2001:db8::/64" || p[0].Event().Prefix.Bits() != 64 || len(seen) != 2 {
		t.Fatalf("after reopen: pending %v, seen %v", p, seen)
	}
}

func TestExecTimeoutKillsTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "pid")
	a := config.ResolvedAction{Name: "slow", Argv: []string{"/bin/sh", "-c", "sleep 30 & echo $! > " + pidfile + "; wait"}, Timeout: 200 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()
	start := time.Now()
	err := NewExec(a, "gate", &recorder{}).Deliver(ctx, []Event{{Kind: Ban, Jail: "sshd", Prefix: netip.MustParsePrefix("203.0.113.7/32")}})
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("error %v after %s, want a kill at the timeout", err, time.Since(start))
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	stat := "/proc/" + strings.TrimSpace(string(b)) + "/stat"
	for end := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s, err := os.ReadFile(stat)
		if err != nil || strings.Contains(string(s), ") Z ") {
			return // gone, or a zombie waiting for its new parent
		}
		if time.Now().After(end) {
			t.Fatalf("the command's child outlived the timeout: %s", s)
		}
	}
}

func TestDecodeTrustsOnlyTheDaemon(t *testing.T) {
	now := time.Now()
	banned := func(sender string) *dbus.Signal {
		return &dbus.Signal{Sender: sender, Path: dbusapi.Path, Name: dbusapi.Interface + ".Banned",
			Body: []any{"sshd", "203.0.113.7/32", int64(0), "3 failures"}}
	}
	if evs, _, _ := decode(banned(":1.5"), ":1.5", now); len(evs) != 1 || evs[0].Address() != "203.0.113.7" || evs[0].Reason != "3 failures" {
		t.Fatalf("the daemon's Banned: %+v", evs)
	}
	if evs, _, _ := decode(banned(":1.9"), ":1.5", now); len(evs) != 0 {
		t.Fatalf("a Banned forged by another connection was taken: %+v", evs)
	}
	if evs, _, _ := decode(banned(":1.5"), "", now); len(evs) != 0 {
		t.Fatalf("a Banned while the daemon is not on the bus was taken: %+v", evs)
	}
	many := &dbus.Signal{Sender: ":1.5", Path: dbusapi.Path, Name: dbusapi.Interface + ".BannedMany",
		Body: []any{"sshd", []string{"203.0.113.1/32", "2001:db8::/64"}, []int64{1700000000, 0}}}
	if evs, _, _ := decode(many, ":1.5", now); len(evs) != 2 || evs[1].Prefix.Bits() != 64 || !evs[1].Expires.IsZero() || evs[0].Expires.Unix() != 1700000000 {
		t.Fatalf("BannedMany: %+v", evs)
	}
	owner := func(sender string) *dbus.Signal {
		return &dbus.Signal{Sender: sender, Name: "org.freedesktop.DBus.NameOwnerChanged", Body: []any{dbusapi.BusName, ":1.5", ":1.6"}}
	}
	if _, n, changed := decode(owner("org.freedesktop.DBus"), ":1.5", now); !changed || n != ":1.6" {
		t.Fatalf("the bus's NameOwnerChanged: %q %v", n, changed)
	}
	if _, _, changed := decode(owner(":1.9"), ":1.5", now); changed {
		t.Fatal("a NameOwnerChanged forged by a client was taken")
	}
}
