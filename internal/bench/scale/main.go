// Command scale is `make bench`'s section on a million bans through the
// whole daemon: a real daemon on the test bed (private journald, system
// bus, network namespaces), per backend (iptables+ipset, nftables):
//
//   - import: `jailkeeper ban sshd - --for D` of n entries (IPv4 addresses
//     and /24s, plus a tenth IPv6 /64s), from the CLI's start until it
//     returns (the daemon puts each step in the kernel before it answers;
//     for ipset the count in the kernel is checked afterwards), with
//     `jailkeeper status` run every 100 ms meanwhile (its slowest answer,
//     the CLI's own start included) and a live attacker banned from the
//     journal mid-import (from its third failure to a refused dial);
//   - the daemon's RSS after the import and the state file's size;
//   - restart with the kernel sets full: stop → READY=1, while a banned
//     address is probed continuously (a TCP connect from the attacker's
//     namespace must never get through);
//   - a reboot: stop, the layout and its sets removed, start → READY=1;
//   - the expiry of all n bans at once (status polled the same way);
//   - the same import again while n attacker addresses are tracked (one
//     failure each, written through journald before it).
//
// Root only. The addresses are 10.0.0.0/8 and 100.64.0.0/10 (only ever in
// sets inside the bench's namespaces) and 2001:db8::/32.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/bench/measure"
	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/firewall"
)

// run is one backend's measurements of one run.
type run struct {
	importTook, trackedTook     time.Duration
	statusImport, statusTracked time.Duration // slowest status answer
	statusExpiry                time.Duration
	expiryTook                  time.Duration // first expiry due → status says 0
	detect, detectTracked       time.Duration // live attacker's 3rd failure → kernel
	restartReady, rebootReady   time.Duration
	leaks, probes               int
	rssKiB                      int
	stateBytes                  int64
	inKernel                    int
	tracked                     int
}

var (
	flagN       = flag.Int("n", 1_000_000, "IPv4 entries to import (plus a tenth as many IPv6 /64s)")
	flagRuns    = flag.Int("runs", 1, "runs per backend (medians are printed)")
	flagBackend = flag.String("backends", "iptables,nftables", "backends, comma-separated")
	flagFor     = flag.Duration("for", 90*time.Second, "the imported bans' duration (must outlast import, restart and reboot)")
	flagTracked = flag.Bool("tracked", true, "also import while n attacker addresses are tracked")
	flagProf    = flag.String("cpuprofile-dir", "", "write the daemon's CPU profile of each start there (JAILKEEPER_CPUPROFILE)")
)

func main() {
	flag.Parse()
	if *flagProf != "" {
		// Set before the build: it gives jailkeeperd its profiling hook.
		os.Setenv("JAILKEEPER_CPUPROFILE", filepath.Join(*flagProf, "unused.prof"))
	}
	results := map[string][]run{}
	backends := strings.Split(*flagBackend, ",")
	r := testbed.NewRunner("bench-scale", os.Stderr)
	err := r.Run(func(tb testing.TB) {
		testbed.Require(tb, testbed.BedCommands...)
		for i := range *flagRuns {
			for _, be := range backends {
				res := oneRun(tb, be, i)
				results[be] = append(results[be], res)
			}
		}
	})
	testbed.RemoveBuild()
	print(backends, results)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench scale:", err)
		os.Exit(1)
	}
}

// list is the import: n IPv4 entries of 10.0.0.0/8 (one in 100 a /24
// further up the range), n/10 IPv6 /64s, and the attacker's own address
// (the restart probe's banned address).
func list(n int) (string, int) {
	var b strings.Builder
	b.Grow(n * 16)
	count, nets := 0, 0
	for i := 0; i < n; i++ {
		if i%100 == 99 {
			fmt.Fprintf(&b, "10.%d.%d.0/24\n", 200+nets>>8, nets&0xff)
			nets++
		} else {
			fmt.Fprintf(&b, "10.%d.%d.%d\n", i>>16&0xff, i>>8&0xff, i&0xff)
		}
		count++
	}
	for i := 0; i < n/10; i++ {
		fmt.Fprintf(&b, "2001:db8:%x:%x::/64\n", 0x100+i>>16, i&0xffff)
		count++
	}
	b.WriteString("198.51.100.2\n")
	return b.String(), count + 1
}

