package fleetsync

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/jailkeeper/jailkeeper/pkg/config"
)

// startNATS runs a one-node nats-server with JetStream in this process, on
// a loopback port of its choosing.
func startNATS(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready in 10 s")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// lockedDaemon is fakeDaemon safe for the watcher's goroutine.
type lockedDaemon struct {
	mu sync.Mutex
	d  *fakeDaemon
}

func (l *lockedDaemon) BanFrom(j string, as []string, d time.Duration, reason, origin string) (uint32, []string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.d.BanFrom(j, as, d, reason, origin)
}

func (l *lockedDaemon) Unban(j, a string) (uint32, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.d.Unban(j, a)
}

func (l *lockedDaemon) count(jail string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k := range l.d.bans {
		if len(k) > len(jail) && k[:len(jail)+1] == jail+"/" {
			n++
		}
	}
	return n
}

func (l *lockedDaemon) has(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.d.bans[key]
	return ok
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// TestThroughNATS runs two engines on a real nats-server: a ban published
// by web1 reaches web2's daemon, web2's whitelist wins, a key's TTL ends
// it in the bucket, a fleet unban lifts it, and a burst arrives whole.
func TestThroughNATS(t *testing.T) {
	url := startNATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := config.ResolvedSync{Servers: []string{url}, Bucket: "jailkeeper-bans"}
	open := func(name string) *NATSStore {
		st, err := Dial(ctx, cfg, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	sa, sb := open("web1"), open("web2")
	a := New(Options{Origin: "web1", Share: []string{"sshd"}, Apply: true, Jail: "fleet", MaxBanTime: time.Hour,
		Daemon: &lockedDaemon{d: newFakeDaemon()}, Store: sa})
	db := &lockedDaemon{d: newFakeDaemon("203.0.113.7")}
	var logMu sync.Mutex
	var logs []string
	b := New(Options{Origin: "web2", Share: []string{"sshd"}, Apply: true, Jail: "fleet", MaxBanTime: time.Hour,
		Daemon: db, Store: sb, Log: func(_ int, m string) { logMu.Lock(); logs = append(logs, m); logMu.Unlock() }})
	ready := make(chan struct{})
	go func() {
		_ = sb.Watch(ctx, func(us []Update) {
			if _, _, err := b.Apply(ctx, us); err != nil {
				t.Errorf("Apply: %v", err)
			}
		}, func() { close(ready) })
	}()
	<-ready

	now := time.Now()
	ban := func(addr string, d time.Duration) Ban {
		return Ban{Jail: "sshd", Prefix: pfx(addr), Start: now, Expires: time.Now().Add(d)}
	}
	start := time.Now()
	if _, err := a.Publish(ctx, []Ban{ban("203.0.113.9/32", time.Hour)}); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "web1's ban on web2", time.Second, func() bool { return db.has("fleet/203.0.113.9") })
	t.Logf("a ban from web1 reached web2's daemon in %v", time.Since(start).Round(time.Microsecond))
	_ = took

	// web2's whitelist wins; the rest of the batch still applies.
	if _, err := a.Publish(ctx, []Ban{ban("203.0.113.7/32", time.Hour), ban("203.0.113.8/32", time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "203.0.113.8 on web2", time.Second, func() bool { return db.has("fleet/203.0.113.8") })
	if db.has("fleet/203.0.113.7") {
		t.Error("web2 banned an address it whitelists")
	}

	// The key's TTL: a 2 s ban leaves the bucket by itself.
	if _, err := a.Publish(ctx, []Ban{ban("203.0.113.20/32", 2*time.Second)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the short ban's key", time.Second, func() bool {
		ks, _ := sa.Keys(ctx, "ban.web1.sshd.203_0_113_20")
		return len(ks) == 1
	})
	waitFor(t, "the short ban's key to expire", 5*time.Second, func() bool {
		ks, _ := sa.Keys(ctx, "ban.web1.sshd.203_0_113_20")
		return len(ks) == 0
	})

	// A fleet unban deletes the key; web2 lifts its ban.
	if n, err := FleetUnban(ctx, sa, pfx("203.0.113.9/32")); err != nil || n != 1 {
		t.Fatalf("FleetUnban = %d, %v", n, err)
	}
	waitFor(t, "the fleet unban on web2", time.Second, func() bool { return !db.has("fleet/203.0.113.9") })

	// A burst of 10,000 bans arrives whole.
	burst := make([]Ban, 10000)
	for i := range burst {
		burst[i] = ban(fmt.Sprintf("198.51.%d.%d/32", 100+i/250, i%250), time.Hour)
	}
	before := db.count("fleet")
	start = time.Now()
	if _, err := a.Publish(ctx, burst); err != nil {
		t.Fatal(err)
	}
	pub := time.Since(start)
	waitFor(t, "the burst on web2", 60*time.Second, func() bool { return db.count("fleet") == before+len(burst) })
	t.Logf("10,000 bans: published in %v, all on web2 after %v", pub.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	logMu.Lock()
	defer logMu.Unlock()
	if len(logs) != 1 {
		t.Errorf("logs = %q, want the one whitelisted address", logs)
	}
}

// originPermissions are the NATS permissions of docs/fleet.md for a server
// whose origin is origin, on bucket jailkeeper-bans.
func originPermissions(origin string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$KV.jailkeeper-bans.ban." + origin + ".>",
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO.KV_jailkeeper-bans",
			"$JS.API.CONSUMER.CREATE.KV_jailkeeper-bans.>",
			"$JS.API.CONSUMER.DELETE.KV_jailkeeper-bans.>",
			"$JS.FC.KV_jailkeeper-bans.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// TestOriginPermission: with the documented permissions a server follows
// the bucket and writes and deletes its own keys, and cannot write or
// delete another origin's.
func TestOriginPermission(t *testing.T) {
	admin := &server.User{Username: "admin", Password: "admin-secret"}
	web1 := &server.User{Username: "web1", Password: "web1-secret", Permissions: originPermissions("web1")}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, Users: []*server.User{admin, web1}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer s.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := func(u, p string) string { return fmt.Sprintf("nats://%s:%s@%s", u, p, s.Addr()) }
	// The admin creates the bucket.
	as, err := Dial(ctx, config.ResolvedSync{Servers: []string{url("admin", "admin-secret")}, Bucket: "jailkeeper-bans"}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	st, err := Dial(ctx, config.ResolvedSync{Servers: []string{url("web1", "web1-secret")}, Bucket: "jailkeeper-bans"}, "web1")
	if err != nil {
		t.Fatalf("web1 opening the bucket: %v", err)
	}
	defer st.Close()
	e := New(Options{Origin: "web1", Share: []string{"sshd"}, Jail: "fleet", Store: st, Daemon: &lockedDaemon{d: newFakeDaemon()}})
	b := Ban{Jail: "sshd", Prefix: pfx("203.0.113.9/32"), Start: time.Now(), Expires: time.Now().Add(time.Hour)}
	if _, err := e.Publish(ctx, []Ban{b}); err != nil {
		t.Fatalf("web1 publishing its own ban: %v", err)
	}
	// web1 follows the bucket.
	got := make(chan []Update, 1)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() { _ = st.Watch(wctx, func(us []Update) { got <- us }, nil) }()
	select {
	case us := <-got:
		if len(us) != 1 || us[0].Key != "ban.web1.sshd.203_0_113_9" {
			t.Errorf("web1 watched %+v", us)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("web1 could not watch the bucket")
	}
	// It cannot speak for web2, nor delete web2's keys.
	forged := New(Options{Origin: "web2", Share: []string{"sshd"}, Jail: "fleet", Store: st})
	short, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	if _, err := forged.Publish(short, []Ban{b}); err == nil {
		t.Error("web1 wrote a key of web2")
	}
	if _, err := New(Options{Origin: "web2", Share: []string{"sshd"}, Jail: "fleet", Store: as}).Publish(ctx, []Ban{b}); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(short, "ban.web2.sshd.203_0_113_9"); err == nil {
		t.Error("web1 deleted a key of web2")
	}
	if ks, err := as.Keys(ctx, "ban.>"); err != nil || len(ks) != 2 {
		t.Errorf("keys = %v, %v; want web1's and web2's", ks, err)
	}
	// Reconciliation reads its own keys with their values.
	if vs, err := st.Values(ctx, "ban.web1.>"); err != nil || len(vs) != 1 || vs["ban.web1.sshd.203_0_113_9"] == nil {
		t.Errorf("web1 reading its own keys' values: %v, %v", vs, err)
	}
	if err := st.Delete(ctx, "ban.web1.sshd.203_0_113_9"); err != nil {
		t.Errorf("web1 deleting its own key: %v", err)
	}
}

// TestWatchStall: the consumer behind a watch is deleted on the server (as
// when the NATS node holding it is lost); a key put afterwards is still
// delivered, within a few seconds, by a watch recreated from the last
// revision, not after the client library's own recovery (two missed
// heartbeats, 10 s at least); nothing before it is delivered again.
func TestWatchStall(t *testing.T) {
	url := startNATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := Dial(ctx, config.ResolvedSync{Servers: []string{url}, Bucket: "jailkeeper-bans"}, "web2")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var mu sync.Mutex
	var logged []string
	st.Log = func(_ int, msg string) { mu.Lock(); logged = append(logged, msg); mu.Unlock() }
	got := make(chan Update, 16)
	started := make(chan struct{})
	go func() {
		_ = st.Watch(ctx, func(us []Update) {
			for _, u := range us {
				got <- u
			}
		}, func() { close(started) })
	}()
	if err := st.Put(ctx, "ban.web1.sshd.203_0_113_1", []byte("one"), 0); err != nil {
		t.Fatal(err)
	}
	<-started
	if u := <-got; u.Key != "ban.web1.sshd.203_0_113_1" {
		t.Fatalf("first update %+v", u)
	}
	stream, err := st.js.Stream(ctx, "KV_jailkeeper-bans")
	if err != nil {
		t.Fatal(err)
	}
	names := stream.ConsumerNames(ctx)
	n := 0
	for name := range names.Name() {
		if err := stream.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("deleted %d consumers, want the watch's one", n)
	}
	start := time.Now()
	if err := st.Put(ctx, "ban.web1.sshd.203_0_113_2", []byte("two"), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case u := <-got:
		if u.Key != "ban.web1.sshd.203_0_113_2" {
			t.Errorf("after the stall the watch delivered %+v, want only the new key", u)
		}
		t.Logf("the key put after the consumer's loss delivered after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(8 * time.Second):
		t.Fatal("the key put after the consumer's loss not delivered within 8 s")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logged) != 1 || !strings.Contains(logged[0], "watching again from revision 2") {
		t.Errorf("logged %q, want one recreation from revision 2", logged)
	}
}
