package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/actions"
	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// waitHook waits for a webhook with event and address.
func waitHook(t *testing.T, r *testbed.WebhookReceiver, event, addr string, timeout time.Duration) testbed.Hook {
	t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		hooks, _ := r.Hooks()
		for _, h := range hooks {
			if h.Event == event && h.Address == addr {
				return h
			}
		}
	}
	hooks, bad := r.Hooks()
	t.Fatalf("no webhook %s %s within %s; got %+v (malformed: %q)", event, addr, timeout, hooks, bad)
	return testbed.Hook{}
}

// hookCount is the number of well-formed webhooks so far; malformed ones
// fail the test.
func hookCount(t *testing.T, r *testbed.WebhookReceiver) int {
	t.Helper()
	hooks, bad := r.Hooks()
	if len(bad) > 0 {
		t.Fatalf("malformed webhooks: %q", bad)
	}
	return len(hooks)
}

// startWithActions starts a bed, the daemon and `jailkeeper actions` with
// the drop-in actionsYAML next to the sshd jail.
func startWithActions(t *testing.T, actionsYAML func(h *testbed.Hosts) string, env ...func() string) (*testbed.Bed, *testbed.Daemon, *testbed.Actions) {
	t.Helper()
	testbed.Require(t, testbed.BedCommands...)
	bed := testbed.NewBed(t)
	d := bed.NewDaemon(t, map[string]string{"10-sshd.yaml": testbed.SSHJailConfig, "20-actions.yaml": actionsYAML(bed.Hosts)})
	d.Start(t)
	d.WaitReady(t, readyTimeout)
	a := testbed.NewActions(t, d)
	var vars []string
	for _, e := range env {
		vars = append(vars, e())
	}
	a.Start(t, readyTimeout, vars...)
	return bed, d, a
}

// journalCount counts the bed's journal entries of jailkeeper actions
// matching the given fields.
func journalCount(t *testing.T, bed *testbed.Bed, matches ...string) int {
	t.Helper()
	return len(bed.JournalLines(t, append([]string{"SYSLOG_IDENTIFIER=jailkeeper-actions"}, matches...)...))
}

func waitJournal(t *testing.T, bed *testbed.Bed, want int, timeout time.Duration, matches ...string) {
	t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if journalCount(t, bed, matches...) >= want {
			return
		}
	}
	t.Fatalf("fewer than %d journal entries %v within %s", want, matches, timeout)
}

func blackholes(t *testing.T, h *testbed.Hosts) string {
	t.Helper()
	return testbed.Run(t, "ip", "-n", h.Srv, "route", "show", "type", "blackhole")
}

