package actions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// Deliverer carries out one action: a single event, or (for a mail digest)
// several at once. An error wrapping ErrPermanent is not retried.
type Deliverer interface {
	Deliver(ctx context.Context, events []Event) error
}

// ErrPermanent marks a failure that another attempt cannot fix (a 4xx
// answer, no abuse contact).
var ErrPermanent = errors.New("permanent failure")

// Options configure an Engine.
type Options struct {
	Actions []config.ResolvedAction
	// Deliverers by action name; New builds the missing ones with
	// NewDeliverer.
	Deliverers map[string]Deliverer
	Store      *Store
	Log        Logger
	// Backoff is the wait before the first retry; it doubles after each
	// (default 1 s, at most 30 s).
	Backoff time.Duration
	Now     func() time.Time
}

// Engine turns events into jobs (recorded in the Store first) and runs
// them through each action's bounded queue and workers.
type Engine struct {
	opts    Options
	runners map[string]*runner
	order   []*runner
	done    chan uint64
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	doneWG  sync.WaitGroup
}

// runner is one action's queue, workers and rate limit.
type runner struct {
	a    config.ResolvedAction
	d    Deliverer
	q    chan Job
	rate *bucket
}

// New returns an engine; Start starts it.
func New(opts Options) *Engine {
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{opts: opts, runners: map[string]*runner{}, done: make(chan uint64, 1024)}
	for _, a := range opts.Actions {
		r := &runner{a: a, d: opts.Deliverers[a.Name], q: make(chan Job, a.Queue)}
		if a.Rate.N > 0 {
			r.rate = newBucket(a.Rate, opts.Now())
		}
		e.runners[a.Name] = r
		e.order = append(e.order, r)
	}
	return e
}

// Start queues the jobs a previous run left pending, then starts the
// workers.
func (e *Engine) Start() error {
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.doneWG.Add(1)
	go e.collectDone()
	pending, err := e.opts.Store.Pending()
	if err != nil {
		return err
	}
	var stale []uint64
	for _, j := range pending {
		if _, ok := e.runners[j.Action]; !ok {
			stale = append(stale, j.Seq) // the action is no longer configured
			continue
		}
		j.Seen = e.opts.Now()
		e.enqueue(j)
	}
	if err := e.opts.Store.Done(stale); err != nil {
		return err
	}
	if len(pending) > 0 {
		e.opts.Log.Log(journal.PriInfo, MsgStarted, fmt.Sprintf("resuming %d jobs left pending by the last run (%d of removed actions dropped)",
			len(pending)-len(stale), len(stale)), nil)
	}
	for _, r := range e.order {
		if r.a.Type == config.ActionMail && r.a.Digest > 0 {
			e.wg.Add(1)
			go e.digest(r)
			continue
		}
		for i := 0; i < r.a.Workers; i++ {
			e.wg.Add(1)
			go e.work(r)
		}
	}
	return nil
}

// Stop lets the jobs in flight finish (each bounded by its timeout),
// leaves the queued ones pending in the store for the next run, and
// records what finished.
func (e *Engine) Stop() {
	e.cancel()
	e.wg.Wait()
	close(e.done)
	e.doneWG.Wait()
}

// Handle records a batch of events and queues the jobs they create. Events
// already known to the store create none.
func (e *Engine) Handle(events []Event) error {
	jobs, err := e.opts.Store.Apply(events, e.decide)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		e.enqueue(j)
	}
	return nil
}

// Reconcile compares the daemon's active bans with the store: bans not
// seen yet are handled as new, bans seen but no longer active as lifted.
// The first reconciliation of a new store only adopts the active bans
// (adopted reports how many) without acting on them: installing the
// service must not mail or post every ban the host already has. whole
// says bans is the whole table; a list read while the table changed (a
// ban may be missing from it) lifts nothing, and adopts without ending
// the first start: the next whole list does.
func (e *Engine) Reconcile(bans []dbusapi.BanInfo, whole bool) (newBans, lifted, adopted int, err error) {
	base, err := e.opts.Store.HasBaseline()
	if err != nil {
		return 0, 0, 0, err
	}
	if !base {
		n, err := e.adopt(bans)
		if err != nil || !whole {
			return 0, 0, n, err
		}
		return 0, 0, n, e.opts.Store.SetBaseline()
	}
	newBans, lifted, err = e.reconcile(bans, whole)
	return newBans, lifted, 0, err
}

