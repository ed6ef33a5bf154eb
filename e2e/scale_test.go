package e2e

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// kernelBans is the number of entries of jailkeeper's ban sets (not the
// whitelist sets) in the server namespace: from `ipset list -t` for
// iptables, by counting the elements `nft list set` prints for nftables.
func kernelBans(t *testing.T, h *testbed.Hosts, backend string) int {
	t.Helper()
	if backend == "nftables" {
		n := 0
		for _, set := range []string{"sshd-4", "sshd-24", "sshd-n4", "sshd-6", "sshd-64", "sshd-n6"} {
			out, err := h.InSrv("nft", "list", "set", "inet", "jailkeeper", set).CombinedOutput()
			if err != nil {
				continue // no such set (yet), or the table is gone
			}
			_, elems, ok := strings.Cut(string(out), "elements = {")
			if !ok {
				continue
			}
			elems, _, _ = strings.Cut(elems, "}")
			n += strings.Count(elems, ",") + 1
		}
		return n
	}
	out, err := h.InSrv("ipset", "list", "-t").CombinedOutput()
	if err != nil {
		t.Fatalf("ipset list -t: %v\n%s", err, out)
	}
	n := 0
	name := ""
	var nonEmpty []string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Name: "); ok {
			name = v
		}
		if v, ok := strings.CutPrefix(line, "Number of entries: "); ok &&
			strings.HasPrefix(name, testbed.SetPrefix) && !strings.HasPrefix(name, testbed.WhitelistSetPrefix) {
			m, _ := strconv.Atoi(v)
			n += m
			if m > 0 {
				nonEmpty = append(nonEmpty, name)
			}
		}
	}
	if n > 10_000 {
		return n
	}
	// A header's count includes elements whose timeout has passed until
	// the kernel's garbage collection drops them (a delete of such an
	// element fails, so it stays counted): small sets are counted by
	// their members, which a listing shows only while they are live.
	n = 0
	for _, name := range nonEmpty {
		out, err := h.InSrv("ipset", "list", name).CombinedOutput()
		if err != nil {
			t.Fatalf("ipset list %s: %v\n%s", name, err, out)
		}
		_, members, _ := strings.Cut(string(out), "Members:\n")
		n += strings.Count(members, "\n")
	}
	return n
}

// liveAttacker writes maxretry (3) sshd failures of addr to the journal
// and returns how long after they were stored a TCP dial from addr (an
// address of the attacker namespace, in the veth's subnet) to the
// server's sshd was refused, or an error after timeout. A dial, not a look
// into the set: `nft get element` reads the whole set first.
func liveAttacker(bed *testbed.Bed, addr string, timeout time.Duration) (time.Duration, error) {
	var msgs []string
	for i := range 3 {
		msgs = append(msgs, fmt.Sprintf("Failed password for root from %s port %d ssh2", addr, 50000+i))
	}
	if err := bed.Journald.WriteAsUnit("sshd.service", msgs); err != nil {
		return 0, err
	}
	start := time.Now()
	for time.Since(start) < timeout {
		c, err := bed.Hosts.AtkDialFrom(addr, testbed.SrvAddr4+":22", time.Second)
		if err == nil {
			c.Close()
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			return time.Since(start), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s not banned %v after its failures were in the journal", addr, timeout)
}

// pollStatus runs `jailkeeper status` every 100 ms until stop is closed,
// and reports the slowest answer, the number of polls and the first
// error through done.
func pollStatus(d *testbed.Daemon, stop <-chan struct{}) (done func() (time.Duration, int, error)) {
	var wg sync.WaitGroup
	var slowest time.Duration
	var polls int
	var pollErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			_, took, err := statusBanned(d)
			polls++
			slowest = max(slowest, took)
			if err != nil && pollErr == nil {
				pollErr = err
			}
		}
	}()
	return func() (time.Duration, int, error) {
		wg.Wait()
		return slowest, polls, pollErr
	}
}

var bannedNow = regexp.MustCompile(`sshd: \d+ failed now, (\d+) banned now`)

