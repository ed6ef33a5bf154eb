package fleetsync

import (
	"context"
	"fmt"
	"net/netip"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/fleet"
)

// memStore is an in-memory bucket.
type memStore struct {
	mu   sync.Mutex
	vals map[string][]byte
	ttls map[string]time.Duration
}

func newMemStore() *memStore {
	return &memStore{vals: map[string][]byte{}, ttls: map[string]time.Duration{}}
}

func (s *memStore) Put(_ context.Context, key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vals[key], s.ttls[key] = value, ttl
	return nil
}

func (s *memStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.vals, key)
	delete(s.ttls, key)
	return nil
}

// Keys matches NATS wildcards token by token (* one token, > the rest).
func (s *memStore) Keys(_ context.Context, filter string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pat := strings.ReplaceAll(filter, ".>", ".**")
	var out []string
	for k := range s.vals {
		if matchKey(pat, k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (s *memStore) Values(ctx context.Context, filter string) (map[string][]byte, error) {
	keys, _ := s.Keys(ctx, filter)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for _, k := range keys {
		out[k] = s.vals[k]
	}
	return out, nil
}

func matchKey(pat, k string) bool {
	if p, ok := strings.CutSuffix(pat, ".**"); ok {
		return strings.HasPrefix(k, p+".")
	}
	pt, kt := strings.Split(pat, "."), strings.Split(k, ".")
	if len(pt) != len(kt) {
		return false
	}
	for i := range pt {
		if ok, _ := path.Match(pt[i], kt[i]); !ok {
			return false
		}
	}
	return true
}

func (s *memStore) updates() []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Update
	for k, v := range s.vals {
		out = append(out, Update{Key: k, Value: v})
	}
	return out
}

// fakeDaemon skips whitelisted addresses, as the daemon's BanFrom does.
type fakeDaemon struct {
	whitelist map[string]bool
	bans      map[string]time.Duration // jail/address → duration
	reasons   map[string]string        // jail/address → reason
	calls     int
}

func newFakeDaemon(whitelisted ...string) *fakeDaemon {
	d := &fakeDaemon{whitelist: map[string]bool{}, bans: map[string]time.Duration{}, reasons: map[string]string{}}
	for _, a := range whitelisted {
		d.whitelist[a] = true
	}
	return d
}

func (d *fakeDaemon) BanFrom(jail string, as []string, dur time.Duration, reason, origin string) (uint32, []string, error) {
	d.calls++
	var skipped []string
	for _, a := range as {
		if d.whitelist[a] {
			skipped = append(skipped, a)
			continue
		}
		d.bans[jail+"/"+a] = dur
		d.reasons[jail+"/"+a] = reason
	}
	return uint32(len(as) - len(skipped)), skipped, nil
}

func (d *fakeDaemon) Unban(jail, a string) (uint32, error) {
	if _, ok := d.bans[jail+"/"+a]; !ok {
		return 0, nil
	}
	delete(d.bans, jail+"/"+a)
	return 1, nil
}

var now = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func engine(origin string, store Store, d Daemon, logs *[]string) *Engine {
	return New(Options{Origin: origin, Share: []string{"sshd", "fleet"}, Apply: true, Jail: "fleet", MaxBanTime: 24 * time.Hour,
		Daemon: d, Store: store, Now: func() time.Time { return now },
		Log: func(_ int, m string) {
			if logs != nil {
				*logs = append(*logs, m)
			}
		}})
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestPublish(t *testing.T) {
	st := newMemStore()
	e := engine("web1", st, newFakeDaemon(), nil)
	n, err := e.Publish(context.Background(), []Ban{
		{Jail: "sshd", Prefix: pfx("203.0.113.9/32"), Start: now.Add(-time.Minute), Expires: now.Add(time.Hour), Reason: "5 failures\n"},
		{Jail: "sshd", Prefix: pfx("2001:db8::/64"), Start: now, Reason: `5 failures, last for user "hunter2"`},              // permanent
		{Jail: "postfix", Prefix: pfx("203.0.113.10/32"), Start: now, Expires: now.Add(time.Hour)},                           // not shared
		{Jail: "fleet", Prefix: pfx("203.0.113.11/32"), Start: now, Expires: now.Add(time.Hour)},                             // never published
		{Jail: "sshd", Prefix: pfx("203.0.113.12/32"), Start: now.Add(-time.Hour), Expires: now.Add(100 * time.Millisecond)}, // ending
	})
	if err != nil || n != 2 {
		t.Fatalf("Publish = %d, %v; want 2", n, err)
	}
	k := "ban.web1.sshd.203_0_113_9"
	if st.ttls[k] != time.Hour {
		t.Errorf("TTL of %s = %v, want 1h", k, st.ttls[k])
	}
	r, err := fleet.Decode(k, st.vals[k])
	if err != nil || r.Reason != "5 failures " || !r.Start.Equal(now.Add(-time.Minute)) {
		t.Errorf("record %+v, %v", r, err)
	}
	// A user name (maybe a mistyped password) stays on this server.
	if r, err := fleet.Decode("ban.web1.sshd.2001-db8--/64", st.vals["ban.web1.sshd.2001-db8--/64"]); err != nil || r.Reason != "5 failures, last for user (hidden)" {
		t.Errorf("record %+v, %v; want the reason with user (hidden)", r, err)
	}
	if ttl, ok := st.ttls["ban.web1.sshd.2001-db8--/64"]; !ok || ttl != 0 {
		t.Errorf("permanent ban: TTL %v, present %v; want 0 (until deleted)", ttl, ok)
	}
	if err := e.Withdraw(context.Background(), "sshd", []netip.Prefix{pfx("203.0.113.9/32")}); err != nil || st.vals[k] != nil {
		t.Errorf("Withdraw: %v, key left: %v", err, st.vals[k] != nil)
	}
}

func TestApplyAcrossServers(t *testing.T) {
	st := newMemStore()
	ctx := context.Background()
	a, b := engine("web1", st, newFakeDaemon(), nil), newFakeDaemon("203.0.113.7")
	var logs []string
	eb := engine("web2", st, b, &logs)
	if _, err := a.Publish(ctx, []Ban{
		{Jail: "sshd", Prefix: pfx("203.0.113.9/32"), Start: now, Expires: now.Add(time.Hour)},
		{Jail: "sshd", Prefix: pfx("203.0.113.8/32"), Start: now, Expires: now.Add(time.Hour)},
		{Jail: "sshd", Prefix: pfx("203.0.113.7/32"), Start: now, Expires: now.Add(time.Hour)}, // whitelisted on web2
		{Jail: "sshd", Prefix: pfx("203.0.113.6/32"), Start: now, Expires: now.Add(7 * 24 * time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	// web2's own key and a malformed one are in the bucket too.
	if _, err := eb.Publish(ctx, []Ban{{Jail: "sshd", Prefix: pfx("198.51.100.20/32"), Start: now, Expires: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	st.vals["ban.web3.sshd.203_0_113_5"] = []byte(`{"prefix":"0.0.0.0/0"}`)
	st.vals["ban.web3.sshd.203_0_113_4"] = []byte(strings.Repeat("x", 4096))

	banned, _, err := eb.Apply(ctx, st.updates())
	if err != nil || banned != 3 {
		t.Fatalf("Apply = %d, %v; want 3", banned, err)
	}
	want := map[string]time.Duration{"fleet/203.0.113.9": time.Hour, "fleet/203.0.113.8": time.Hour, "fleet/203.0.113.6": 24 * time.Hour}
	if fmt.Sprint(b.bans) != fmt.Sprint(want) {
		t.Errorf("web2's bans = %v, want %v", b.bans, want)
	}
	if b.reasons["fleet/203.0.113.9"] != "fleet: sshd on web1" || b.calls != 2 {
		t.Errorf("reasons %v in %d BanFrom calls; want fleet: sshd on web1, in 2 (1h and the 24h cap)", b.reasons, b.calls)
	}
	joined := strings.Join(logs, "\n")
	for _, w := range []string{"ignoring a value of the bucket: value of ban.web3.sshd.203_0_113_5", "ban.web3.sshd.203_0_113_4: 4096 bytes",
		"1 of the fleet's bans from web1 not applied here (whitelisted): 203.0.113.7"} {
		if !strings.Contains(joined, w) {
			t.Errorf("logs lack %q:\n%s", w, joined)
		}
	}
	// The fleet's bans on web2 are never published back.
	if n, err := eb.Publish(ctx, []Ban{{Jail: "fleet", Prefix: pfx("203.0.113.9/32"), Start: now, Expires: now.Add(time.Hour)}}); n != 0 || err != nil {
		t.Errorf("web2 published %d of the fleet's bans (%v)", n, err)
	}
}

func TestApplyDeletes(t *testing.T) {
	st := newMemStore()
	ctx := context.Background()
	d := newFakeDaemon()
	e := engine("web3", st, d, nil)
	for _, origin := range []string{"web1", "web2"} {
		if _, err := engine(origin, st, newFakeDaemon(), nil).Publish(ctx, []Ban{{Jail: "sshd", Prefix: pfx("203.0.113.9/32"), Start: now, Expires: now.Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _, err := e.Apply(ctx, st.updates()); err != nil || n != 2 || len(d.bans) != 1 {
		t.Fatalf("Apply = %d, %v; bans %v", n, err, d.bans)
	}
	// web1 lifts its ban: web2's still holds the address.
	if _, lifted, err := e.Apply(ctx, []Update{{Key: "ban.web1.sshd.203_0_113_9", Deleted: true}}); err != nil || lifted != 0 || len(d.bans) != 1 {
		t.Fatalf("after web1's delete: lifted %d, %v; bans %v", lifted, err, d.bans)
	}
	if _, lifted, err := e.Apply(ctx, []Update{{Key: "ban.web2.sshd.203_0_113_9", Deleted: true}}); err != nil || lifted != 1 || len(d.bans) != 0 {
		t.Fatalf("after web2's delete: lifted %d, %v; bans %v", lifted, err, d.bans)
	}
	// A delete of a key never applied lifts nothing.
	if _, lifted, _ := e.Apply(ctx, []Update{{Key: "ban.web1.sshd.203_0_113_1", Deleted: true}}); lifted != 0 {
		t.Errorf("lifted %d for an unknown key", lifted)
	}
}

func TestReconcileAndFleetUnban(t *testing.T) {
	st := newMemStore()
	ctx := context.Background()
	e := engine("web1", st, newFakeDaemon(), nil)
	ban := func(a string) Ban { return Ban{Jail: "sshd", Prefix: pfx(a), Start: now, Expires: now.Add(time.Hour)} }
	if _, err := e.Publish(ctx, []Ban{ban("203.0.113.1/32"), ban("203.0.113.2/32")}); err != nil {
		t.Fatal(err)
	}
	if _, err := engine("web2", st, newFakeDaemon(), nil).Publish(ctx, []Ban{ban("203.0.113.2/32"), ban("203.0.113.3/32")}); err != nil {
		t.Fatal(err)
	}
	// 203.0.113.1 was lifted while the service was down; 203.0.113.4
	// banned; 203.0.113.2's key agrees with its ban: left alone.
	before := string(st.vals["ban.web1.sshd.203_0_113_2"])
	pub, wd, err := e.Reconcile(ctx, []Ban{ban("203.0.113.2/32"), ban("203.0.113.4/32")})
	if err != nil || pub != 1 || wd != 1 {
		t.Fatalf("Reconcile = %d, %d, %v; want 1, 1", pub, wd, err)
	}
	// 203.0.113.2's ban was extended: its key is put again.
	longer := ban("203.0.113.2/32")
	longer.Expires = now.Add(2 * time.Hour)
	if pub, wd, err = e.Reconcile(ctx, []Ban{longer, ban("203.0.113.4/32")}); err != nil || pub != 1 || wd != 0 {
		t.Fatalf("Reconcile of an extended ban = %d, %d, %v; want 1, 0", pub, wd, err)
	}
	if after := string(st.vals["ban.web1.sshd.203_0_113_2"]); after == before || !strings.Contains(after, now.Add(2*time.Hour).UTC().Format("15:04:05")) {
		t.Errorf("the extended ban's value %s (before %s)", after, before)
	}
	keys, _ := st.Keys(ctx, "ban.>")
	if want := "ban.web1.sshd.203_0_113_2 ban.web1.sshd.203_0_113_4 ban.web2.sshd.203_0_113_2 ban.web2.sshd.203_0_113_3"; strings.Join(keys, " ") != want {
		t.Errorf("keys = %v, want %s", keys, want)
	}
	if n, err := FleetUnban(ctx, st, pfx("203.0.113.2/32")); err != nil || n != 2 {
		t.Errorf("FleetUnban = %d, %v; want 2", n, err)
	}
	// The origin sees its own key deleted and lifts its local ban.
	d := newFakeDaemon()
	d.bans["sshd/203.0.113.2"] = time.Hour
	own := New(Options{Origin: "web1", Share: []string{"sshd"}, Apply: false, Jail: "fleet", Daemon: d, Store: st})
	if _, lifted, err := own.Apply(ctx, []Update{{Key: "ban.web1.sshd.203_0_113_2", Deleted: true}}); err != nil || lifted != 1 || len(d.bans) != 0 {
		t.Errorf("the origin's own key deleted: lifted %d, %v; bans %v", lifted, err, d.bans)
	}
	keys, _ = st.Keys(ctx, "ban.>")
	if want := "ban.web1.sshd.203_0_113_4 ban.web2.sshd.203_0_113_3"; strings.Join(keys, " ") != want {
		t.Errorf("keys after the fleet unban = %v, want %s", keys, want)
	}
}

func TestApplyOff(t *testing.T) {
	st := newMemStore()
	d := newFakeDaemon()
	e := New(Options{Origin: "web2", Share: []string{"sshd"}, Apply: false, Jail: "fleet", Daemon: d, Store: st})
	if _, err := engine("web1", st, newFakeDaemon(), nil).Publish(context.Background(),
		[]Ban{{Jail: "sshd", Prefix: pfx("203.0.113.9/32"), Start: time.Now(), Expires: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if n, _, err := e.Apply(context.Background(), st.updates()); n != 0 || err != nil || len(d.bans) != 0 {
		t.Errorf("apply: false applied %d (%v)", n, err)
	}
}