// adopt records bans as seen, creating no job.
func (e *Engine) adopt(bans []dbusapi.BanInfo) (int, error) {
	var events []Event
	for _, b := range bans {
		p, err := prefix.Parse(b.Prefix)
		if err != nil {
			continue
		}
		ev := Event{Kind: Ban, Jail: b.Jail, Prefix: p, Start: time.Unix(b.Start, 0)}
		if b.Expires != 0 {
			ev.Expires = time.Unix(b.Expires, 0)
		}
		events = append(events, ev)
	}
	for i := 0; i < len(events); i += 1024 {
		if _, err := e.opts.Store.Apply(events[i:min(i+1024, len(events))], func(Event) []Job { return nil }); err != nil {
			return 0, err
		}
	}
	return len(events), nil
}

func (e *Engine) reconcile(bans []dbusapi.BanInfo, whole bool) (newBans, lifted int, err error) {
	now := e.opts.Now()
	active := map[SeenBan]bool{}
	var events []Event
	for _, b := range bans {
		p, perr := prefix.Parse(b.Prefix)
		if perr != nil {
			continue
		}
		active[SeenBan{b.Jail, p}] = true
		// The reason as the Banned signal carries it (user names hidden):
		// the same whether a ban was followed or found here.
		ev := Event{Kind: Ban, Jail: b.Jail, Prefix: p, Start: time.Unix(b.Start, 0), Reason: dbusapi.HideUsers(b.Reason), Seen: now}
		if b.Expires != 0 {
			ev.Expires = time.Unix(b.Expires, 0)
		}
		events = append(events, ev)
	}
	seen, err := e.opts.Store.Seen()
	if err != nil {
		return 0, 0, err
	}
	known := map[SeenBan]bool{}
	for _, s := range seen {
		known[s] = true
		if whole && !active[s] {
			events = append(events, Event{Kind: Unban, Jail: s.Jail, Prefix: s.Prefix, Seen: now})
			lifted++
		}
	}
	for _, ev := range events {
		if ev.Kind == Ban && !known[SeenBan{ev.Jail, ev.Prefix}] {
			newBans++
		}
	}
	for len(events) > 0 {
		n := min(len(events), 1024)
		if err := e.Handle(events[:n]); err != nil {
			return 0, 0, err
		}
		events = events[n:]
	}
	return newBans, lifted, nil
}

// banTimeSlack is how much shorter than min_bantime a ban may look and
// still count: the time between a ban and its signal's arrival.
const banTimeSlack = 10 * time.Second

// decide returns the jobs an event creates: one per action that wants it.
func (e *Engine) decide(ev Event) []Job {
	var jobs []Job
	for _, r := range e.order {
		a := r.a
		if ev.Kind == Ban && !a.OnBan || ev.Kind == Unban && !a.OnUnban {
			continue
		}
		if len(a.Jails) > 0 && !slices.Contains(a.Jails, ev.Jail) {
			continue
		}
		if a.MinBanTime != 0 {
			// A signal carries the ban's end, not its start: the ban time
			// is measured from the signal's arrival, a little late.
			bt := ev.BanTime()
			if !ev.Start.IsZero() && bt >= 0 && (a.MinBanTime < 0 || bt+banTimeSlack < a.MinBanTime) {
				continue
			}
		}
		if r.rate != nil && !r.rate.take(e.opts.Now()) {
			e.logJob(journal.PriWarning, MsgDropped, a, ev, fmt.Sprintf("action %s: rate limit %s reached: %s of %s in %s not acted on", a.Name, a.Rate, ev.Kind, ev.Address(), ev.Jail), nil)
			continue
		}
		jobs = append(jobs, Job{Action: a.Name, Kind: ev.Kind, Jail: ev.Jail, Prefix: ev.Prefix.String(),
			Start: unix(ev.Start), Expires: unix(ev.Expires), Reason: ev.Reason, Seen: ev.Seen})
	}
	return jobs
}

// enqueue puts j on its action's queue; a full queue drops it, logged.
func (e *Engine) enqueue(j Job) {
	r := e.runners[j.Action]
	select {
	case r.q <- j:
	default:
		e.logJob(journal.PriWarning, MsgDropped, r.a, j.Event(), fmt.Sprintf("action %s: queue full (%d): %s of %s in %s not acted on", r.a.Name, r.a.Queue, j.Kind, j.Event().Address(), j.Jail), nil)
		e.done <- j.Seq
	}
}

// work is one worker of a per-event action.
func (e *Engine) work(r *runner) {
	defer e.wg.Done()
	for {
		select {
		case <-e.ctx.Done():
			return
		case j := <-r.q:
			if e.ctx.Err() != nil {
				return // left pending for the next run
			}
			if e.run(r, []Event{j.Event()}) {
				e.done <- j.Seq
			}
		}
	}
}