// statusBanned runs `jailkeeper status` and returns sshd's bans and how
// long the command took.
func statusBanned(d *testbed.Daemon) (int, time.Duration, error) {
	start := time.Now()
	out, err := jk(d, "", "status")
	took := time.Since(start)
	if err != nil {
		return 0, took, fmt.Errorf("status: %v\n%s", err, out)
	}
	m := bannedNow.FindStringSubmatch(out)
	if m == nil {
		return 0, took, fmt.Errorf("status: no sshd line in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n, took, nil
}

// TestImport100k: `jailkeeper ban sshd -` of 100,000 entries reaches the
// kernel and the status, with `jailkeeper status` (polled every 100 ms)
// answering throughout and an attacker in the journal banned meanwhile;
// the bans survive a restart (kernel sets full) and a flush of the
// kernel's sets or ruleset (the watchdog puts them back); `unban --all`
// lifts them; imported again for a few seconds they all expire at once
// with status answering throughout; on iptables+ipset and on nftables, in
// parallel. The entries
// are IPv6 addresses and /64s inside 2001:db8::/32 plus the IPv4
// addresses of 203.0.113.0/24 (documentation ranges only: IPv4 has too
// few of them for 100,000). JK_IMPORT_N=1000000 runs it with that many
// (docs/bench.md's 1M rows).
func TestImport100k(t *testing.T) {
	for _, backend := range []string{"iptables", "nftables"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			if backend == "nftables" {
				testbed.Require(t, "nft")
			}
			testImport(t, backend)
		})
	}
}

