// Command firewall measures jailkeeper's firewall backends inside network
// namespaces it creates (root only; the host's own tables are never
// touched): bans added per second in a 10k batch, time to restore 100k and
// 1M bans at start, TCP connect latency from an attacker namespace with 0,
// 100k and 1M unrelated bans loaded, and beside them the per-address-rule
// approach (one `iptables -I INPUT -s X -j REJECT` per ban, as fail2ban's
// default action does) at 10k bans, and the time one Verify (the watchdog's
// check) takes with 100k and 1M bans in place. It then runs each backend
// the way the daemon does at a million bans (-daemon): a drift Watcher
// listening, an import added in steps of 5,000, a restart over the full
// sets, a flush of the sets repaired by Verify, and every ban lifted in
// steps of 20,000 (expiry, unban --all). It prints one table.
//
//	go run ./internal/bench/firewall [-backends iptables,nftables] [-max 1000000] [-daemon 1100000] [-connects 2000] [-per-rule 10000]
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/vishvananda/netns"
)

func main() {
	backends := flag.String("backends", "iptables,nftables", "backends to measure, comma-separated")
	max := flag.Int("max", 1_000_000, "largest restore to measure (100k and this)")
	connects := flag.Int("connects", 2000, "TCP connects per latency measurement")
	perRule := flag.Int("per-rule", 10_000, "bans for the per-address-rule approach (0 = skip)")
	daemon := flag.Int("daemon", 1_100_000, "bans of the daemon-pattern runs (0 = skip)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal(fmt.Errorf("must run as root (it creates network namespaces)"))
	}
	fmt.Printf("%-22s %-10s %12s  %s\n", "measure", "backend", "value", "note")
	for _, name := range strings.Split(*backends, ",") {
		measureBackend(name, *max, *connects)
	}
	if *perRule > 0 {
		measurePerRule(*perRule, *connects)
	}
	if *daemon > 0 {
		for _, name := range strings.Split(*backends, ",") {
			measureDaemonPath(name, *daemon)
		}
	}
}

// importList returns n bans like the daemon's import goal: nine in ten
// IPv4 (addresses of 10.0.0.0/8, one in nine of them a /24 of
// 11.0.0.0/8), one in ten IPv6 /64s of 2001:db8::/32. The IPv4 addresses
// only ever go into sets inside the bench's namespaces.
func importList(n int) []firewall.Ban {
	bs := make([]firewall.Ban, n)
	exp := time.Now().Add(24 * time.Hour)
	for i := range bs {
		var p netip.Prefix
		switch {
		case i%10 == 9:
			k := i / 10
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(k >> 16), byte(k >> 8), byte(k), 0}), 64)
		case i%10 == 8:
			k := i / 10
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(k >> 16), byte(k >> 8), 0}), 24)
		default:
			v := uint32(0x0a000001 + i)
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
		}
		bs[i] = firewall.Ban{Jail: "sshd", Prefix: p, Expires: exp}
	}
	return bs
}

