package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
	"github.com/jailkeeper/jailkeeper/pkg/journal/sdjournal"
)

// newEngine builds the engine the daemon builds from the bench's config.
func newEngine(cfg string) (*jails.Engine, error) {
	c, err := config.LoadBytes([2]string{"10-bench.yaml", cfg})
	if err != nil {
		return nil, err
	}
	rt, err := c.Resolve()
	if err != nil {
		return nil, err
	}
	return jails.NewEngine(rt.Jails, rt.Whitelist, nil)
}

// ceiling compiles testdata/ceiling.c (a plain sd_journal loop: next +
// MESSAGE + realtime, unit match) and runs it runs times over dir,
// returning the best entries/s and the entries it counted.
func ceiling(tb interface {
	TempDir() string
}, dir, unit string, runs int) (float64, int, error) {
	root, err := testbed.RepoRoot()
	if err != nil {
		return 0, 0, err
	}
	bin := filepath.Join(tb.TempDir(), "ceiling")
	src := filepath.Join(root, "internal/bench/e2e/testdata/ceiling.c")
	flags, err := exec.Command("pkg-config", "--cflags", "--libs", "libsystemd").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("pkg-config libsystemd: %w", err)
	}
	args := append([]string{"-O2", "-o", bin, src}, strings.Fields(string(flags))...)
	if out, err := exec.Command("cc", args...).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("compiling %s: %v\n%s", src, err, out)
	}
	best, n := 0.0, 0
	for i := 0; i < runs; i++ {
		out, err := exec.Command(bin, dir, unit).Output()
		if err != nil {
			return 0, 0, fmt.Errorf("ceiling loop: %w", err)
		}
		f := strings.Fields(string(out))
		if len(f) != 3 {
			return 0, 0, fmt.Errorf("ceiling loop printed %q", out)
		}
		cnt, err1 := strconv.Atoi(f[0])
		secs, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil || secs <= 0 {
			return 0, 0, fmt.Errorf("ceiling loop printed %q", out)
		}
		n = cnt
		best = max(best, float64(cnt)/secs)
	}
	return best, n, nil
}

// pipelineResult is the in-process reader → engine run.
type pipelineResult struct {
	entries   int
	decisions int
	wall      time.Duration
	cpu       time.Duration // of this whole process during the run
}

// pipeline wires sdjournal.Reader → jails.Engine as the daemon does (no
// firewall, no ban table, no D-Bus) over the want entries of unit in dir,
// with a CPU profile written to profile when it is not "".
func pipeline(cfg, dir string, want int, profile string) (pipelineResult, error) {
	var res pipelineResult
	engine, err := newEngine(cfg)
	if err != nil {
		return res, err
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return res, fmt.Errorf("creating CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, fmt.Errorf("starting CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0, err := cpuTime(os.Getpid())
	if err != nil {
		return res, err
	}
	start := time.Now()
	r, err := sdjournal.Open(sdjournal.Options{Units: engine.Units(), Path: dir, LookBack: 24 * time.Hour})
	if err != nil {
		return res, err
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan []journal.Entry, 4)
	go r.Run(ctx, out)
	for res.entries < want {
		select {
		case batch := <-out:
			for _, e := range batch {
				res.decisions += len(engine.Handle(e))
			}
			res.entries += len(batch)
			sdjournal.Release(batch) // as the daemon does
		case <-time.After(10 * time.Second):
			return res, fmt.Errorf("reader stalled after %d of %d entries", res.entries, want)
		}
	}
	res.wall = time.Since(start)
	cpu1, err := cpuTime(os.Getpid())
	if err != nil {
		return res, err
	}
	res.cpu = cpu1 - cpu0
	return res, nil
}

// memResult is what the -mem-child process reports.
type memResult struct {
	Addresses  int   `json:"addresses"`
	Tracked    int   `json:"tracked"`
	RSSBefore  int64 `json:"rss_before"`
	RSSAfter   int64 `json:"rss_after"`
	HeapBefore int64 `json:"heap_before"`
	HeapAfter  int64 `json:"heap_after"`
}

// memChild feeds n distinct failing addresses (one failure each, so every
// one stays tracked) through the engine the daemon builds, and prints a
// memResult as JSON. It runs in a process of its own so that its RSS is
// the engine's.
func memChild(cfg string, n int) error {
	engine, err := newEngine(cfg)
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	m0, err := memoryOf(os.Getpid())
	if err != nil {
		return err
	}
	res := memResult{Addresses: n, RSSBefore: m0.rss, HeapBefore: int64(ms.HeapAlloc)}
	at := time.Now()
	var buf []byte
	for i := 0; i < n; i++ {
		// 198.18.0.0/15 holds 131072 addresses: go on in 10.0.0.0/8.
		var a netip.Addr
		if i < 1<<17 {
			a = netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		} else {
			a = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		buf = append(buf[:0], "Failed password for root from "...)
		buf = a.AppendTo(buf)
		buf = append(buf, " port 4711 ssh2"...)
		if d := engine.Handle(journal.Entry{Unit: "sshd.service", Identifier: "sshd", Message: string(buf), Time: at}); len(d) != 0 {
			return fmt.Errorf("address %s banned after one failure", a)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	m1, err := memoryOf(os.Getpid())
	if err != nil {
		return err
	}
	res.RSSAfter, res.HeapAfter = m1.rss, int64(ms.HeapAlloc)
	for _, s := range engine.Stats() {
		res.Tracked += s.CurrentlyFailed
	}
	runtime.KeepAlive(engine)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// runMemChild runs this program again with -mem-child and decodes its
// result.
func runMemChild(n int) (memResult, error) {
	var res memResult
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(exe, "-mem-child", strconv.Itoa(n))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return res, fmt.Errorf("memory child: %v: %s", err, stderr.String())
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("memory child printed %q: %w", out, err)
	}
	return res, nil
}