// TestActionsWebhookAndExec: a ban reaches a webhook receiver in
// the test's namespace as JSON and makes an exec action add a blackhole
// route in that namespace; the unban removes it and is announced too.
// With the receiver gone, the webhook is retried and then given up, logged
// with MESSAGE_ID, JAIL=, ADDRESS=, ACTION=. A Banned signal forged by a
// local user is ignored. Idle RSS is measured.
func TestActionsWebhookAndExec(t *testing.T) {
	t.Parallel()
	var rcv *testbed.WebhookReceiver
	bed, d, a := startWithActions(t, func(h *testbed.Hosts) string {
		rcv = testbed.NewWebhookReceiver(t, h, 0)
		return fmt.Sprintf(`actions:
  chat: {type: webhook, url: %q, on: [ban, unban], retries: 2, timeout: 2s}
  blackhole:
    type: exec
    on: [ban, unban]
    argv: [/bin/sh, -c, 'if [ "$JK_EVENT" = ban ]; then exec ip route add blackhole "$1"; else exec ip route del blackhole "$1"; fi', jk-route, "{address}"]
    timeout: 5s
`, rcv.URL)
	})
	h := bed.Hosts

	time.Sleep(time.Second)
	rss := a.RSS(t)
	t.Logf("idle RSS: jailkeeper actions %.1f MB, the daemon (with the actions: section in its drop-ins) %.1f MB",
		float64(rss)/1024, float64(rssOf(t, d.PID()))/1024)
	// A race-detector build (JAILKEEPER_BIN in make test) is several times
	// larger: the goal holds for the plain build only.
	if os.Getenv("JAILKEEPER_BIN") == "" && rss > 15*1024 {
		t.Errorf("idle RSS %d KiB, want ≤ 15 MB", rss)
	}

	if out, err := jk(d, "", "ban", "sshd", "203.0.113.7", "--for", "1h"); err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}
	b := waitHook(t, rcv, "ban", "203.0.113.7", 5*time.Second)
	host, _ := os.Hostname()
	if b.Jail != "sshd" || b.Host != host || b.Expires == "" || b.Expires == "permanent" {
		t.Errorf("ban body %+v", b)
	}
	if exp, err := time.Parse(time.RFC3339, b.Expires); err != nil || time.Until(exp) < 59*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Errorf("ban body expires %q, want an hour from now", b.Expires)
	}
	waitJournal(t, bed, 1, 5*time.Second, "MESSAGE_ID="+actions.MsgDone, "ACTION=blackhole", "ADDRESS=203.0.113.7", "JAIL=sshd", "EVENT=ban")
	if r := blackholes(t, h); !strings.Contains(r, "blackhole 203.0.113.7") {
		t.Fatalf("no blackhole route after the ban: %q", r)
	}

	if out, err := jk(d, "", "unban", "203.0.113.7"); err != nil {
		t.Fatalf("unban: %v\n%s", err, out)
	}
	waitHook(t, rcv, "unban", "203.0.113.7", 5*time.Second)
	waitJournal(t, bed, 1, 5*time.Second, "MESSAGE_ID="+actions.MsgDone, "ACTION=blackhole", "ADDRESS=203.0.113.7", "EVENT=unban")
	if r := blackholes(t, h); strings.Contains(r, "203.0.113.7") {
		t.Fatalf("blackhole route left after the unban: %q", r)
	}

	// Any local user may emit a signal named Banned on the bus: the
	// actions service takes them only from the daemon's connection.
	forger := "jkact" + testbed.Suffix()
	testbed.EnsureUser(t, forger)
	forge := exec.Command("setpriv", "--reuid="+forger, "--regid="+forger, "--clear-groups",
		"busctl", "--system", "emit", "/org/jailkeeper", "org.jailkeeper.Manager1", "Banned", "ssxs", "sshd", "203.0.113.66", "0", "forged")
	forge.Env = append(os.Environ(), bed.Bus.Env())
	if out, err := forge.CombinedOutput(); err != nil {
		t.Fatalf("busctl emit as %s: %v\n%s", forger, err, out)
	}
	if out, err := jk(d, "", "ban", "sshd", "203.0.113.67"); err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}
	waitHook(t, rcv, "ban", "203.0.113.67", 5*time.Second)
	if hooks, _ := rcv.Hooks(); strings.Contains(fmt.Sprint(hooks), "203.0.113.66") {
		t.Fatalf("a Banned signal forged by a local user was acted on: %+v", hooks)
	}
	if r := blackholes(t, h); strings.Contains(r, "203.0.113.66") {
		t.Fatalf("a forged signal added a route: %q", r)
	}

	// The receiver goes away: two retries (1 s, 2 s), then the action
	// gives up, and the next ban is still handled.
	rcv.Close()
	start := time.Now()
	if out, err := jk(d, "", "ban", "sshd", "203.0.113.8"); err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}
	waitJournal(t, bed, 1, 15*time.Second, "MESSAGE_ID="+actions.MsgFailed, "ACTION=chat", "ADDRESS=203.0.113.8", "JAIL=sshd")
	took := time.Since(start)
	if n := journalCount(t, bed, "MESSAGE_ID="+actions.MsgRetry, "ACTION=chat", "ADDRESS=203.0.113.8"); n != 2 {
		t.Errorf("%d retry entries, want 2", n)
	}
	if took < 3*time.Second {
		t.Errorf("gave up after %s, want the backoff (1 s + 2 s) first", took)
	}
	failed := bed.JournalLines(t, "MESSAGE_ID="+actions.MsgFailed, "ACTION=chat")
	if len(failed) != 1 || !strings.Contains(failed[0], "failed after 3 attempts") {
		t.Errorf("failure entries %q", failed)
	}
	if r := blackholes(t, h); !strings.Contains(r, "blackhole 203.0.113.8") {
		t.Errorf("exec action did not run while the webhook failed: %q", r)
	}
	if !a.Running() {
		t.Fatal("jailkeeper actions died")
	}
}

