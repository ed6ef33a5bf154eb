package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// backlogRun is one backlog run of the daemon.
type backlogRun struct {
	wall, cpu time.Duration
	missed    int
}

// medianRun returns the backlog run of median wall time (the slower of the
// middle two for an even count), and whether there was any.
func (r *results) medianRun() (backlogRun, bool) {
	if len(r.backlog) == 0 {
		return backlogRun{}, false
	}
	runs := slices.Clone(r.backlog)
	slices.SortFunc(runs, func(a, b backlogRun) int { return cmp.Compare(a.wall, b.wall) })
	return runs[len(runs)/2], true
}

// results collects every number of a run; print shows what was measured,
// even when the run stopped half way.
type results struct {
	opts options

	entriesA      int
	writeRate     float64 // journald's storing rate for burst A
	idleRSS       int64
	ceiling       float64
	ceilingN      int
	pipe          pipelineResult
	regex         *regexResult
	backlog       []backlogRun // burst A, then A2, A3 …
	peakRSS       int64
	afterRSS      int64
	liveWriteRate float64
	liveWall      time.Duration
	liveLag       time.Duration
	liveCPU       time.Duration
	missedB       int
	latency       []time.Duration
	endRSS        int64
	idleParts     string
	afterParts    string
	endParts      string
	mem           *memResult
	f2b           *f2bResult
}

// f2bResult is fail2ban-server's run on burst C.
type f2bResult struct {
	idleRSS   int64
	writeRate float64
	wall      time.Duration
	cpu       time.Duration
	peakRSS   int64
	missed    int
	timedOut  bool
	latency   []time.Duration
}