var bannedNow = regexp.MustCompile(`sshd: (\d+) failed now, (\d+) banned now`)

// status runs `jailkeeper status` and returns sshd's failing and banned
// counts and how long it took.
func status(d *testbed.Daemon) (failed, banned int, took time.Duration, err error) {
	start := time.Now()
	out, err := jk(d, "", "status")
	took = time.Since(start)
	if err != nil {
		return 0, 0, took, fmt.Errorf("status: %v: %s", err, out)
	}
	m := bannedNow.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, took, fmt.Errorf("status: no sshd line in %q", out)
	}
	failed, _ = strconv.Atoi(m[1])
	banned, _ = strconv.Atoi(m[2])
	return failed, banned, took, nil
}

func jk(d *testbed.Daemon, stdin string, args ...string) (string, error) {
	cmd := exec.Command(d.Bin, args...)
	cmd.Env = append(os.Environ(), d.Bus.Env())
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// poller runs status every 100 ms until stopped and keeps the slowest.
type poller struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	slowest time.Duration
	polls   int
	err     error
	last    int // banned, as of the last answer
}

func poll(d *testbed.Daemon) *poller {
	p := &poller{stop: make(chan struct{}), last: -1}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			_, b, took, err := status(d)
			p.polls++
			p.slowest = max(p.slowest, took)
			if err != nil && p.err == nil {
				p.err = err
			}
			if err == nil {
				p.last = b
			}
		}
	}()
	return p
}

func (p *poller) done() { close(p.stop); p.wg.Wait() }