// measureDaemonPath runs a backend through the daemon's calls at n bans,
// with a drift Watcher listening as in the daemon. Its own Watcher's
// alarms are counted: the flush must raise one, the rest none.
func measureDaemonPath(name string, n int) {
	h := newHosts()
	defer h.close()
	open := func() firewall.Backend {
		b, err := firewall.New(name, firewall.Options{NetNS: h.srv})
		if err != nil {
			fatal(err)
		}
		return b
	}
	watch := func(b firewall.Backend) *firewall.Watcher {
		w, err := firewall.Watch(b)
		if err != nil {
			fatal(err)
		}
		return w
	}
	b := open()
	if err := b.Setup(layout, nil); err != nil {
		fatal(err)
	}
	w := watch(b)
	bans := importList(n)
	t0 := time.Now()
	for i := 0; i < len(bans); i += 5000 {
		if err := b.Add(bans[i:min(i+5000, len(bans))]); err != nil {
			fatal(err)
		}
	}
	row("daemon: import", name, time.Since(t0).Round(time.Millisecond).String(), fmt.Sprintf("%s bans (10 %% IPv6 /64s, 10 %% IPv4 /24s) added in steps of 5,000, Watcher listening", count(n)))
	ownAlarms := w.Check()
	w.Close()
	b.Close()

	t0 = time.Now()
	b = open()
	if err := b.Setup(layout, bans); err != nil {
		fatal(err)
	}
	row("daemon: restart", name, time.Since(t0).Round(time.Millisecond).String(), "a new backend's Setup over the full sets")
	defer b.Close()
	w = watch(b)
	defer w.Close()
	flush := []string{"ipset", "flush"}
	if name == "nftables" {
		flush = []string{"nft", "flush", "ruleset"}
	}
	if out, err := exec.Command("ip", append([]string{"netns", "exec", h.srv}, flush...)...).CombinedOutput(); err != nil {
		fatal(fmt.Errorf("%v: %v: %s", flush, err, out))
	}
	time.Sleep(100 * time.Millisecond) // the notification's way to the Watcher
	flushAlarm := w.Check()
	t0 = time.Now()
	found, err := b.Verify(layout, bans)
	if err != nil || len(found) == 0 {
		fatal(fmt.Errorf("verify after %s: %q, %v", strings.Join(flush, " "), found, err))
	}
	row("daemon: refill", name, time.Since(t0).Round(time.Millisecond).String(), fmt.Sprintf("Verify after %s puts every ban back", strings.Join(flush, " ")))
	ownAlarms = ownAlarms || w.Check()
	t0 = time.Now()
	for i := 0; i < len(bans); i += 20_000 {
		if err := b.Remove(bans[i:min(i+20_000, len(bans))]); err != nil {
			fatal(err)
		}
	}
	row("daemon: remove all", name, time.Since(t0).Round(time.Millisecond).String(), "every ban lifted in steps of 20,000 (expiry, unban --all)")
	if left, err := b.List(); err != nil || len(left) > 0 {
		fatal(fmt.Errorf("%s: %d bans left after removing all (%v)", name, len(left), err))
	}
	ownAlarms = ownAlarms || w.Check()
	row("daemon: alarms", name, fmt.Sprintf("%v/%v", flushAlarm, ownAlarms), "the Watcher's alarm for the flush / for the backend's own changes (want true/false)")
}

func row(measure, backend, value, note string) {
	fmt.Printf("%-22s %-10s %12s  %s\n", measure, backend, value, note)
}

// fatal reports err, deletes the namespaces still open (os.Exit skips
// the deferred closes) and exits.
func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	for h := range openHosts {
		h.close()
	}
	os.Exit(1)
}

// openHosts holds the namespace pairs not closed yet.
var openHosts = map[*hosts]bool{}

// hosts is a server/attacker namespace pair like testbed.NewHosts.
type hosts struct{ srv, atk string }

func newHosts() *hosts {
	b := make([]byte, 3)
	rand.Read(b)
	s := hex.EncodeToString(b)
	h := &hosts{srv: "jk-bsrv-" + s, atk: "jk-batk-" + s}
	openHosts[h] = true
	for _, c := range [][]string{
		{"netns", "add", h.srv}, {"netns", "add", h.atk},
		{"link", "add", "jkb0" + s, "type", "veth", "peer", "name", "jkb1" + s},
		{"link", "set", "jkb0" + s, "netns", h.srv}, {"link", "set", "jkb1" + s, "netns", h.atk},
		{"-n", h.srv, "addr", "add", "198.51.100.1/24", "dev", "jkb0" + s},
		{"-n", h.atk, "addr", "add", "198.51.100.2/24", "dev", "jkb1" + s},
		{"-n", h.srv, "link", "set", "lo", "up"}, {"-n", h.atk, "link", "set", "lo", "up"},
		{"-n", h.srv, "link", "set", "jkb0" + s, "up"}, {"-n", h.atk, "link", "set", "jkb1" + s, "up"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			h.close()
			fatal(fmt.Errorf("ip %s: %v: %s", strings.Join(c, " "), err, out))
		}
	}
	return h
}