type row struct{ measure, jk, peer, ratio, goal, met string }

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func perSec(r float64) string {
	if r == 0 {
		return "-"
	}
	return thousands(r) + "/s"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

func (r *results) print(w io.Writer) {
	o := r.opts
	n := r.entriesA
	if n == 0 {
		fmt.Fprintln(w, "jailkeeper bench: no burst was written; nothing to show")
		return
	}
	fmt.Fprintf(w, "\njailkeeper vs fail2ban — one run, %s sshd.service entries per burst (30 %% failures from %d attackers, 1 in 10 IPv6), maxretry %d, backend %s\n",
		thousands(float64(n)), o.addrs, o.maxRetry, o.backend)
	fmt.Fprintf(w, "journald stored the burst at %s (daemon stopped) and %s (daemon running)\n\n", perSec(r.writeRate), perSec(r.liveWriteRate))

	var rows []row
	add := func(rw row) { rows = append(rows, rw) }

	med, haveBacklog := r.medianRun()
	backlog := rate(n, med.wall)
	label := "throughput, burst already in the journal"
	if len(r.backlog) > 1 {
		label = fmt.Sprintf("throughput, burst in the journal (median of %d)", len(r.backlog))
	}
	add(row{label, perSec(backlog), "", "", "", ""})
	if r.regex != nil {
		rr := rate(r.regex.lines, r.regex.wall)
		ratio := 0.0
		if rr > 0 {
			ratio = backlog / rr
		}
		add(row{"  ÷ fail2ban-regex", perSec(backlog), perSec(rr), fmt.Sprintf("%.1f×", ratio), "≥ 20×", verdict(ratio >= 20)})
	} else {
		add(row{"  ÷ fail2ban-regex", perSec(backlog), "not run", "", "≥ 20×", "-"})
	}
	if r.ceiling > 0 {
		ratio := backlog / r.ceiling
		add(row{"  ÷ ceiling (C sd_journal loop)", perSec(backlog), perSec(r.ceiling), fmt.Sprintf("%.0f %%", 100*ratio), "≥ 50 %", verdict(ratio >= 0.5)})
	}
	if r.pipe.entries > 0 {
		add(row{"  reader → engine in process, no firewall", perSec(rate(r.pipe.entries, r.pipe.wall)), "", "", "", ""})
	}
	if haveBacklog {
		missed := 0
		for _, b := range r.backlog {
			missed += b.missed
		}
		all := o.addrs * len(r.backlog)
		add(row{"CPU for the burst (that backlog run)", secs(med.cpu), cpuPeer(r), "", "≤ 1 s", verdict(med.cpu <= time.Second)})
		add(row{"attackers banned in the kernel (backlog)", fmt.Sprintf("%d/%d", all-missed, all), f2bBanned(r), "", "all", verdict(missed == 0)})
	}
	if r.liveWall > 0 {
		add(row{"throughput, live while journald writes", perSec(rate(n, r.liveWall)), f2bLive(r), "", "", ""})
		add(row{"  last ban after the last write", ms(r.liveLag), "", "", "", ""})
		add(row{"  CPU for the burst (live run)", secs(r.liveCPU), "", "", "", ""})
		add(row{"attackers banned in the kernel (live)", fmt.Sprintf("%d/%d", o.addrs-r.missedB, o.addrs), "", "", "all", verdict(r.missedB == 0)})
	}
	if len(r.latency) > 0 {
		p50, p99 := percentile(r.latency, 50), percentile(r.latency, 99)
		var f50, f99 string
		if r.f2b != nil && len(r.f2b.latency) > 0 {
			f50, f99 = ms(percentile(r.f2b.latency, 50)), ms(percentile(r.f2b.latency, 99))
			f50 += fmt.Sprintf(" (n=%d)", len(r.f2b.latency))
		}
		add(row{fmt.Sprintf("ban latency, median (n=%d)", len(r.latency)), ms(p50), f50, "", "", ""})
		add(row{"ban latency, p99", ms(p99), f99, "", "< 10 ms", verdict(p99 < 10*time.Millisecond)})
		add(row{"ban latency, max", ms(r.latency[len(r.latency)-1]), "", "", "", ""})
	}
	if r.idleRSS > 0 {
		var peer string
		if r.f2b != nil {
			peer = mb(r.f2b.idleRSS)
		}
		add(row{"idle RSS", mb(r.idleRSS), peer, "", "≤ 15 MB", verdict(r.idleRSS <= 15e6)})
	}
	if r.peakRSS > 0 {
		var peer string
		if r.f2b != nil {
			peer = mb(r.f2b.peakRSS)
		}
		add(row{"peak RSS (VmHWM)", mb(r.peakRSS), peer, "", "", ""})
		add(row{"RSS after burst A", mb(r.afterRSS), "", "", "", ""})
		if r.endRSS > 0 {
			bursts := len(r.backlog) + 1 // the backlog runs and live burst B
			add(row{fmt.Sprintf("RSS at the end (%d bursts, %d bans)", bursts, bursts*(o.addrs+1)+len(r.latency)), mb(r.endRSS), "", "", "", ""})
		}
	}
	if m := r.mem; m != nil {
		add(row{fmt.Sprintf("RSS, %s addresses tracked (engine)", thousands(float64(m.Addresses))), mb(m.RSSAfter),
			fmt.Sprintf("%d tracked", m.Tracked), "", "", ""})
		add(row{"  heap bytes per tracked address", fmt.Sprintf("%.0f B", float64(m.HeapAfter-m.HeapBefore)/float64(m.Addresses)), "", "", "", ""})
	}

	head := row{"measure", "jailkeeper", "fail2ban / peer", "ratio", "goal", "goal met"}
	wid := []int{0, 0, 0, 0, 0, 0}
	for _, rw := range append([]row{head}, rows...) {
		for i, c := range rw.cells() {
			wid[i] = max(wid[i], len([]rune(c)))
		}
	}
	line := func(rw row) {
		var b strings.Builder
		for i, c := range rw.cells() {
			pad := wid[i] - len([]rune(c))
			if i == 0 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString("  " + strings.Repeat(" ", pad) + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(head)
	total := 0
	for _, x := range wid {
		total += x + 2
	}
	fmt.Fprintln(w, strings.Repeat("-", total-2))
	for _, rw := range rows {
		line(rw)
	}
	fmt.Fprintln(w)
	if r.regex != nil {
		fmt.Fprintf(w, "fail2ban-regex: %d lines, %d matched, %s wall, %s CPU\n", r.regex.lines, r.regex.matched, secs(r.regex.wall), secs(r.regex.cpu))
	}
	if len(r.backlog) > 0 {
		var runs []string
		for i, b := range r.backlog {
			name := "A"
			if i > 0 {
				name = fmt.Sprintf("A%d", i+1)
			}
			runs = append(runs, fmt.Sprintf("%s %s in %s, %s CPU", name, perSec(rate(n, b.wall)), secs(b.wall), secs(b.cpu)))
		}
		fmt.Fprintf(w, "jailkeeper backlog runs: %s\n", strings.Join(runs, "; "))
	}
	if f := r.f2b; f != nil {
		state := ""
		if f.timedOut {
			state = " (TIMED OUT: numbers are lower bounds)"
		}
		fmt.Fprintf(w, "fail2ban-server: burst C in %s wall, %s CPU, %d/%d attackers banned%s\n", secs(f.wall), secs(f.cpu), o.addrs-f.missed, o.addrs, state)
	}
	if r.idleParts != "" {
		fmt.Fprintf(w, "jailkeeper RSS: idle %s; after burst A %s; at the end %s\n", r.idleParts, r.afterParts, r.endParts)
	}
	if r.pipe.entries > 0 {
		fmt.Fprintf(w, "reader → engine in process: %d entries, %d decisions, %s wall, %s CPU\n", r.pipe.entries, r.pipe.decisions, secs(r.pipe.wall), secs(r.pipe.cpu))
	}
}

func (rw row) cells() []string {
	return []string{rw.measure, rw.jk, rw.peer, rw.ratio, rw.goal, rw.met}
}

func cpuPeer(r *results) string {
	var s []string
	if r.regex != nil {
		s = append(s, "regex "+secs(r.regex.cpu))
	}
	if r.f2b != nil {
		s = append(s, "server "+secs(r.f2b.cpu))
	}
	return strings.Join(s, ", ")
}

func f2bBanned(r *results) string {
	if r.f2b == nil {
		return ""
	}
	return fmt.Sprintf("server %d/%d", r.opts.addrs-r.f2b.missed, r.opts.addrs)
}

func f2bLive(r *results) string {
	if r.f2b == nil || r.f2b.wall <= 0 {
		return ""
	}
	return "server " + perSec(rate(r.entriesA, r.f2b.wall))
}