// digest collects a mail action's events for one period and sends them
// as one mail.
func (e *Engine) digest(r *runner) {
	defer e.wg.Done()
	var buf []Job
	var timer <-chan time.Time
	over := 0 // events beyond the queue's size this period: dropped
	for {
		select {
		case <-e.ctx.Done():
			return // the buffered jobs stay pending for the next run
		case j := <-r.q:
			if timer == nil {
				timer = time.After(r.a.Digest)
			}
			if len(buf) >= r.a.Queue {
				over++
				e.done <- j.Seq
				continue
			}
			buf = append(buf, j)
		case <-timer:
			timer = nil
			if over > 0 {
				e.opts.Log.Log(journal.PriWarning, MsgDropped, fmt.Sprintf("action %s: digest full (%d events): %d more events of this period not listed", r.a.Name, r.a.Queue, over),
					map[string]string{"ACTION": r.a.Name, "EVENTS": fmt.Sprint(over)})
				over = 0
			}
			evs := make([]Event, len(buf))
			for i, j := range buf {
				evs[i] = j.Event()
			}
			if e.run(r, evs) {
				for _, j := range buf {
					e.done <- j.Seq
				}
			}
			buf = nil
		}
	}
}

// run delivers with retries and logs the outcome. It reports whether the
// job is finished (done or given up); false means it was interrupted by
// Stop and stays pending.
func (e *Engine) run(r *runner, evs []Event) bool {
	a := r.a
	wait := e.opts.Backoff
	for attempt := 0; ; attempt++ {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
		err := r.d.Deliver(ctx, evs)
		cancel()
		took := time.Since(start)
		if err == nil {
			e.logOutcome(journal.PriInfo, MsgDone, a, evs, "done", took, nil)
			return true
		}
		if errors.Is(err, ErrPermanent) || attempt >= a.Retries {
			e.logOutcome(journal.PriErr, MsgFailed, a, evs, fmt.Sprintf("failed after %d attempts: %v", attempt+1, err), took, err)
			return true
		}
		e.logOutcome(journal.PriWarning, MsgRetry, a, evs, fmt.Sprintf("attempt %d failed, retrying in %s: %v", attempt+1, wait, err), took, err)
		select {
		case <-e.ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (e *Engine) logOutcome(pri journal.Priority, id string, a config.ResolvedAction, evs []Event, what string, took time.Duration, err error) {
	f := map[string]string{"DURATION_MS": fmt.Sprint(took.Milliseconds())}
	if len(evs) == 1 {
		ev := evs[0]
		f["LATENCY_MS"] = fmt.Sprint(time.Since(ev.Seen).Milliseconds())
		e.logJob(pri, id, a, ev, fmt.Sprintf("action %s (%s) on %s of %s in %s: %s", a.Name, a.Type, ev.Kind, ev.Address(), ev.Jail, what), f)
		return
	}
	f["ACTION"] = a.Name
	f["EVENTS"] = fmt.Sprint(len(evs))
	e.opts.Log.Log(pri, id, fmt.Sprintf("action %s (%s) on a digest of %d events: %s", a.Name, a.Type, len(evs), what), f)
}

func (e *Engine) logJob(pri journal.Priority, id string, a config.ResolvedAction, ev Event, msg string, f map[string]string) {
	if f == nil {
		f = map[string]string{}
	}
	f["JAIL"], f["ADDRESS"], f["ACTION"], f["EVENT"] = ev.Jail, ev.Address(), a.Name, ev.Kind.String()
	e.opts.Log.Log(pri, id, msg, f)
}

// collectDone removes finished jobs from the store in batches (one
// transaction per 100 ms or 1,000 jobs).
func (e *Engine) collectDone() {
	defer e.doneWG.Done()
	var batch []uint64
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	flush := func() {
		if err := e.opts.Store.Done(batch); err != nil {
			e.opts.Log.Log(journal.PriErr, MsgFailed, err.Error(), nil)
		}
		batch = batch[:0]
	}
	for {
		select {
		case q, ok := <-e.done:
			if !ok {
				flush()
				return
			}
			batch = append(batch, q)
			if len(batch) >= 1000 {
				flush()
			}
		case <-tick.C:
			if len(batch) > 0 {
				flush()
			}
		}
	}
}

// bucket is a token bucket: N tokens per period, refilled continuously.
type bucket struct {
	rate   config.Rate
	tokens float64
	last   time.Time
}

func newBucket(r config.Rate, now time.Time) *bucket {
	return &bucket{rate: r, tokens: float64(r.N), last: now}
}

func (b *bucket) take(now time.Time) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(b.rate.N), b.tokens+float64(b.rate.N)*d.Seconds()/b.rate.Per.Seconds())
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prefixOf parses an address as the daemon's signals carry it.
func prefixOf(s string) (netip.Prefix, error) { return prefix.Parse(s) }