// TestActionsRestartMidFlood: the actions service is restarted
// (SIGTERM, as systemctl restart does) while a flood of 3,000 bans is being
// posted to a slow webhook: after the restart every ban has been posted
// exactly once.
func TestActionsRestartMidFlood(t *testing.T) {
	t.Parallel()
	const n = 3000
	var rcv *testbed.WebhookReceiver
	_, d, a := startWithActions(t, func(h *testbed.Hosts) string {
		rcv = testbed.NewWebhookReceiver(t, h, 2*time.Millisecond)
		return fmt.Sprintf("actions:\n  chat: {type: webhook, url: %q}\n", rcv.URL)
	})
	var list strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&list, "2001:db8:100::%x\n", i+1)
	}
	if out, err := jk(d, list.String(), "ban", "sshd", "-"); err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if hookCount(t, rcv) >= n/5 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the flood did not start reaching the webhook")
		}
	}
	a.Stop(t)
	before := hookCount(t, rcv)
	t.Logf("restart after %d of %d webhooks", before, n)
	if before >= n {
		t.Fatalf("the flood was over before the restart (%d webhooks): nothing tested", before)
	}
	a.Start(t, readyTimeout)
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if hookCount(t, rcv) >= n {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d of %d webhooks within 30 s of the restart", hookCount(t, rcv), n)
		}
	}
	time.Sleep(500 * time.Millisecond) // room for duplicates to show
	bodies, _ := rcv.Hooks()
	count := map[string]int{}
	for _, b := range bodies {
		count[b.Address]++
	}
	var twice []string
	for addr, c := range count {
		if c > 1 {
			twice = append(twice, addr)
		}
	}
	sort.Strings(twice)
	if len(count) != n || len(twice) > 0 {
		t.Fatalf("%d webhooks for %d distinct addresses (want %d, each once); more than once: %v", len(bodies), len(count), n, twice)
	}

	// A first start (an empty state directory) adopts the daemon's 3,000
	// bans without posting them.
	a.Stop(t)
	a.StateDir = t.TempDir()
	a.Start(t, readyTimeout)
	if _, st, _ := a.Notify.Find("STATUS="); !strings.Contains(st, "3000 active bans adopted on first start") {
		t.Errorf("first start's status: %q", st)
	}
	time.Sleep(time.Second)
	if c := hookCount(t, rcv); c != n {
		t.Fatalf("%d webhooks after a first start, want still %d", c, n)
	}
}

// TestActionsBurst: a 5,000-ban burst reaches the webhook; the
// latency from the ban command (goal: p99 ≤ 2 s, judged by make bench) and
// the CPU the actions service spent on it are stated.
func TestActionsBurst(t *testing.T) {
	t.Parallel()
	const n = 5000
	var rcv *testbed.WebhookReceiver
	_, d, a := startWithActions(t, func(h *testbed.Hosts) string {
		rcv = testbed.NewWebhookReceiver(t, h, 0)
		return fmt.Sprintf("actions:\n  chat: {type: webhook, url: %q}\n", rcv.URL)
	})
	cpu0 := cpuTicks(t, a.PID())
	var list strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&list, "2001:db8:100::%x\n", i+1)
	}
	start := time.Now()
	if out, err := jk(d, list.String(), "ban", "sshd", "-"); err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}
	banned := time.Since(start)
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if hookCount(t, rcv) >= n {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d of %d webhooks within 20 s", hookCount(t, rcv), n)
		}
	}
	hooks, _ := rcv.Hooks()
	lat := make([]time.Duration, len(hooks))
	for i, hk := range hooks {
		lat[i] = hk.At.Sub(start)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	cpu := time.Duration(cpuTicks(t, a.PID())-cpu0) * 10 * time.Millisecond
	t.Logf("5,000-ban burst: ban command %s; webhook after the command's start p50 %s, p99 %s, last %s; actions CPU %s; RSS after %.1f MB",
		banned.Round(time.Millisecond), p50.Round(time.Millisecond), p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), cpu, float64(a.RSS(t))/1024)
	// The goal (p99 ≤ 2 s) is make bench's to judge: here the other
	// packages' tests share the machine (on a host with a load of 12 on
	// 2 cores the p99 reached 3.8 s), and a race-detector build
	// (JAILKEEPER_BIN in make test) is several times slower. This bound
	// catches a service that handles a flood one ban at a time.
	if p99 > 15*time.Second {
		t.Errorf("p99 %s from the ban command to the webhook, want far below 15 s (goal: 2 s)", p99)
	}
}

