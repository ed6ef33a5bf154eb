package actions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

// recorder is an in-memory Deliverer and Logger for the unit tests.
type recorder struct {
	mu      sync.Mutex
	calls   [][]Event
	fail    error
	block   chan struct{} // when set, Deliver waits for it
	entries []string
}

func (r *recorder) Deliver(ctx context.Context, evs []Event) error {
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, evs)
	return r.fail
}

func (r *recorder) Log(_ journal.Priority, id, msg string, f map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, fmt.Sprintf("%s %s ACTION=%s ADDRESS=%s JAIL=%s", id, msg, f["ACTION"], f["ADDRESS"], f["JAIL"]))
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += len(c)
	}
	return n
}

func (r *recorder) logged(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.entries {
		if strings.HasPrefix(e, id) {
			out = append(out, e)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func act(name string, mod func(*config.ResolvedAction)) config.ResolvedAction {
	a := config.ResolvedAction{Name: name, Type: config.ActionWebhook, OnBan: true, OnUnban: true,
		Timeout: time.Second, Retries: 0, Queue: 100, Workers: 2}
	if mod != nil {
		mod(&a)
	}
	return a
}

func newEngine(t *testing.T, dir string, rec *recorder, acts ...config.ResolvedAction) (*Engine, *Store) {
	t.Helper()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	dl := map[string]Deliverer{}
	for _, a := range acts {
		dl[a.Name] = rec
	}
	e := New(Options{Actions: acts, Deliverers: dl, Store: st, Log: rec, Backoff: 10 * time.Millisecond})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	return e, st
}

func ban(jail, addr string) Event {
	now := time.Now()
	return Event{Kind: Ban, Jail: jail, Prefix: netip.MustParsePrefix(addr), Start: now, Expires: now.Add(time.Hour), Seen: now}
}

func unban(jail, addr string) Event {
	return Event{Kind: Unban, Jail: jail, Prefix: netip.MustParsePrefix(addr), Seen: time.Now()}
}

func TestEachBanActedOnOnce(t *testing.T) {
	rec := &recorder{}
	e, st := newEngine(t, t.TempDir(), rec, act("hook", nil))
	defer st.Close()
	defer e.Stop()
	for _, batch := range [][]Event{
		{ban("sshd", "203.0.113.7/32"), ban("sshd", "203.0.113.7/32")}, // repeated in one batch
		{ban("sshd", "203.0.113.7/32")},                                // announced again (extension, ListBans)
		{ban("web", "203.0.113.7/32")},                                 // another jail: another ban
		{unban("sshd", "198.51.100.9/32")},                             // never seen: ignored
		{unban("sshd", "203.0.113.7/32"), unban("sshd", "203.0.113.7/32")},
	} {
		if err := e.Handle(batch); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "3 deliveries", func() bool { return rec.count() == 3 })
	time.Sleep(50 * time.Millisecond)
	if n := rec.count(); n != 3 {
		t.Fatalf("%d deliveries, want 3 (ban sshd, ban web, unban sshd)", n)
	}
	if got := len(rec.logged(MsgDone)); got != 3 {
		t.Fatalf("%d done entries, want 3: %v", got, rec.entries)
	}
	if l := rec.logged(MsgDone)[0]; !strings.Contains(l, "ACTION=hook ADDRESS=203.0.113.7 JAIL=") {
		t.Fatalf("done entry lacks its fields: %s", l)
	}
}

func TestReconcile(t *testing.T) {
	rec := &recorder{}
	a := act("hook", nil)
	e, st := newEngine(t, t.TempDir(), rec, a)
	defer st.Close()
	defer e.Stop()
	// First start: the daemon's bans are adopted, not acted on.
	if n, lifted, adopted, err := e.Reconcile([]dbusapi.BanInfo{{Jail: "sshd", Prefix: "198.51.100.7/32", Start: 1}}, true); err != nil || n != 0 || lifted != 0 || adopted != 1 {
		t.Fatalf("first Reconcile = %d new, %d lifted, %d adopted, %v; want 0, 0, 1", n, lifted, adopted, err)
	}
	if err := e.Handle([]Event{ban("sshd", "203.0.113.1/32"), ban("sshd", "203.0.113.2/32")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 deliveries", func() bool { return rec.count() == 2 })
	// .1 was lifted while we were away, .2 stays, .3 is new.
	// .1 was lifted while we were away (and the adopted ban too), .2
	// stays, .3 is new.
	n, lifted, _, err := e.Reconcile([]dbusapi.BanInfo{
		{Jail: "sshd", Prefix: "203.0.113.2/32", Start: 1, Expires: 0},
		{Jail: "sshd", Prefix: "203.0.113.3", Start: 1, Expires: 0, Reason: `5 failures, last for user "hunter2"`},
	}, true)
	if err != nil || n != 1 || lifted != 2 {
		t.Fatalf("Reconcile = %d new, %d lifted, %v; want 1, 2", n, lifted, err)
	}
	waitFor(t, "5 deliveries", func() bool { return rec.count() == 5 })
	rec.mu.Lock()
	got := map[string]bool{}
	for _, c := range rec.calls[2:] {
		got[c[0].Kind.String()+" "+c[0].Address()] = true
		// The reason as the Banned signal would have carried it.
		if c[0].Address() == "203.0.113.3" && c[0].Reason != "5 failures, last for user (hidden)" {
			t.Errorf("the reconciled ban's reason is %q; want the user name hidden", c[0].Reason)
		}
	}
	rec.mu.Unlock()
	if !got["unban 203.0.113.1"] || !got["ban 203.0.113.3"] || !got["unban 198.51.100.7"] {
		t.Fatalf("reconciliation delivered %v", got)
	}
	// Again: nothing new.
	if n, lifted, _, _ := e.Reconcile([]dbusapi.BanInfo{{Jail: "sshd", Prefix: "203.0.113.2/32"}, {Jail: "sshd", Prefix: "203.0.113.3/32"}}, true); n != 0 || lifted != 0 {
		t.Fatalf("second Reconcile = %d new, %d lifted; want 0, 0", n, lifted)
	}
	// A list read while the table changed (not whole) lifts nothing: .2
	// may only have been skipped. .4 is new all the same.
	if n, lifted, _, _ := e.Reconcile([]dbusapi.BanInfo{{Jail: "sshd", Prefix: "203.0.113.3/32"}, {Jail: "sshd", Prefix: "203.0.113.4/32"}}, false); n != 1 || lifted != 0 {
		t.Fatalf("partial Reconcile = %d new, %d lifted; want 1, 0", n, lifted)
	}
}

// TestReconcilePartialFirstStart: a first start that reads a changing
// table adopts what it read and stays a first start; the next whole list
// adopts the rest instead of acting on it.
func TestReconcilePartialFirstStart(t *testing.T) {
	rec := &recorder{}
	e, st := newEngine(t, t.TempDir(), rec, act("hook", nil))
	defer st.Close()
	defer e.Stop()
	if _, _, adopted, err := e.Reconcile([]dbusapi.BanInfo{{Jail: "sshd", Prefix: "203.0.113.1/32"}}, false); err != nil || adopted != 1 {
		t.Fatalf("partial first Reconcile: %d adopted, %v", adopted, err)
	}
	n, lifted, adopted, err := e.Reconcile([]dbusapi.BanInfo{{Jail: "sshd", Prefix: "203.0.113.1/32"}, {Jail: "sshd", Prefix: "203.0.113.2/32"}}, true)
	if err != nil || n != 0 || lifted != 0 || adopted != 2 {
		t.Fatalf("whole Reconcile after it = %d new, %d lifted, %d adopted, %v; want 0, 0, 2", n, lifted, adopted, err)
	}
	time.Sleep(100 * time.Millisecond)
	if c := rec.count(); c != 0 {
		t.Fatalf("%d deliveries for adopted bans", c)
	}
}

func TestRestartResumesPendingJobsOnce(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{block: make(chan struct{})}
	a := act("hook", func(a *config.ResolvedAction) { a.Workers = 1 })
	e, st := newEngine(t, dir, rec, a)
	var evs []Event
	for i := 0; i < 50; i++ {
		evs = append(evs, ban("sshd", fmt.Sprintf("203.0.113.%d/32", i)))
	}
	if err := e.Handle(evs); err != nil {
		t.Fatal(err)
	}
	// One job is in flight (blocked); stop while it is: it finishes, the
	// 49 queued stay pending.
	time.Sleep(20 * time.Millisecond)
	go func() { time.Sleep(50 * time.Millisecond); close(rec.block) }()
	e.Stop()
	st.Close()
	if n := rec.count(); n != 1 {
		t.Fatalf("%d delivered before the stop, want the 1 in flight", n)
	}
	rec2 := &recorder{}
	e2, st2 := newEngine(t, dir, rec2, a)
	defer st2.Close()
	defer e2.Stop()
	// The daemon announces them all again (ListBans): no new job.
	if err := e2.Handle(evs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "49 deliveries", func() bool { return rec2.count() == 49 })
	time.Sleep(50 * time.Millisecond)
	seen := map[string]int{}
	rec2.mu.Lock()
	for _, c := range rec2.calls {
		seen[c[0].Address()]++
	}
	rec.mu.Lock()
	seen[rec.calls[0][0].Address()]++
	rec.mu.Unlock()
	rec2.mu.Unlock()
	if len(seen) != 50 {
		t.Fatalf("%d addresses acted on, want 50", len(seen))
	}
	for a, n := range seen {
		if n != 1 {
			t.Fatalf("%s acted on %d times", a, n)
		}
	}
	waitFor(t, "no pending jobs", func() bool { p, _ := st2.Pending(); return len(p) == 0 })
}

func TestRetriesThenGivesUp(t *testing.T) {
	rec := &recorder{fail: errors.New("connection refused")}
	e, st := newEngine(t, t.TempDir(), rec, act("hook", func(a *config.ResolvedAction) { a.Retries = 2 }))
	defer st.Close()
	defer e.Stop()
	if err := e.Handle([]Event{ban("sshd", "203.0.113.7/32")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failure entry", func() bool { return len(rec.logged(MsgFailed)) == 1 })
	if n := rec.count(); n != 3 {
		t.Fatalf("%d attempts, want 3 (1 + 2 retries)", n)
	}
	if n := len(rec.logged(MsgRetry)); n != 2 {
		t.Fatalf("%d retry entries, want 2", n)
	}
	if l := rec.logged(MsgFailed)[0]; !strings.Contains(l, "failed after 3 attempts: connection refused") {
		t.Fatalf("failure entry: %s", l)
	}
	rec.fail = fmt.Errorf("%w: 404", ErrPermanent)
	if err := e.Handle([]Event{ban("sshd", "203.0.113.8/32")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a second failure entry", func() bool { return len(rec.logged(MsgFailed)) == 2 })
	if n := rec.count(); n != 4 {
		t.Fatalf("a permanent failure was retried: %d attempts in total, want 4", n)
	}
	waitFor(t, "no pending jobs", func() bool { p, _ := st.Pending(); return len(p) == 0 })
}

func TestQueueOverflowIsLoggedAndBounded(t *testing.T) {
	rec := &recorder{block: make(chan struct{})}
	e, st := newEngine(t, t.TempDir(), rec, act("hook", func(a *config.ResolvedAction) { a.Queue = 10; a.Workers = 1 }))
	defer st.Close()
	var evs []Event
	for i := 0; i < 100; i++ {
		evs = append(evs, ban("sshd", fmt.Sprintf("203.0.113.%d/32", i)))
	}
	if err := e.Handle(evs); err != nil {
		t.Fatal(err)
	}
	close(rec.block)
	waitFor(t, "the queue to drain", func() bool { return rec.count() >= 10 })
	e.Stop()
	dropped := len(rec.logged(MsgDropped))
	if n := rec.count(); n+dropped != 100 || n > 11 || dropped < 89 {
		t.Fatalf("%d delivered, %d dropped; want ≤ 11 delivered (queue 10 + 1 in flight) and the rest dropped, logged", n, dropped)
	}
	if !strings.Contains(rec.logged(MsgDropped)[0], "queue full (10)") {
		t.Fatalf("drop entry: %s", rec.logged(MsgDropped)[0])
	}
}

func TestFilters(t *testing.T) {
	rec := &recorder{}
	e, st := newEngine(t, t.TempDir(), rec,
		act("sshd-only", func(a *config.ResolvedAction) { a.Jails = []string{"sshd"}; a.OnUnban = false }),
		act("long", func(a *config.ResolvedAction) { a.MinBanTime = 24 * time.Hour }),
		act("rated", func(a *config.ResolvedAction) { a.Rate = config.Rate{N: 2, Per: time.Hour} }),
	)
	defer st.Close()
	defer e.Stop()
	perm := ban("web", "203.0.113.9/32")
	perm.Expires = time.Time{}
	late := ban("web", "203.0.113.10/32") // a day's ban whose signal came 2 s late: long enough
	late.Expires = late.Start.Add(24*time.Hour - 2*time.Second)
	if err := e.Handle([]Event{ban("sshd", "203.0.113.1/32"), ban("web", "203.0.113.2/32"), perm, late, ban("sshd", "203.0.113.3/32"), unban("sshd", "203.0.113.1/32")}); err != nil {
		t.Fatal(err)
	}
	// sshd-only: 2 bans; long: the permanent and the late day's ban;
	// rated: 2 of 6 events.
	waitFor(t, "6 deliveries", func() bool { return rec.count() == 6 })
	time.Sleep(50 * time.Millisecond)
	if n := rec.count(); n != 6 {
		t.Fatalf("%d deliveries, want 6", n)
	}
	if n := len(rec.logged(MsgDropped)); n != 4 {
		t.Fatalf("%d rate-limit entries, want 4: %v", n, rec.logged(MsgDropped))
	}
}

func TestDigestIsOneDelivery(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	a := act("mail", func(a *config.ResolvedAction) {
		a.Type = config.ActionMail
		a.Digest = 1500 * time.Millisecond
		a.Queue = 10000
	})
	e, st := newEngine(t, dir, rec, a)
	var evs []Event
	for i := 0; i < 5000; i++ {
		evs = append(evs, ban("sshd", netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), 32).String()))
	}
	for i := 0; i < len(evs); i += 1024 {
		if err := e.Handle(evs[i:min(i+1024, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the digest", func() bool { return rec.count() == 5000 })
	rec.mu.Lock()
	calls := len(rec.calls)
	rec.mu.Unlock()
	if calls != 1 {
		t.Fatalf("%d deliveries for 5000 bans, want 1 digest", calls)
	}
	waitFor(t, "no pending jobs", func() bool { p, _ := st.Pending(); return len(p) == 0 })
	e.Stop()
	st.Close()
}

func TestDigestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	a := act("mail", func(a *config.ResolvedAction) { a.Type = config.ActionMail; a.Digest = time.Hour })
	e, st := newEngine(t, dir, rec, a)
	if err := e.Handle([]Event{ban("sshd", "203.0.113.1/32"), ban("sshd", "203.0.113.2/32")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	e.Stop()
	st.Close()
	a.Digest = 50 * time.Millisecond
	e2, st2 := newEngine(t, dir, rec, a)
	defer st2.Close()
	defer e2.Stop()
	waitFor(t, "the digest after the restart", func() bool { return rec.count() == 2 })
}

func TestBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBucket(config.Rate{N: 20, Per: time.Hour}, now)
	n := 0
	for i := 0; i < 100; i++ {
		if b.take(now) {
			n++
		}
	}
	if n != 20 {
		t.Fatalf("%d taken at once, want 20", n)
	}
	if b.take(now.Add(2 * time.Minute)) {
		t.Fatal("a token after 2 minutes at 20/h (one per 3 minutes)")
	}
	if !b.take(now.Add(3*time.Minute + time.Second)) {
		t.Fatal("no token after 3 minutes at 20/h")
	}
}

func TestDigestIsBounded(t *testing.T) {
	rec := &recorder{}
	a := act("mail", func(a *config.ResolvedAction) {
		a.Type = config.ActionMail
		a.Digest = 300 * time.Millisecond
		a.Queue = 100
	})
	e, st := newEngine(t, t.TempDir(), rec, a)
	defer st.Close()
	defer e.Stop()
	for i := 0; i < 5; i++ {
		var evs []Event
		for j := 0; j < 50; j++ {
			evs = append(evs, ban("sshd", netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(i), byte(j)}), 32).String()))
		}
		if err := e.Handle(evs); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // the digest drains the queue
	}
	waitFor(t, "the digest", func() bool { return rec.count() > 0 })
	if n := rec.count(); n != 100 {
		t.Fatalf("a digest of %d events, want the queue's 100", n)
	}
	if d := rec.logged(MsgDropped); len(d) != 1 || !strings.Contains(d[0], "150 more events of this period not listed") {
		t.Fatalf("drop entries %q", d)
	}
	waitFor(t, "no pending jobs", func() bool { p, _ := st.Pending(); return len(p) == 0 })
}
