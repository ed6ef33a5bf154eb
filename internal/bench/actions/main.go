// Command actions is `make bench`'s row for `jailkeeper actions`: on the
// real test bed (private journald and bus, the daemon in a network
// namespace, a webhook receiver and Debian's postfix in that namespace) it
// measures the idle RSS of the actions service and of the daemon, then a
// burst of bans announced by one BanMany: how soon each ban's webhook
// arrives after the ban command started, how many digest mails the burst
// makes, and the CPU the actions service spent. Root only.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/bench/measure"
	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

type result struct {
	bans                 int
	idleActions, idleDmn int // KiB
	p50, p99, last       time.Duration
	digests              int
	cpu                  time.Duration
	afterRSS             int
	banCmd               time.Duration
}

func main() {
	n := flag.Int("bans", 5000, "bans in the burst")
	flag.Parse()
	var res result
	res.bans = *n
	r := testbed.NewRunner("bench-actions", os.Stderr)
	err := r.Run(func(tb testing.TB) { run(tb, *n, &res) })
	testbed.RemoveActionsBuild()
	testbed.RemoveBuild()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench actions:", err)
		os.Exit(1)
	}
	res.print(os.Stdout)
}

func run(tb testing.TB, n int, res *result) {
	testbed.Require(tb, append(testbed.BedCommands, testbed.MTACommands...)...)
	bed := testbed.NewBed(tb)
	mta := testbed.StartActionsMTA(tb, bed.Hosts)
	rcv := testbed.NewWebhookReceiver(tb, bed.Hosts, 0)
	const digest = 5 * time.Second
	d := bed.NewDaemon(tb, map[string]string{
		"10-sshd.yaml": testbed.SSHJailConfig,
		"20-actions.yaml": fmt.Sprintf("actions:\n  chat: {type: webhook, url: %q}\n  admin: {type: mail, to: [admin@jk-test.example], digest: %s}\n",
			rcv.URL, digest),
	})
	d.Watchdog = 30 * time.Second
	d.Start(tb)
	d.WaitReady(tb, 30*time.Second)
	a := testbed.NewActions(tb, d)
	a.Start(tb, 30*time.Second, mta.Env())
	time.Sleep(2 * time.Second)
	res.idleActions, res.idleDmn = a.RSS(tb), measure.RSS(tb, d.PID())

	cpu0 := measure.CPU(tb, a.PID())
	var list strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&list, "2001:db8:100::%x\n", i+1)
	}
	cmd := exec.Command(d.Bin, "ban", "sshd", "-")
	cmd.Env = append(os.Environ(), d.Bus.Env())
	cmd.Stdin = strings.NewReader(list.String())
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("jailkeeper ban sshd -: %v\n%s", err, out)
	}
	res.banCmd = time.Since(start)
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		hooks, bad := rcv.Hooks()
		if len(bad) > 0 {
			tb.Fatalf("malformed webhooks: %q", bad[:1])
		}
		if len(hooks) >= n {
			break
		}
		if time.Now().After(end) {
			tb.Fatalf("%d of %d webhooks within 60 s", len(hooks), n)
		}
	}
	hooks, _ := rcv.Hooks()
	lat := make([]time.Duration, len(hooks))
	for i, h := range hooks {
		lat[i] = h.At.Sub(start)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.p50, res.p99, res.last = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	mta.WaitMail(tb, digest+20*time.Second, "To: admin@jk-test.example")
	time.Sleep(digest + 2*time.Second) // a second digest would show now
	for _, m := range mta.Mails(tb) {
		if strings.Contains(m, "To: admin@jk-test.example") {
			res.digests++
		}
	}
	res.cpu = measure.CPU(tb, a.PID()) - cpu0
	res.afterRSS = a.RSS(tb)
}

func (r *result) print(w io.Writer) {
	row := func(what, measured, goal, v string) { measure.Row(w, what, measured, goal, v) }
	row(fmt.Sprintf("jailkeeper actions, %d-ban burst (one BanMany)", r.bans), "measured", "goal", "")
	row("idle RSS, jailkeeper actions", measure.MiB(r.idleActions), "≤ 15 MB", measure.Verdict(r.idleActions*1024 <= 15e6))
	row("idle RSS, daemon (with the actions: drop-in)", measure.MiB(r.idleDmn), "≤ 15 MB", measure.Verdict(r.idleDmn*1024 <= 15e6))
	row("webhook after the ban command's start: p50 / p99 / last",
		fmt.Sprintf("%s / %s / %s", r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.last.Round(time.Millisecond)), "p99 ≤ 2 s", measure.Verdict(r.p99 <= 2*time.Second))
	row("digest mails for the burst (digest: 5s)", strconv.Itoa(r.digests), "1", measure.Verdict(r.digests == 1))
	row("CPU of jailkeeper actions for the burst", r.cpu.String(), "", "")
	row("RSS of jailkeeper actions after the burst", measure.MiB(r.afterRSS), "", "")
	row("the ban command (jailkeeper ban sshd -) took", r.banCmd.Round(time.Millisecond).String(), "", "")
}