// attacker writes three sshd failures of addr (maxretry 3) and returns the
// time from the third to the ban: a TCP dial from addr (an address of the
// attacker namespace, addAttacker) to the server's sshd refused. A dial,
// not a look into the set: `nft get element` reads the whole set of a
// million elements first.
func attacker(tb testing.TB, bed *testbed.Bed, addr string) time.Duration {
	w, err := testbed.NewUnitWriter("sshd.service", testbed.WriterOptions{Journald: bed.Journald})
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Close()
	for i := range 3 {
		if err := w.Write(fmt.Sprintf("Failed password for root from %s port %d ssh2", addr, 40000+i)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < 60*time.Second {
		if refused(bed.Hosts, addr) {
			return time.Since(start)
		}
		time.Sleep(2 * time.Millisecond)
	}
	tb.Errorf("live attacker %s not banned within 60 s", addr)
	return -1
}

// addAttacker gives the attacker namespace addr and the server a route to
// it.
func addAttacker(tb testing.TB, h *testbed.Hosts, addr string) {
	h.AddAttackerAddr(tb, addr+"/32")
	h.RouteToAttacker(tb, addr+"/32")
}

// refused reports whether a TCP dial from src (in the attacker namespace)
// to the server's sshd is refused (the ban's REJECT with a reset).
func refused(h *testbed.Hosts, src string) bool {
	c, err := h.AtkDialFrom(src, "198.51.100.1:22", time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// kernelCount counts the elements of the sshd ban sets from the headers of
// `ipset list -t`; -1 for nftables, whose sets say no count (a netlink dump
// of a million elements through google/nftables came back short, and
// `nft list set` takes minutes): there the CLI's return (each step is in
// the kernel before the daemon answers) and the dials stand for it.
func kernelCount(tb testing.TB, h *testbed.Hosts, backend string) int {
	if backend == "nftables" {
		return -1
	}
	out, err := h.InSrv("ipset", "list", "-t").CombinedOutput()
	if err != nil {
		tb.Fatalf("ipset list -t: %v\n%s", err, out)
	}
	n, name := 0, ""
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Name: "); ok {
			name = v
		}
		if v, ok := strings.CutPrefix(line, "Number of entries: "); ok && strings.HasPrefix(name, "jk-sshd-") {
			m, _ := strconv.Atoi(v)
			n += m
		}
	}
	return n
}

// trackFlood writes one failure for each of n addresses of 100.64.0.0/10
// and waits until the daemon tracks them.
func trackFlood(tb testing.TB, bed *testbed.Bed, d *testbed.Daemon, n int) int {
	w, err := testbed.NewUnitWriter("sshd.service", testbed.WriterOptions{Journald: bed.Journald})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if err := w.Write(fmt.Sprintf("Failed password for root from 100.%d.%d.%d port 22 ssh2", 64+i>>16&0x3f, i>>8&0xff, i&0xff)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if f, _, _, err := status(d); err == nil && f >= n {
			return f
		}
		time.Sleep(500 * time.Millisecond)
	}
	f, _, _, _ := status(d)
	tb.Errorf("the daemon tracks %d of %d attacker addresses after 5 min", f, n)
	return f
}

// startDaemon starts d, with a CPU profile file of its own when asked.
func startDaemon(tb testing.TB, d *testbed.Daemon, name string) time.Duration {
	if *flagProf != "" {
		os.Setenv("JAILKEEPER_CPUPROFILE", filepath.Join(*flagProf, name+".prof"))
	}
	start := time.Now()
	d.Start(tb)
	d.WaitReady(tb, 2*time.Minute)
	return time.Since(start)
}

func oneRun(tb testing.TB, backend string, i int) run {
	var res run
	bed := testbed.NewBed(tb)
	d := bed.NewDaemon(tb, map[string]string{"10-sshd.yaml": testbed.SSHJailConfig, "20-backend.yaml": "firewall: {backend: " + backend + "}\n"})
	d.Watchdog = 30 * time.Second
	tag := fmt.Sprintf("%s-%d", backend, i+1)
	for _, a := range []string{"203.0.113.7", "203.0.113.8"} {
		addAttacker(tb, bed.Hosts, a)
		if refused(bed.Hosts, a) {
			tb.Fatalf("%s is refused before any ban", a)
		}
	}
	startDaemon(tb, d, tag+"-start")
	text, n := list(*flagN)
	forArg := fmt.Sprintf("%ds", int(flagFor.Seconds()))

	importing := func(live string) (time.Duration, time.Duration, time.Duration) {
		cpuD, cpuJ, cpuB := measure.CPU(tb, d.PID()), measure.CPU(tb, bed.Journald.PID()), measure.CPU(tb, bed.Bus.PID)
		p := poll(d)
		var detect time.Duration
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Second) // the import is under way
			detect = attacker(tb, bed, live)
		}()
		start := time.Now()
		cmd := exec.Command(d.Bin, "ban", "sshd", "-", "--for", forArg)
		cmd.Env = append(os.Environ(), d.Bus.Env())
		cmd.Stdin = strings.NewReader(text)
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		cpuD, cpuJ, cpuB = measure.CPU(tb, d.PID())-cpuD, measure.CPU(tb, bed.Journald.PID())-cpuJ, measure.CPU(tb, bed.Bus.PID)-cpuB
		p.done()
		wg.Wait()
		if err != nil {
			tb.Fatalf("ban sshd -: %v\n%s", err, out)
		}
		fmt.Fprintf(os.Stderr, "bench scale: %s: CPU during the import: daemon %v, CLI %v, journald %v, dbus-daemon %v\n", tag,
			cpuD, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime(), cpuJ, cpuB)
		if p.err != nil {
			tb.Errorf("status during the import: %v", p.err)
		}
		fmt.Fprintf(os.Stderr, "bench scale: %s: import of %d: %v; status max %v over %d polls; live attacker banned after %v\n",
			tag, n, took.Round(time.Millisecond), p.slowest.Round(time.Millisecond), p.polls, detect.Round(time.Millisecond))
		return took, p.slowest, detect
	}

	importStart := time.Now()
	res.importTook, res.statusImport, res.detect = importing("203.0.113.7")
	res.inKernel = kernelCount(tb, bed.Hosts, backend)
	if res.inKernel >= 0 && res.inKernel < n {
		tb.Errorf("%s: %d bans in the kernel after the import, want at least %d", tag, res.inKernel, n)
	}
	res.rssKiB = measure.RSS(tb, d.PID())
	if fi, err := os.Stat(filepath.Join(d.StateDir, bans.FileName)); err == nil {
		res.stateBytes = fi.Size()
	}

	// Restart with full sets, probing the banned attacker address.
	var probes, leaks atomic.Int64
	probeStop := make(chan struct{})
	var probeWG sync.WaitGroup
	probeWG.Add(1)
	go func() {
		defer probeWG.Done()
		for {
			select {
			case <-probeStop:
				return
			default:
			}
			probes.Add(1)
			if c, err := bed.Hosts.AtkDialFrom("198.51.100.2", "198.51.100.1:22", time.Second); err == nil {
				c.Close()
				leaks.Add(1) // through to sshd
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if probes.Load() == 0 || leaks.Load() > 0 {
		tb.Errorf("%s: the banned address got through %d of %d probes before the restart", tag, leaks.Load(), probes.Load())
	}
	probes.Store(0)
	leaks.Store(0)
	if err := d.Stop(tb); err != nil {
		tb.Fatalf("stopping: %v", err)
	}
	res.restartReady = startDaemon(tb, d, tag+"-restart")
	time.Sleep(200 * time.Millisecond)
	close(probeStop)
	probeWG.Wait()
	res.probes, res.leaks = int(probes.Load()), int(leaks.Load())
	fmt.Fprintf(os.Stderr, "bench scale: %s: restart → READY=1 %v; probes %d, got through %d\n", tag, res.restartReady.Round(time.Millisecond), res.probes, res.leaks)

	// A reboot: the layout and the sets are gone.
	if err := d.Stop(tb); err != nil {
		tb.Fatalf("stopping: %v", err)
	}
	fw, err := firewall.New(backend, firewall.Options{NetNS: bed.Hosts.Srv})
	if err != nil {
		tb.Fatal(err)
	}
	if err := fw.Teardown(); err != nil {
		tb.Fatalf("removing the layout: %v", err)
	}
	fw.Close()
	res.rebootReady = startDaemon(tb, d, tag+"-reboot")
	if k := kernelCount(tb, bed.Hosts, backend); k >= 0 && k < n {
		tb.Errorf("%s: %d bans in the kernel after the reboot, want at least %d", tag, k, n)
	}
	fmt.Fprintf(os.Stderr, "bench scale: %s: reboot → READY=1 %v\n", tag, res.rebootReady.Round(time.Millisecond))

	// The expiry of the imported bans, all due within a second.
	due := importStart.Add(*flagFor)
	if wait := time.Until(due) - 2*time.Second; wait > 0 {
		time.Sleep(wait)
	} else {
		tb.Errorf("%s: the bans expired before the expiry was watched: raise -for", tag)
	}
	p := poll(d)
	for time.Since(due) < 5*time.Minute {
		if _, b, _, err := status(d); err == nil && b <= 1 { // the live attacker's own ban lasts 1h
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.expiryTook = time.Since(due)
	p.done()
	res.statusExpiry = p.slowest
	fmt.Fprintf(os.Stderr, "bench scale: %s: expiry done %v after the first was due; status max %v over %d polls\n", tag, res.expiryTook.Round(time.Millisecond), p.slowest.Round(time.Millisecond), p.polls)

	if *flagTracked {
		res.tracked = trackFlood(tb, bed, d, *flagN)
		res.trackedTook, res.statusTracked, res.detectTracked = importing("203.0.113.8")
	}
	if err := d.Stop(tb); err != nil {
		tb.Errorf("stopping: %v", err)
	}
	return res
}

func median(rs []run, f func(run) time.Duration) time.Duration {
	v := make([]time.Duration, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func print(backends []string, results map[string][]run) {
	var b bytes.Buffer
	n, runs := *flagN, *flagRuns
	fmt.Fprintf(&b, "a million bans through the daemon: %d IPv4 entries + %d IPv6 /64s + 1, --for %v, median of %d\n\n", n, n/10, *flagFor, runs)
	for _, be := range backends {
		rs := results[be]
		if len(rs) == 0 {
			continue
		}
		all := func(f func(run) time.Duration) string {
			var s []string
			for _, r := range rs {
				s = append(s, fmt.Sprintf("%.2f", f(r).Seconds()))
			}
			return strings.Join(s, " / ")
		}
		fmt.Fprintf(&b, "%s\n", be)
		measure.Row(&b, "import: CLI start → CLI done (all in the kernel)", ms(median(rs, func(r run) time.Duration { return r.importTook })), "< 10 s", measure.Verdict(median(rs, func(r run) time.Duration { return r.importTook }) < 10*time.Second))
		measure.Row(&b, "  status max during the import (every 100 ms)", ms(median(rs, func(r run) time.Duration { return r.statusImport })), "< 200 ms", measure.Verdict(median(rs, func(r run) time.Duration { return r.statusImport }) < 200*time.Millisecond))
		measure.Row(&b, "  live attacker: 3rd failure → kernel, during it", ms(median(rs, func(r run) time.Duration { return r.detect })), "", "")
		measure.Row(&b, "daemon RSS after the import", measure.MiB(rs[len(rs)/2].rssKiB), "stated", "")
		measure.Row(&b, "state file with the bans", fmt.Sprintf("%.1f MB", float64(rs[len(rs)/2].stateBytes)/1e6), "stated", "")
		measure.Row(&b, "restart, sets full: start → READY=1", ms(median(rs, func(r run) time.Duration { return r.restartReady })), "< 2 s", measure.Verdict(median(rs, func(r run) time.Duration { return r.restartReady }) < 2*time.Second))
		leaks, probes := 0, 0
		for _, r := range rs {
			leaks, probes = leaks+r.leaks, probes+r.probes
		}
		measure.Row(&b, "  banned address probed during it: got through", fmt.Sprintf("%d of %d", leaks, probes), "0", measure.Verdict(leaks == 0))
		measure.Row(&b, "reboot, sets empty: start → READY=1", ms(median(rs, func(r run) time.Duration { return r.rebootReady })), "< 3 s", measure.Verdict(median(rs, func(r run) time.Duration { return r.rebootReady }) < 3*time.Second))
		measure.Row(&b, "expiry of all: due → status says none", ms(median(rs, func(r run) time.Duration { return r.expiryTook })), "", "")
		measure.Row(&b, "  status max during the expiry", ms(median(rs, func(r run) time.Duration { return r.statusExpiry })), "< 200 ms", measure.Verdict(median(rs, func(r run) time.Duration { return r.statusExpiry }) < 200*time.Millisecond))
		if *flagTracked {
			measure.Row(&b, fmt.Sprintf("import while %d addresses are tracked", rs[0].tracked), ms(median(rs, func(r run) time.Duration { return r.trackedTook })), "< 15 s", measure.Verdict(median(rs, func(r run) time.Duration { return r.trackedTook }) < 15*time.Second))
			measure.Row(&b, "  status max during it", ms(median(rs, func(r run) time.Duration { return r.statusTracked })), "< 200 ms", measure.Verdict(median(rs, func(r run) time.Duration { return r.statusTracked }) < 200*time.Millisecond))
			measure.Row(&b, "  live attacker: 3rd failure → kernel, during it", ms(median(rs, func(r run) time.Duration { return r.detectTracked })), "", "")
		}
		fmt.Fprintf(&b, "runs: import %s s; restart %s s; reboot %s s; status max %s s; in the kernel after the import %d\n\n",
			all(func(r run) time.Duration { return r.importTook }), all(func(r run) time.Duration { return r.restartReady }),
			all(func(r run) time.Duration { return r.rebootReady }), all(func(r run) time.Duration { return r.statusImport }), rs[0].inKernel)
	}
	os.Stdout.Write(b.Bytes())
}