func testImport(t *testing.T, backend string) {
	bed, d := startDaemon(t, "firewall: {backend: "+backend+"}\n")
	h := bed.Hosts
	for _, a := range []string{"198.51.100.9", "198.51.100.10"} { // the live attackers
		h.AddAttackerAddr(t, a+"/32")
		c, err := h.AtkDialFrom(a, testbed.SrvAddr4+":22", 5*time.Second)
		if err != nil {
			t.Fatalf("%s cannot reach sshd before any ban: %v", a, err)
		}
		c.Close()
	}
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("JK_IMPORT_N")); err == nil && v > 1000 {
		n = v
	}
	var list strings.Builder
	count := 0
	for i := 1; i < 255; i++ {
		fmt.Fprintf(&list, "203.0.113.%d\n", i)
		count++
	}
	for i := 0; count < n; i++ {
		if i%2 == 0 {
			fmt.Fprintf(&list, "2001:db8:%x:%x::/64\n", 0x1000+i>>16, i&0xffff)
		} else {
			fmt.Fprintf(&list, "2001:db8:%x::%x\n", 0x8000+i>>16, i&0xffff)
		}
		count++
	}

	// A bad line bans nothing and is named; --skip-bad bans the rest
	// (below) and lists it.
	cut := strings.Index(list.String(), "203.0.113.20\n")
	withBad := "198.51.100.77\n" + list.String()[:cut] + "not-an-address\n" + list.String()[cut:]
	badLine := 1 + 19 + 1 // 198.51.100.77, 203.0.113.1–19, then the bad line
	out, err := jk(d, withBad, "ban", "sshd", "-", "--for", "1h")
	if err == nil || !strings.Contains(out, fmt.Sprintf("stdin line %d:", badLine)) {
		t.Fatalf("list with a bad line: %v %q, want an error naming line %d", err, out, badLine)
	}
	if k := kernelBans(t, h, backend); k != 0 {
		t.Fatalf("a list with a bad line was partly applied: %d bans in the kernel", k)
	}

	// Poll status every 100 ms while the import runs, and let an
	// attacker fail in the journal once it is under way.
	stop := make(chan struct{})
	polled := pollStatus(d, stop)
	attacked := make(chan error, 1)
	var detect time.Duration
	go func() {
		time.Sleep(300 * time.Millisecond)
		var err error
		detect, err = liveAttacker(bed, "198.51.100.9", 10*time.Second)
		attacked <- err
	}()
	start := time.Now()
	out, err = jk(d, withBad, "ban", "sshd", "-", "--for", "1h", "--skip-bad")
	imported := time.Since(start)
	if err != nil {
		close(stop)
		polled()
		<-attacked
		t.Fatalf("ban sshd -: %v\n%s", err, out)
	}
	if !strings.Contains(out, fmt.Sprintf("skipped stdin line %d:", badLine)) || !strings.Contains(out, "1 bad lines skipped") {
		t.Errorf("ban --skip-bad said %q, want the bad line named", out)
	}
	n++ // 198.51.100.77
	waitUntil(t, 30*time.Second+time.Duration(n)*100*time.Microsecond, func() bool { return kernelBans(t, h, backend) >= n })
	allIn := time.Since(start)
	close(stop)
	slowest, polls, pollErr := polled()
	if err := <-attacked; err != nil {
		t.Errorf("during the import: %v", err)
	}
	n++ // the live attacker
	t.Logf("%s: import of %d: CLI %v, all in the kernel after %v; status max %v over %d polls; live attacker banned after %v",
		backend, n-1, imported.Round(time.Millisecond), allIn.Round(time.Millisecond), slowest.Round(time.Millisecond), polls, detect.Round(time.Millisecond))
	if pollErr != nil {
		t.Fatal(pollErr)
	}
	// The goal is 200 ms; the bound is generous for a 2-core host shared
	// with other builds (the CLI's own start is part of each poll).
	if slowest > 2*time.Second {
		t.Errorf("jailkeeper status took up to %v during the import", slowest)
	}
	check := func(when string) {
		t.Helper()
		if k := kernelBans(t, h, backend); k != n {
			t.Errorf("%s: %d bans in the kernel, want %d", when, k, n)
		}
		if b, _, err := statusBanned(d); err != nil || b != n {
			t.Errorf("%s: status says %d banned (%v), want %d", when, b, err, n)
		}
	}
	check("after the import")

	if err := d.Stop(t); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	start = time.Now()
	d.Start(t)
	d.WaitReady(t, readyTimeout)
	t.Logf("restart with %d bans: READY=1 after %v", n, time.Since(start).Round(time.Millisecond))
	check("after the restart")

	flush := []string{"ipset", "flush"}
	if backend == "nftables" {
		flush = []string{"nft", "flush", "ruleset"}
	}
	if out, err := h.InSrv(flush[0], flush[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", flush, err, out)
	}
	flushed := time.Now()
	waitUntil(t, d.Watchdog+30*time.Second, func() bool { return kernelBans(t, h, backend) == n })
	t.Logf("sets refilled %v after %s", time.Since(flushed).Round(time.Millisecond), strings.Join(flush, " "))
	check("after the flush")

	start = time.Now()
	out, err = jk(d, "", "unban", "--jail", "sshd", "--all")
	if err != nil || !strings.Contains(out, fmt.Sprintf("(%d bans lifted)", n)) {
		t.Fatalf("unban --all: %v %q", err, out)
	}
	t.Logf("unban --jail sshd --all of %d: %v", n, time.Since(start).Round(time.Millisecond))
	if k := kernelBans(t, h, backend); k != 0 {
		t.Errorf("after unban --all: %d bans in the kernel", k)
	}
	if b, _, err := statusBanned(d); err != nil || b != 0 {
		t.Errorf("after unban --all: status says %d banned (%v)", b, err)
	}

	// The list again for 4 s: all of it expires at once, status answers
	// throughout and detection goes on.
	start = time.Now()
	if out, err := jk(d, withBad, "ban", "sshd", "-", "--for", "4s", "--skip-bad"); err != nil {
		t.Fatalf("ban sshd - --for 4s: %v\n%s", err, out)
	}
	due := start.Add(4 * time.Second)
	time.Sleep(time.Until(due) - 500*time.Millisecond)
	stop = make(chan struct{})
	polled = pollStatus(d, stop)
	go func() {
		time.Sleep(time.Until(due) + 200*time.Millisecond)
		var err error
		detect, err = liveAttacker(bed, "198.51.100.10", 10*time.Second)
		attacked <- err
	}()
	waitUntil(t, 60*time.Second, func() bool { b, _, err := statusBanned(d); return err == nil && b == 1 }) // the attacker's ban
	cleared := time.Since(due)
	close(stop)
	slowest, polls, pollErr = polled()
	if err := <-attacked; err != nil {
		t.Errorf("during the expiry: %v", err)
	}
	t.Logf("%s: expiry of %d: status says so %v after they were due; status max %v over %d polls; live attacker banned after %v",
		backend, n-1, cleared.Round(time.Millisecond), slowest.Round(time.Millisecond), polls, detect.Round(time.Millisecond))
	if pollErr != nil {
		t.Fatal(pollErr)
	}
	if slowest > 2*time.Second {
		t.Errorf("jailkeeper status took up to %v during the expiry", slowest)
	}
	if k := kernelBans(t, h, backend); k != 1 { // the second attacker (unban --all lifted the first)
		cmd := []string{"ipset", "list"}
		if backend == "nftables" {
			cmd = []string{"nft", "list", "table", "inet", "jailkeeper"}
		}
		out, _ := h.InSrv(cmd[0], cmd[1:]...).CombinedOutput()
		t.Errorf("after the expiry: %d bans in the kernel, want the attacker's; %s:\n%s", k, strings.Join(cmd, " "), out)
	}
}
