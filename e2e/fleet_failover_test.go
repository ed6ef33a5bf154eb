package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/jailkeeper/jailkeeper/internal/fleetsync"
	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

// natsCluster starts three nats-server nodes in this process on loopback,
// JetStream clustered, and creates the bucket replicated on all three as
// an admin would (once the cluster has its meta leader). The nodes are
// shut down at cleanup.
func natsCluster(t *testing.T, bucket string) []*server.Server {
	t.Helper()
	// Cluster ports free a moment ago: each node must know the others'
	// route addresses before it starts.
	var cports []int
	var ls []net.Listener
	for i := 0; i < 3; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		cports = append(cports, l.Addr().(*net.TCPAddr).Port)
	}
	var routes []string
	for _, l := range ls {
		routes = append(routes, "nats-route://"+l.Addr().String())
		_ = l.Close()
	}
	nodes := make([]*server.Server, 3)
	for i := range nodes {
		s, err := server.NewServer(&server.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "jailkeeper", Host: "127.0.0.1", Port: cports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		nodes[i] = s
	}
	var urls []string
	for _, s := range nodes {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("a nats-server node is not ready")
		}
		urls = append(urls, s.ClientURL())
	}
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := fleetsync.Dial(ctx, config.ResolvedSync{Servers: urls, Bucket: bucket}, "admin")
		cancel()
		if err == nil {
			st.Close()
			return nodes
		}
		if time.Now().After(end) {
			t.Fatalf("the bucket on the three-node cluster: %v", err)
		}
	}
}

// natsNodeOf is the node that a client connection named name is connected
// to, or nil.
func natsNodeOf(t *testing.T, nodes []*server.Server, name string) *server.Server {
	t.Helper()
	for _, s := range nodes {
		if !s.Running() {
			continue
		}
		cz, err := s.Connz(&server.ConnzOptions{Limit: 1024})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cz.Conns {
			if c.Name == name {
				return s
			}
		}
	}
	return nil
}

// TestFleetFailover: three real daemons A, B and C, each in its own
// network namespace with its own system bus and `jailkeeper sync`, share
// bans through a three-node NATS cluster (JetStream, the bucket on three
// replicas). An address B whitelists, banned on A, is banned on C and
// never on B. The node A's sync publishes through is shut down in the
// middle of a flood of bans on A: every ban of the flood reaches B's and
// C's kernel sets.
func TestFleetFailover(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.BedCommands...)
	nodes := natsCluster(t, "jailkeeper-bans")
	var urls []string
	for _, s := range nodes {
		urls = append(urls, s.ClientURL())
	}
	servers := strings.Join(urls, ", ")

	// web is A's shared jail: API-only, like the fleet's, so that the
	// flood's bans come from the D-Bus API alone.
	const webJail = "jails:\n  web:\n    api_only: true\n    ports: [80, 443]\n    bantime: 1h\n"
	type host struct {
		name  string
		hosts *testbed.Hosts
		bus   *testbed.Bus
		d     *testbed.Daemon
		sync  *testbed.Sync
	}
	hs := []*host{{name: "hosta"}, {name: "hostb"}, {name: "hostc"}}
	for _, h := range hs {
		h.hosts, h.bus = testbed.NewHosts(t), testbed.NewBus(t)
		files := map[string]string{"10-base.yaml": "firewall: {backend: iptables}\n", "15-fleet.yaml": fleetJail,
			"40-sync.yaml": syncDropIn(servers, h.name)}
		switch h.name {
		case "hosta":
			files["20-web.yaml"] = webJail
			files["40-sync.yaml"] = syncDropIn(servers, h.name, "web")
		case "hostb":
			files["10-base.yaml"] = "whitelist: [203.0.113.50]\nfirewall: {backend: iptables}\n"
		}
		h.d = testbed.NewDaemon(t, h.hosts, h.bus, files)
		h.d.Journald = testbed.StartJournald(t) // its own journal, which it logs to and does not read
		h.d.Start(t)
	}
	for _, h := range hs {
		h.d.WaitReady(t, readyTimeout)
		h.sync = testbed.NewSync(t, h.d)
		h.sync.Start(t, readyTimeout)
	}
	a, b, c := hs[0], hs[1], hs[2]

	banned := func(h *host, addr string) bool { _, ok := h.hosts.SrvBanned(t, addr); return ok }
	wait := func(what string, limit time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}

	// B's whitelist wins on B; A and C ban.
	for _, addr := range []string{"203.0.113.50", "203.0.113.51"} {
		if out, err := a.bus.BusCall("Ban", "sst", "web", addr, "600"); err != nil {
			t.Fatalf("ban of %s on A: %v\n%s", addr, err, out)
		}
	}
	wait("203.0.113.51 in B's and C's kernels", 2*time.Second, func() bool { return banned(b, "203.0.113.51") && banned(c, "203.0.113.51") })
	wait("203.0.113.50 in C's kernel", time.Second, func() bool { return banned(c, "203.0.113.50") })
	if !banned(a, "203.0.113.50") || banned(b, "203.0.113.50") {
		t.Errorf("203.0.113.50: banned on A %v (want true), on B %v (want false: B whitelists it)", banned(a, "203.0.113.50"), banned(b, "203.0.113.50"))
	}

	// The flood: 40 BanMany calls of 50 addresses on A, 20 ms apart; the
	// node A's sync is connected to is shut down after the 20th.
	fleetSet := func(h *host) int {
		n := 0
		for _, s := range h.hosts.SrvSets(t) {
			if strings.HasPrefix(s.Name, "jk-fleet-") {
				n += len(s.Members)
			}
		}
		return n
	}
	beforeB, beforeC := fleetSet(b), fleetSet(c)
	conn, err := dbus.Connect(a.bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const calls, per = 40, 50
	var killed *server.Server
	var killedAt time.Time
	start := time.Now()
	for i := 0; i < calls; i++ {
		if i == calls/2 {
			if killed = natsNodeOf(t, nodes, "jailkeeper-sync hosta"); killed == nil {
				t.Fatal("no NATS node has A's sync connection")
			}
			killed.Shutdown()
			killedAt = time.Now()
		}
		batch := make([]string, per)
		for j := range batch {
			k := i*per + j
			batch[j] = fmt.Sprintf("198.18.%d.%d", k/250, 1+k%250)
		}
		if err := conn.Object(dbusapi.BusName, dbusapi.Path).Call(dbusapi.Interface+".BanMany", 0, "web", batch, uint64(600)).Err; err != nil {
			t.Fatalf("BanMany %d on A: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	flood := time.Since(start)
	const n = calls * per
	took := wait("every ban of the flood in B's and C's kernels", 45*time.Second, func() bool {
		return fleetSet(b) >= beforeB+n && fleetSet(c) >= beforeC+n
	})
	now := natsNodeOf(t, nodes, "jailkeeper-sync hosta")
	if now == nil || now == killed {
		t.Errorf("A's sync is connected to %v after its node %s was shut down", now, killed.Name())
	}
	if got := fleetSet(b) - beforeB; got != n {
		t.Errorf("B's fleet set holds %d of the flood, want %d", got, n)
	}
	rewatched := func(h *host) int { return strings.Count(h.sync.Output(), "watching again from revision") }
	t.Logf("%d bans on A in %v, node %s (A's) shut down in the middle: all in B's and C's kernels %v after the flood's end, %v after the shutdown; A's sync now on %s; stalled watches recreated: A %d, B %d, C %d",
		n, flood.Round(time.Millisecond), killed.Name(), took.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond), now.Name(),
		rewatched(a), rewatched(b), rewatched(c))
}