// cpuTicks returns utime+stime of pid in clock ticks (1/100 s).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return u + st
}

// whoisRecord is what the test's whois server answers: a RIPE-style
// record with an abuse-mailbox.
const whoisRecord = `%% This is the test's own whois server.

inetnum:        198.51.100.0 - 198.51.100.255
netname:        TEST-NET-2
descr:          Documentation addresses (RFC 5737)
abuse-mailbox:  abuse@example.net
source:         TEST
`

// startWhois serves whoisRecord on TCP 43 of the server's address, in the
// server namespace; it returns a counter of the queries it answered.
func startWhois(t *testing.T, h *testbed.Hosts) *atomic.Int32 {
	t.Helper()
	l := h.ListenSrv(t, "tcp", "198.51.100.1:43")
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				q, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				n.Add(1)
				fmt.Fprintf(c, "%% query: %s\r\n", strings.TrimSpace(q))
				fmt.Fprint(c, strings.ReplaceAll(whoisRecord, "\n", "\r\n"))
			}()
		}
	}()
	return &n
}

// TestActionsMail: a real ban (three failures written to the
// journal as sshd.service) is mailed through Debian's postfix (sendmail
// -t -i) to the admin, with the whois record from the test's own whois
// server (whois -h) and the failing journal lines, and to the abuse
// contact of that record, and once more by SMTP to postfix on localhost;
// a flood of 20 bans becomes one digest mail.
func TestActionsMail(t *testing.T) {
	t.Parallel()
	testbed.Require(t, append(testbed.MTACommands, "whois")...)
	var mta *testbed.ActionsMTA
	var whois *atomic.Int32
	bed, d, _ := startWithActions(t, func(h *testbed.Hosts) string {
		mta = testbed.StartActionsMTA(t, h)
		whois = startWhois(t, h)
		return `actions:
  mail-admin: {type: mail, to: [admin@jk-test.example], whois: true, whois_server: 198.51.100.1, lines: true, min_bantime: 1h}
  abuse:      {type: mail, to: [abuse], whois_server: 198.51.100.1, lines: true, min_bantime: 1h, rate: 20/h}
  digest:     {type: mail, to: [digest@jk-test.example], digest: 2s}
  by-smtp:    {type: mail, to: [smtp@jk-test.example], smtp: "127.0.0.1:25", min_bantime: 1h}
`
	}, func() string { return mta.Env() })

	// A flood of short bans: one digest mail, no per-ban mail.
	var list strings.Builder
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&list, "203.0.113.%d\n", i)
	}
	if out, err := jk(d, list.String(), "ban", "sshd", "-", "--for", "10m"); err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}
	start := time.Now()
	digest := mta.WaitMail(t, 15*time.Second, "To: digest@jk-test.example")
	t.Logf("digest mail after %s", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"Subject: [jailkeeper] ", ": 20 bans, 0 unbans", "  sshd: 20\n", "203.0.113.1 ", "203.0.113.20 "} {
		if !strings.Contains(digest, want) {
			t.Errorf("digest lacks %q:\n%s", want, digest)
		}
	}

	// A ban the daemon decides from the journal.
	fails := []string{
		"Failed password for root from 198.51.100.2 port 40001 ssh2",
		"Failed password for root from 198.51.100.2 port 40002 ssh2",
		"Failed password for invalid user admin from 198.51.100.2 port 40003 ssh2",
	}
	if err := bed.Journald.WriteAsUnit("sshd.service", fails); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	admin := mta.WaitMail(t, 20*time.Second, "To: admin@jk-test.example", "198.51.100.2")
	t.Logf("admin mail after %s", time.Since(start).Round(time.Millisecond))
	for _, want := range append([]string{"Subject: [jailkeeper] ", "banned 198.51.100.2 in jail sshd", "Ban time:  ", " (until ",
		"Whois record of 198.51.100.2", "netname:        TEST-NET-2", "% query: 198.51.100.2", "Log lines of sshd.service, ssh.service"}, fails...) {
		if !strings.Contains(admin, want) {
			t.Errorf("admin mail lacks %q:\n%s", want, admin)
		}
	}
	// The reason as the daemon's Banned signal carries it: the attempted
	// user name (maybe a mistyped password) hidden; the log lines quote
	// sshd as it logged.
	if !strings.Contains(admin, "Reason:    3 failures within") || !strings.Contains(admin, "last for user (hidden)") || strings.Contains(admin, `user "admin"`) {
		t.Errorf("admin mail's reason: want the user name hidden:\n%s", admin)
	}
	bySMTP := mta.WaitMail(t, 20*time.Second, "To: smtp@jk-test.example")
	if !strings.Contains(bySMTP, "banned 198.51.100.2 in jail sshd") || !strings.Contains(bySMTP, "Received: from ") {
		t.Errorf("mail handed over by SMTP:\n%s", bySMTP)
	}
	abuse := mta.WaitMail(t, 20*time.Second, "To: abuse@example.net")
	if !strings.Contains(abuse, "banned 198.51.100.2 in jail sshd") || !strings.Contains(abuse, fails[0]) || strings.Contains(abuse, "Whois record") || strings.Contains(abuse, `user "admin"`) {
		t.Errorf("abuse mail:\n%s", abuse)
	}
	time.Sleep(3 * time.Second) // the digest period, for a second digest to show
	mails := mta.Mails(t)
	count := map[string]int{}
	for _, m := range mails {
		for _, to := range []string{"digest@", "admin@", "abuse@", "smtp@"} {
			if strings.Contains(m, "To: "+to) {
				count[to]++
			}
		}
	}
	// The detected ban is in a second digest; no per-ban mail for the 10m bans.
	if len(mails) != 5 || count["digest@"] != 2 || count["admin@"] != 1 || count["abuse@"] != 1 || count["smtp@"] != 1 {
		t.Errorf("%d mails %v, want 2 digests, 1 admin, 1 abuse, 1 by SMTP", len(mails), count)
	}
	if q := whois.Load(); q != 2 {
		t.Errorf("%d whois queries, want 2 (admin, abuse)", q)
	}
	if n := journalCount(t, bed, "MESSAGE_ID="+actions.MsgDone, "ACTION=abuse", "ADDRESS=198.51.100.2", "JAIL=sshd"); n != 1 {
		t.Errorf("%d done entries for the abuse mail, want 1", n)
	}
}

