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
	res.idleActions, res.idleDmn = a.RSS(tb), rss(tb, d.PID())

	cpu0 := cpuTicks(tb, a.PID())
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
	res.cpu = time.Duration(cpuTicks(tb, a.PID())-cpu0) * 10 * time.Millisecond
	res.afterRSS = a.RSS(tb)
}

func (r *result) print(w io.Writer) {
	mib := func(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "%-58s %-26s %-12s %s\n", fmt.Sprintf("jailkeeper actions, %d-ban burst (one BanMany)", r.bans), "measured", "goal", "")
	fmt.Fprintf(w, "%-58s %-26s %-12s %s\n", "idle RSS, jailkeeper actions", mib(r.idleActions), "≤ 15 MB", verdict(r.idleActions*1024 <= 15e6))
	fmt.Fprintf(w, "%-58s %-26s %-12s %s\n", "idle RSS, daemon (with the actions: drop-in)", mib(r.idleDmn), "≤ 15 MB", verdict(r.idleDmn*1024 <= 15e6))
	fmt.Fprintf(w, "%-58s %-26s %-12s %s\n", "webhook after the ban command's start: p50 / p99 / last",
		fmt.Sprintf("%s / %s / %s", r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.last.Round(time.Millisecond)), "p99 ≤ 2 s", verdict(r.p99 <= 2*time.Second))
	fmt.Fprintf(w, "%-58s %-26d %-12s %s\n", "digest mails for the burst (digest: 5s)", r.digests, "1", verdict(r.digests == 1))
	fmt.Fprintf(w, "%-58s %-26s\n", "CPU of jailkeeper actions for the burst", r.cpu.String())
	fmt.Fprintf(w, "%-58s %-26s\n", "RSS of jailkeeper actions after the burst", mib(r.afterRSS))
	fmt.Fprintf(w, "%-58s %-26s\n", "the ban command (jailkeeper ban sshd -) took", r.banCmd.Round(time.Millisecond).String())
}

func rss(tb testing.TB, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	return 0
}

// cpuTicks returns utime+stime of pid in clock ticks (1/100 s).
func cpuTicks(tb testing.TB, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return u + st
}
