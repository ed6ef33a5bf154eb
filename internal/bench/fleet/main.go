// Command fleet is `make bench`'s row for `jailkeeper sync`: two real
// daemons, each in its own network namespaces with its own system bus and
// sync service, and a nats-server in this process on loopback. It measures
// the idle RSS of a sync service, the time from a ban call on A to the
// address in B's kernel set (p50/p99 over single bans, polled through
// `ipset list` in B's namespace, whose own run time bounds the
// resolution), and a burst of bans on A (one BanMany) until all are in B's
// kernel, with the CPU both sync services spent and their RSS right after
// the burst and once quiet again (B then holds the 10,000 bans' keys).
// Root only.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/jailkeeper/jailkeeper/internal/bench/measure"
	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

type result struct {
	singles, burst int
	idleSync       int           // KiB
	idleCPU        time.Duration // B's sync over idleFor
	p50, p99, max  time.Duration
	burstTook      time.Duration
	cpuA, cpuB     time.Duration
	afterA, afterB int // KiB
	quietA, quietB int // KiB, 12 s after the burst
}

func main() {
	singles := flag.Int("singles", 200, "single bans timed one by one (p99 is the 2nd slowest of 200)")
	burst := flag.Int("burst", 10000, "bans in the burst")
	flag.Parse()
	res := result{singles: *singles, burst: *burst}
	r := testbed.NewRunner("bench-fleet", os.Stderr)
	err := r.Run(func(tb testing.TB) { run(tb, &res) })
	testbed.RemoveSyncBuild()
	testbed.RemoveBuild()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench fleet:", err)
		os.Exit(1)
	}
	res.print(os.Stdout)
}

// idleFor is how long the idle sync service's CPU is measured (it reads
// the bucket's last sequence once a second to notice a lost watch).
const idleFor = 20 * time.Second

const fleetJail = "jails:\n  fleet:\n    api_only: true\n    ports: [22]\n    bantime: 1h\n"

func syncDropIn(url, origin, share string) string {
	return fmt.Sprintf("sync:\n  servers: [%s]\n  origin: %s\n  share: [%s]\n", url, origin, share)
}

func run(tb testing.TB, res *result) {
	testbed.Require(tb, testbed.BedCommands...)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server not ready")
	}
	defer ns.Shutdown()
	url := ns.ClientURL()
	bed := testbed.NewBed(tb)
	a := bed.NewDaemon(tb, map[string]string{"10-sshd.yaml": testbed.SSHJailConfig, "15-fleet.yaml": fleetJail,
		"40-sync.yaml": syncDropIn(url, "hosta", "sshd")})
	hostsB, busB := testbed.NewHosts(tb), testbed.NewBus(tb)
	b := testbed.NewDaemon(tb, hostsB, busB, map[string]string{"10-base.yaml": "firewall: {backend: iptables}\n",
		"15-fleet.yaml": fleetJail, "40-sync.yaml": syncDropIn(url, "hostb", "")})
	b.Journald = testbed.StartJournald(tb) // B's own journal (it reads none: its only jail is API-only)
	for _, d := range []*testbed.Daemon{a, b} {
		d.Watchdog = 30 * time.Second
		d.Start(tb)
		d.WaitReady(tb, 30*time.Second)
	}
	sa, sb := testbed.NewSync(tb, a), testbed.NewSync(tb, b)
	sa.Start(tb, 30*time.Second)
	sb.Start(tb, 30*time.Second)
	time.Sleep(2 * time.Second)
	res.idleSync = measure.RSS(tb, sb.PID())
	cpu0 := measure.CPU(tb, sb.PID())
	time.Sleep(idleFor)
	res.idleCPU = measure.CPU(tb, sb.PID()) - cpu0

	conn, err := dbus.Connect(bed.Bus.Address)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	obj := conn.Object(dbusapi.BusName, dbusapi.Path)
	inB := func(addr string) bool { _, ok := hostsB.SrvBanned(tb, addr); return ok }

	lat := make([]time.Duration, 0, res.singles)
	for i := 0; i < res.singles; i++ {
		addr := fmt.Sprintf("203.0.113.%d", 1+i%250)
		if i >= 250 {
			addr = fmt.Sprintf("2001:db8:200::%x", i)
		}
		start := time.Now()
		if err := obj.Call(dbusapi.Interface+".Ban", 0, "sshd", addr, uint64(3600)).Err; err != nil {
			tb.Fatalf("Ban %s on A: %v", addr, err)
		}
		for !inB(addr) {
			if time.Since(start) > 10*time.Second {
				tb.Fatalf("%s not in B's kernel within 10 s", addr)
			}
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.p50, res.p99, res.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]

	addrs := make([]string, res.burst)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("2001:db8:100::%x", i+1)
	}
	count := func() int {
		n := 0
		for _, s := range hostsB.SrvSets(tb) {
			if strings.HasPrefix(s.Name, "jk-fleet-") {
				n += len(s.Members)
			}
		}
		return n
	}
	before := count()
	cpuA, cpuB := measure.CPU(tb, sa.PID()), measure.CPU(tb, sb.PID())
	start := time.Now()
	if err := obj.Call(dbusapi.Interface+".BanMany", 0, "sshd", addrs, uint64(3600)).Err; err != nil {
		tb.Fatalf("BanMany on A: %v", err)
	}
	for count() < before+res.burst {
		if time.Since(start) > 120*time.Second {
			tb.Fatalf("%d of %d bans in B's kernel within 120 s", count()-before, res.burst)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.burstTook = time.Since(start)
	res.cpuA = measure.CPU(tb, sa.PID()) - cpuA
	res.cpuB = measure.CPU(tb, sb.PID()) - cpuB
	res.afterA, res.afterB = measure.RSS(tb, sa.PID()), measure.RSS(tb, sb.PID())
	// The services return a burst's heap to the OS once quiet for 5 s
	// (checked every 5 s).
	time.Sleep(12 * time.Second)
	res.quietA, res.quietB = measure.RSS(tb, sa.PID()), measure.RSS(tb, sb.PID())
}

func (r *result) print(w io.Writer) {
	mib, verdict := measure.MiB, measure.Verdict
	row := func(what, measured, goal, v string) { measure.Row(w, what, measured, goal, v) }
	row("jailkeeper sync, two hosts, one nats-server", "measured", "goal", "")
	row("idle RSS, jailkeeper sync", mib(r.idleSync), "≤ 15 MB", verdict(r.idleSync*1024 <= 15e6))
	row(fmt.Sprintf("idle CPU, jailkeeper sync, over %s", idleFor), r.idleCPU.String(), "", "")
	row(fmt.Sprintf("ban on A → in B's kernel set, %d bans: p50 / p99 / max", r.singles),
		fmt.Sprintf("%s / %s / %s", r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.max.Round(time.Millisecond)),
		"p99 < 1 s", verdict(r.p99 < time.Second))
	row(fmt.Sprintf("%d bans on A (one BanMany) → all in B's kernel", r.burst), r.burstTook.Round(time.Millisecond).String(), "< 5 s", verdict(r.burstTook < 5*time.Second))
	row("CPU for the burst: A's sync / B's sync", fmt.Sprintf("%s / %s", r.cpuA, r.cpuB), "", "")
	row("RSS after the burst: A's sync / B's sync", fmt.Sprintf("%s / %s", mib(r.afterA), mib(r.afterB)), "", "")
	row("RSS 12 s after the burst: A's sync / B's sync", fmt.Sprintf("%s / %s", mib(r.quietA), mib(r.quietB)), "", "")
}
