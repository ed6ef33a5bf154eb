package fleetsync

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jailkeeper/jailkeeper/pkg/config"
)

// freePorts returns n loopback TCP ports free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// TestClusterFailover: three nats-server nodes in this process (JetStream
// clustered, the bucket replicated three times); the node web1 publishes
// through is shut down in the middle of a flood of 2,000 bans, and web2,
// following the bucket, gets every one of them.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("three nats-server nodes: not in -short")
	}
	cports := freePorts(t, 3)
	var routes []string
	for _, p := range cports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	nodes := make([]*server.Server, 3)
	var urls []string
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
	for _, s := range nodes {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("a nats-server node is not ready")
		}
		urls = append(urls, s.ClientURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// JetStream needs its meta leader before the bucket can be created.
	cfg := config.ResolvedSync{Servers: urls, Bucket: "jailkeeper-bans"}
	var sa *NATSStore
	var err error
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		sa, err = Dial(dctx, cfg, "web1")
		dcancel()
		if err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the bucket on the cluster: %v", err)
		}
	}
	defer sa.Close()
	if st, err := sa.kv.Status(ctx); err != nil || st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != 3 {
		t.Fatalf("bucket status: %v, %v", st, err)
	}
	// web2 follows through a node other than web1's.
	var other []string
	for _, u := range urls {
		if u != sa.nc.ConnectedUrl() {
			other = append(other, u)
		}
	}
	sb, err := Dial(ctx, config.ResolvedSync{Servers: other, Bucket: "jailkeeper-bans"}, "web2")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	db := &lockedDaemon{d: newFakeDaemon()}
	b := New(Options{Origin: "web2", Apply: true, Jail: "fleet", MaxBanTime: time.Hour, Daemon: db, Store: sb})
	ready := make(chan struct{})
	go func() {
		_ = sb.Watch(ctx, func(us []Update) { _, _, _ = b.Apply(ctx, us) }, func() { close(ready) })
	}()
	<-ready

	a := New(Options{Origin: "web1", Share: []string{"sshd"}, Jail: "fleet", Store: sa, Daemon: &lockedDaemon{d: newFakeDaemon()}})
	const n = 2000
	var killed string
	start := time.Now()
	for i := 0; i < n; i++ {
		if i == n/2 {
			killed = sa.nc.ConnectedUrl()
			for _, s := range nodes {
				if s.ClientURL() == killed {
					s.Shutdown()
				}
			}
		}
		ban := Ban{Jail: "sshd", Prefix: pfx(fmt.Sprintf("198.51.%d.%d/32", 100+i/250, i%250)), Start: time.Now(), Expires: time.Now().Add(time.Hour)}
		if _, err := a.Publish(ctx, []Ban{ban}); err != nil {
			t.Fatalf("ban %d (node %s shut down at %d): %v", i, killed, n/2, err)
		}
	}
	waitFor(t, "every ban of the flood on web2", 30*time.Second, func() bool { return db.count("fleet") == n })
	t.Logf("2,000 bans, node %s shut down after 1,000: all on web2 after %v", killed, time.Since(start).Round(time.Millisecond))
}
