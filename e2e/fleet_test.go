package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

// procCPU is the user and system CPU time of a process so far.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

// vmRSS is a process's VmRSS line.
func vmRSS(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// syncDropIn is the sync section of one host, against the test's NATS.
func syncDropIn(url, origin string, share ...string) string {
	return fmt.Sprintf("sync:\n  servers: [%s]\n  origin: %s\n  share: [%s]\n  max_bantime: 1h\n", url, origin, strings.Join(share, ", "))
}

// fleetJail takes the fleet's bans: API-only, no filter, no units.
const fleetJail = `jails:
  fleet:
    api_only: true
    ports: [22]
    bantime: 1h
`

// TestFleet: two hosts, each a real daemon with its own namespaces, system
// bus and `jailkeeper sync`, share bans through a real nats-server (in this
// process, on loopback): a real sshd attacker banned on A is refused by B
// within a second; a short ban expires on both; B, offline during a ban
// of A, catches up on its return, and so does B's daemon; a 10,000-ban
// burst reaches B's kernel whole; A's sync, restarted, reconciles its
// 10,000 bans in pages and publishes only the one made while it was away; a
// fleet unban lifts the ban on both.
// (B's whitelist against A and C: TestFleetFailover.)
func TestFleet(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.BedCommands...)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer ns.Shutdown()
	url := ns.ClientURL()

	bed := testbed.NewBed(t)
	a := bed.NewDaemon(t, map[string]string{"10-sshd.yaml": testbed.SSHJailConfig, "15-fleet.yaml": fleetJail,
		"40-sync.yaml": syncDropIn(url, "hosta", "sshd")})
	hostsB := testbed.NewHosts(t)
	busB := testbed.NewBus(t)
	b := testbed.NewDaemon(t, hostsB, busB, map[string]string{
		"10-base.yaml":  "firewall: {backend: iptables}\n",
		"15-fleet.yaml": fleetJail, "40-sync.yaml": syncDropIn(url, "hostb")})
	b.Journald = testbed.StartJournald(t) // B's own journal: it reads none (its only jail is API-only) and logs there
	a.Start(t)
	b.Start(t)
	a.WaitReady(t, readyTimeout)
	b.WaitReady(t, readyTimeout)
	sa, sb := testbed.NewSync(t, a), testbed.NewSync(t, b)
	sa.Start(t, readyTimeout)
	sb.Start(t, readyTimeout)

	banned := func(h *testbed.Hosts, addr string) bool { _, ok := h.SrvBanned(t, addr); return ok }
	wait := func(what string, limit time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}

	// B runs a service on port 22 (a listener in its namespace) that B's
	// attacker, with the same address as A's, reaches before A's ban.
	l, err := hostsB.SrvListen(testbed.SrvAddr4 + ":22")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dialB := func() error {
		c, err := hostsB.AtkDial(testbed.SrvAddr4+":22", time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dialB(); err != nil {
		t.Fatalf("the attacker cannot reach B's port 22 before any ban: %v", err)
	}

	// A real attacker: three failures on A's sshd.
	for i := 0; i < 3; i++ {
		if at := bed.Hosts.SSHAttempt(testbed.SrvAddr4, ""); at.Outcome == testbed.Refused {
			break
		}
	}
	wait("the attacker in A's kernel", banTimeout, func() bool { return banned(bed.Hosts, "198.51.100.2") })
	took := wait("the attacker in B's kernel", time.Second, func() bool { return banned(hostsB, "198.51.100.2") })
	refused := took + wait("the attacker refused by B", time.Second-took, func() bool {
		err := dialB()
		return err != nil && strings.Contains(err.Error(), "connection refused")
	})
	t.Logf("A's ban in B's kernel %v after it was seen in A's; the attacker refused by B after %v", took.Round(time.Millisecond), refused.Round(time.Millisecond))
	if bans := b.Status(t, "fleet"); len(bans) != 1 || bans[0].CurrentlyBanned != 1 {
		t.Errorf("B's fleet jail: %+v", bans)
	}
	if out, err := busB.BusCall("ListBans", ""); err != nil || !strings.Contains(out, `"fleet: sshd on hosta"`) {
		t.Errorf("B's ListBans = %q, %v; want the reason fleet: sshd on hosta", out, err)
	}

	// A short ban expires everywhere.
	if out, err := bed.Bus.BusCall("Ban", "sst", "sshd", "203.0.113.70", "3"); err != nil {
		t.Fatalf("ban on A: %v\n%s", err, out)
	}
	wait("the short ban in B's kernel", time.Second, func() bool { return banned(hostsB, "203.0.113.70") })
	wait("the short ban's end on A and B", 6*time.Second, func() bool {
		return !banned(bed.Hosts, "203.0.113.70") && !banned(hostsB, "203.0.113.70")
	})

	// B offline during a ban of A catches up on its return.
	sb.Stop(t)
	if out, err := bed.Bus.BusCall("Ban", "sst", "sshd", "203.0.113.60", "600"); err != nil {
		t.Fatalf("ban on A: %v\n%s", err, out)
	}
	time.Sleep(200 * time.Millisecond)
	if banned(hostsB, "203.0.113.60") {
		t.Fatal("B banned 203.0.113.60 with its sync service stopped")
	}
	sb.Start(t, readyTimeout)
	wait("203.0.113.60 in B's kernel after B's return", 2*time.Second, func() bool { return banned(hostsB, "203.0.113.60") })

	// B's daemon away during a ban of A: B's sync applies it on the
	// daemon's return.
	if err := b.Stop(t); err != nil {
		t.Fatalf("stopping B's daemon: %v", err)
	}
	if out, err := bed.Bus.BusCall("Ban", "sst", "sshd", "203.0.113.80", "600"); err != nil {
		t.Fatalf("ban on A: %v\n%s", err, out)
	}
	time.Sleep(200 * time.Millisecond)
	b.Start(t)
	b.WaitReady(t, readyTimeout)
	wait("203.0.113.80 in B's kernel after B's daemon returned", 3*time.Second, func() bool { return banned(hostsB, "203.0.113.80") })
	if out := sb.Output(); !strings.Contains(out, "applying the fleet's bans again") {
		t.Errorf("B's sync did not replay the bucket on the daemon's return:\n%s", out)
	}

	// A burst of 10,000 bans on A reaches B's kernel completely.
	conn, err := dbus.Connect(bed.Bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	burst := make([]string, 10000)
	for i := range burst {
		burst[i] = fmt.Sprintf("203.0.%d.%d", 120+i/250, 1+i%250)
	}
	fleetSet := func() int {
		n := 0
		for _, s := range hostsB.SrvSets(t) {
			if strings.HasPrefix(s.Name, "jk-fleet-") {
				n += len(s.Members)
			}
		}
		return n
	}
	before := fleetSet()
	idle := vmRSS(t, sb.PID())
	cpu0, cpuA0 := procCPU(t, sb.PID()), procCPU(t, sa.PID())
	if err := conn.Object(dbusapi.BusName, dbusapi.Path).Call(dbusapi.Interface+".BanMany", 0, "sshd", burst, uint64(600)).Err; err != nil {
		t.Fatalf("BanMany of 10,000 on A: %v", err)
	}
	took = wait("the 10,000 bans in B's kernel", 30*time.Second, func() bool { return fleetSet() >= before+len(burst) })
	t.Logf("10,000 bans on A: all in B's kernel %v after BanMany was called; CPU of A's sync %v, of B's %v; VmRSS of B's sync %s before, A's %s after",
		took.Round(time.Millisecond), procCPU(t, sa.PID())-cpuA0, procCPU(t, sb.PID())-cpu0, idle, vmRSS(t, sa.PID()))

	// A's sync restarted: its reconciliation reads A's 10,000 and more bans
	// in pages (ListBansPage) and its keys, publishes the ban made while it
	// was away and only it, and withdraws no key of an active ban.
	sa.Stop(t)
	if out, err := bed.Bus.BusCall("Ban", "sst", "sshd", "203.0.113.90", "600"); err != nil {
		t.Fatalf("ban on A: %v\n%s", err, out)
	}
	restarted := time.Now()
	sa.Start(t, readyTimeout)
	wait("203.0.113.90 in B's kernel after A's sync returned", 5*time.Second, func() bool { return banned(hostsB, "203.0.113.90") })
	var rec string
	wait("A's reconciliation on its return", 20*time.Second, func() bool {
		_, run2, _ := strings.Cut(sa.Output(), "--- run 2 ---")
		_, rec, _ = strings.Cut(run2, "reconciled with ListBansPage: ")
		return rec != ""
	})
	t.Logf("A's sync on its return: reconciled with ListBansPage: %s (%v after its start)", strings.SplitN(rec, "\n", 2)[0], time.Since(restarted).Round(time.Millisecond))
	var pub, wd int
	if _, err := fmt.Sscanf(rec, "%d bans published, %d keys withdrawn", &pub, &wd); err != nil || pub != 1 || wd != 0 {
		t.Errorf("A's sync on its return: %q; want 1 ban published (the one made while it was away; the others' keys agree), 0 keys withdrawn", strings.SplitN(rec, "\n", 2)[0])
	}
	if n := fleetSet(); n < before+len(burst) {
		t.Errorf("B's fleet set holds %d after A's sync returned, want at least %d", n, before+len(burst))
	}

	// A fleet unban lifts the attacker on both hosts.
	if out, err := sa.FleetUnban("198.51.100.2"); err != nil || !strings.Contains(out, "unbanned 198.51.100.2 across the fleet (1 keys deleted)") {
		t.Fatalf("unban --fleet = %q, %v", out, err)
	}
	wait("the fleet unban on B", time.Second, func() bool { return !banned(hostsB, "198.51.100.2") })
	wait("the fleet unban on A", time.Second, func() bool { return !banned(bed.Hosts, "198.51.100.2") })
	if at := bed.Hosts.SSHAttempt(testbed.SrvAddr4, ""); at.Outcome != testbed.Denied {
		t.Errorf("after the fleet unban the attacker gets %s, want %s", at.Outcome, testbed.Denied)
	}
}