func (h *hosts) close() {
	delete(openHosts, h)
	exec.Command("ip", "netns", "del", h.srv).Run()
	exec.Command("ip", "netns", "del", h.atk).Run()
}

// in runs fn on a thread inside namespace name.
func in(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- err // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// listen serves TCP on 198.51.100.1:8080 in the server namespace.
func (h *hosts) listen() net.Listener {
	var ln net.Listener
	if err := in(h.srv, func() (err error) { ln, err = net.Listen("tcp", "198.51.100.1:8080"); return }); err != nil {
		fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// connect times one TCP connect from the attacker namespace.
func (h *hosts) connect() time.Duration {
	var d time.Duration
	err := in(h.atk, func() error {
		t0 := time.Now()
		c, err := net.DialTimeout("tcp", "198.51.100.1:8080", time.Second)
		if err != nil {
			return err
		}
		d = time.Since(t0)
		return c.Close()
	})
	if err != nil {
		fatal(fmt.Errorf("connecting from %s: %w", h.atk, err))
	}
	return d
}

// latency returns the median connect time of h and of base, measured
// alternately (n each, after a warm-up) so that load from other processes
// on the machine hits both alike.
func latency(h, base *hosts, n int) (med, baseMed time.Duration) {
	var a, b []time.Duration
	for i := 0; i < n+50; i++ {
		x, y := h.connect(), base.connect()
		if i >= 50 {
			a, b = append(a, x), append(b, y)
		}
	}
	slices.Sort(a)
	slices.Sort(b)
	return a[len(a)/2], b[len(b)/2]
}

func pct(x, base time.Duration) string {
	return fmt.Sprintf("%+.1f%%", 100*(float64(x)-float64(base))/float64(base))
}

// unrelated returns n bans of addresses in 10.0.0.0/8, a range that never
// sends traffic to the namespaces.
func unrelated(n, offset int) []firewall.Ban {
	bs := make([]firewall.Ban, n)
	exp := time.Now().Add(24 * time.Hour)
	for i := range bs {
		v := uint32(0x0a000000) + uint32(offset+i) + 1
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		bs[i] = firewall.Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Expires: exp}
	}
	return bs
}

var layout = firewall.Layout{
	Jails:     []firewall.JailRules{{Name: "sshd", Ports: []uint16{22}}},
	Whitelist: []netip.Prefix{netip.MustParsePrefix("198.51.100.3/32")},
}

func measureBackend(name string, max, connects int) {
	h := newHosts()
	defer h.close()
	defer h.listen().Close()
	b, err := firewall.New(name, firewall.Options{NetNS: h.srv})
	if err != nil {
		fatal(err)
	}
	defer b.Close()
	if err := b.Setup(layout, nil); err != nil {
		fatal(err)
	}
	// The baseline: the same layout without bans in a second pair.
	base := newHosts()
	defer base.close()
	defer base.listen().Close()
	bb, err := firewall.New(name, firewall.Options{NetNS: base.srv})
	if err != nil {
		fatal(err)
	}
	defer bb.Close()
	if err := bb.Setup(layout, nil); err != nil {
		fatal(err)
	}
	med, med0 := latency(h, base, connects)
	row("connect latency", name, med.String(), fmt.Sprintf("0 bans (median of %d; baseline pair %v, %s)", connects, med0, pct(med, med0)))

	batch := unrelated(10_000, 0)
	t0 := time.Now()
	if err := b.Add(batch); err != nil {
		fatal(err)
	}
	d := time.Since(t0)
	row("add 10k batch", name, fmt.Sprintf("%.0f/s", 10_000/d.Seconds()), fmt.Sprintf("%v for 10k", d.Round(time.Millisecond)))

	for _, n := range []int{100_000, max} {
		bans := unrelated(n, 0)
		if err := b.Teardown(); err != nil {
			fatal(err)
		}
		t0 := time.Now()
		if err := b.Setup(layout, bans); err != nil {
			fatal(err)
		}
		d := time.Since(t0)
		row(fmt.Sprintf("restore %s", count(n)), name, d.Round(time.Millisecond).String(), "Setup from nothing (fresh start)")
		t0 = time.Now()
		if err := b.Setup(layout, bans); err != nil {
			fatal(err)
		}
		row(fmt.Sprintf("restart %s", count(n)), name, time.Since(t0).Round(time.Millisecond).String(), "Setup over the same bans (restart)")
		t0 = time.Now()
		found, err := b.Verify(layout, bans)
		if err != nil {
			fatal(err)
		}
		d = time.Since(t0)
		note := "Verify with every ban in place (watchdog period cost)"
		if len(found) > 0 {
			note = fmt.Sprintf("Verify reported drift: %q", found)
		}
		row(fmt.Sprintf("verify %s", count(n)), name, d.Round(100*time.Microsecond).String(), note)
		if n <= 100_000 { // reading a 1M nftables set back is quadratic in the kernel
			got, err := b.List()
			if err != nil {
				fatal(err)
			}
			if len(got) != n {
				fatal(fmt.Errorf("%s: kernel holds %d bans, want %d", name, len(got), n))
			}
		}
		med, med0 := latency(h, base, connects)
		row("connect latency", name, med.String(), fmt.Sprintf("%s bans (median of %d; 0-ban pair %v, %s)", count(n), connects, med0, pct(med, med0)))
	}
	if err := b.Teardown(); err != nil {
		fatal(err)
	}
}

func count(n int) string {
	if n >= 1_000_000 && n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return fmt.Sprintf("%dk", n/1000)
}

// measurePerRule inserts one REJECT rule per address, as fail2ban's
// iptables action does: the first 1000 by one exec each (the rate), the
// rest by iptables-restore (to reach n quickly), then measures latency.
func measurePerRule(n, connects int) {
	h := newHosts()
	defer h.close()
	defer h.listen().Close()
	base := newHosts()
	defer base.close()
	defer base.listen().Close()
	bans := unrelated(n, 0)
	execs := min(n, 1000)
	t0 := time.Now()
	for _, b := range bans[:execs] {
		out, err := exec.Command("ip", "netns", "exec", h.srv, "iptables", "-w", "-I", "INPUT", "-s", b.Prefix.Addr().String(), "-j", "REJECT").CombinedOutput()
		if err != nil {
			fatal(fmt.Errorf("iptables -I: %v: %s", err, out))
		}
	}
	d := time.Since(t0)
	row("add, 1 rule per ban", "per-rule", fmt.Sprintf("%.0f/s", float64(execs)/d.Seconds()), fmt.Sprintf("%d execs of iptables -I in %v", execs, d.Round(time.Millisecond)))
	var sb strings.Builder
	sb.WriteString("*filter\n")
	for _, b := range bans[execs:] {
		fmt.Fprintf(&sb, "-I INPUT -s %s -j REJECT\n", b.Prefix.Addr())
	}
	sb.WriteString("COMMIT\n")
	cmd := exec.Command("ip", "netns", "exec", h.srv, "iptables-restore", "--noflush", "-w")
	cmd.Stdin = strings.NewReader(sb.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		fatal(fmt.Errorf("iptables-restore: %v: %s", err, out))
	}
	med, med0 := latency(h, base, connects)
	row("connect latency", "per-rule", med.String(), fmt.Sprintf("%s rules (median of %d; 0-rule pair %v, %s)", count(n), connects, med0, pct(med, med0)))
}