// rssOf returns VmRSS of pid in KiB.
func rssOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	return 0
}

// TestActionsDigestRestart: the actions service is restarted
// while a digest period collects a flood of 2,000 bans: the digest mailed
// after the restart (through postfix) lists every ban, and no ban appears
// in two mails.
func TestActionsDigestRestart(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.MTACommands...)
	const n = 2000
	var mta *testbed.ActionsMTA
	_, d, a := startWithActions(t, func(h *testbed.Hosts) string {
		mta = testbed.StartActionsMTA(t, h)
		return "actions:\n  digest: {type: mail, to: [digest@jk-test.example], digest: 3s}\n"
	}, func() string { return mta.Env() })
	var list strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&list, "2001:db8:200::%x\n", i+1)
	}
	if out, err := jk(d, list.String(), "ban", "sshd", "-", "--for", "10m"); err != nil {
		t.Fatalf("ban: %v\n%s", err, out)
	}
	time.Sleep(time.Second) // inside the digest's period
	a.Stop(t)
	if m := mta.Mails(t); len(m) != 0 {
		t.Fatalf("%d mails before the restart; the period was not over", len(m))
	}
	a.Start(t, readyTimeout, mta.Env())
	mta.WaitMail(t, 20*time.Second, "To: digest@jk-test.example")
	time.Sleep(4 * time.Second) // a second digest would show now
	mails := mta.Mails(t)
	seen := map[string]int{}
	for _, m := range mails {
		for _, l := range strings.Split(m, "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "ban" && f[1] == "sshd" {
				seen[f[2]]++
			}
		}
	}
	twice := 0
	for _, c := range seen {
		if c > 1 {
			twice++
		}
	}
	if len(mails) != 1 || len(seen) != n || twice > 0 {
		t.Fatalf("%d digest mails listing %d distinct bans (%d more than once); want 1 mail listing all %d once", len(mails), len(seen), twice, n)
	}
}
