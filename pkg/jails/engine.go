package jails

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jailkeeper/jailkeeper/pkg/journal"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// Defaults applied by NewEngine to zero fields of a Jail (fail2ban's).
// pkg/config's vendor defaults (defaults.yaml) state the same values, and
// its tests hold them equal.
const (
	DefaultMaxRetry   = 5
	DefaultFindTime   = 10 * time.Minute
	DefaultBanTime    = 10 * time.Minute
	DefaultIPv6Prefix = 64
	// MinIPv6Prefix and MaxIPv6Prefix bound ipv6_prefix: /128 counts each
	// address alone; shorter than /16 would group unrelated networks.
	// pkg/config checks the configured value against them.
	MinIPv6Prefix = 16
	MaxIPv6Prefix = 128
	// DefaultIncrementWindow is how far back previous bans count for
	// increments when Increment.Window is zero.
	DefaultIncrementWindow = 7 * 24 * time.Hour
	// DefaultIncrementFactor is the factor when Increment.Factor <= 1.
	DefaultIncrementFactor = 2
	// maxBanTime caps increments when Increment.Max is zero.
	maxBanTime = 100 * 365 * 24 * time.Hour
)

// Increment makes repeat offenders' bans longer: a ban lasts BanTime ×
// Factor^n, n being the number of earlier bans of the same prefix in the
// jail within Window (from History), capped at Max (0: no cap).
type Increment struct {
	Enabled bool
	Factor  float64
	Max     time.Duration
	Window  time.Duration
}

// Distributed detects many addresses failing against one account: when at
// least MinAddresses different addresses (IPv6: prefixes) fail against the
// same user within Window, each of them is banned once it has MaxRetry
// failures against that user in the window (MaxRetry 0 means 1). A zero
// Window or MinAddresses turns it off.
type Distributed struct {
	Window       time.Duration
	MinAddresses int
	MaxRetry     int
}

// SubnetEscalation bans a whole subnet (IPv4 /Prefix4, IPv6 /Prefix6;
// 0 means 24 and 48) once Threshold bans of the jail are active inside it.
// Threshold 0 turns it off.
type SubnetEscalation struct {
	Prefix4, Prefix6, Threshold int
}

// Jail is the configuration of one jail as the engine needs it.
type Jail struct {
	Name   string
	Filter *Filter
	// Units whose entries the jail reads (by trusted _SYSTEMD_UNIT); a
	// name without a unit suffix gets ".service"; "name@.service" matches
	// every instance. Empty: the filter's default units.
	Units []string
	// Identifiers opts the jail in to entries matched by SYSLOG_IDENTIFIER,
	// which any local user can forge.
	Identifiers []string
	MaxRetry    int           // 0 → DefaultMaxRetry
	FindTime    time.Duration // 0 → DefaultFindTime
	BanTime     time.Duration // Permanent for ever; 0 → DefaultBanTime
	IPv6Prefix  int           // 0 → 64; 128 counts each address alone

	Increment        Increment
	Distributed      Distributed
	SubnetEscalation SubnetEscalation
	MaxTracked       int // 0 → DefaultMaxTracked

	// APIOnly marks a jail that reads no journal: it has no filter and no
	// units, and takes bans only from the daemon's API (a ban, a ban from
	// another server, an import). The engine never routes an entry to it.
	APIOnly bool
}

// JailStats are a jail's failure counters.
type JailStats struct {
	Name            string
	CurrentlyFailed int // addresses (IPv6: prefixes) with failures inside findtime
	TotalFailed     int // failures counted since the engine started
}

// Engine routes journal entries to jails, counts failures and decides
// bans. Handle must be called from one goroutine at a time; Forget and
// Stats may be called concurrently with it.
type Engine struct {
	mu       sync.Mutex
	jails    []*jailState
	byUnit   map[string][]int
	byPrefix map[string][]int // "name@" → jails with template unit name@.service
	byIdent  map[string][]int
	wl       *Whitelist
	hist     History
	units    []string
	idents   []string
	unitless []journal.Unitless
	// state: changes are recorded for TakeState; fullNext: the next one
	// hands out every record (state.go).
	state    bool
	fullNext bool
	// sweep is the store's re-write in progress (SweepState), or nil.
	sweep *stateSweep
	// held is the counters as of the start of a long hold of mu in
	// progress (holdLong), which Stats hands out instead of waiting; nil
	// when there is none.
	held atomic.Pointer[[]JailStats]
}

type jailState struct {
	Jail
	tracker *Tracker
	// ctx is the per-process memory of a filter with <CTXHOST> regexes
	// (nil otherwise); only Handle touches it.
	ctx       *ProcContexts
	dist      *distTracker
	escalated map[netip.Prefix]time.Time // subnet → end of its ban
	total     int
	// totalDirty: total changed since the last TakeState.
	totalDirty bool
}

// NewEngine checks jails and returns an engine for them. wl may be nil
// (loopback only); h may be nil (no history: no increments, no subnet
// escalation beyond the current batch).
func NewEngine(jails []Jail, wl *Whitelist, h History) (*Engine, error) {
	e := &Engine{byUnit: map[string][]int{}, byPrefix: map[string][]int{}, byIdent: map[string][]int{}, wl: wl, hist: h}
	if e.wl == nil {
		e.wl = NewWhitelist(nil)
	}
	seenName := map[string]bool{}
	seenUnit := map[string]bool{}
	seenIdent := map[string]bool{}
	for i, j := range jails {
		if j.Name == "" {
			return nil, fmt.Errorf("jail %d has no name", i)
		}
		if seenName[j.Name] {
			return nil, fmt.Errorf("jail %s defined twice", j.Name)
		}
		seenName[j.Name] = true
		if j.APIOnly && (j.Filter != nil || len(j.Units) > 0 || len(j.Identifiers) > 0) {
			return nil, fmt.Errorf("jail %s takes bans only from the API but has a filter, units or identifiers", j.Name)
		}
		if j.Filter == nil && !j.APIOnly {
			return nil, fmt.Errorf("jail %s has no filter", j.Name)
		}
		if j.MaxRetry <= 0 {
			j.MaxRetry = DefaultMaxRetry
		}
		if j.FindTime <= 0 {
			j.FindTime = DefaultFindTime
		}
		if j.BanTime == 0 {
			j.BanTime = DefaultBanTime
		}
		if j.BanTime < 0 && j.BanTime != Permanent {
			return nil, fmt.Errorf("jail %s: bantime %v is negative", j.Name, j.BanTime)
		}
		if j.IPv6Prefix == 0 {
			j.IPv6Prefix = DefaultIPv6Prefix
		}
		if j.IPv6Prefix < MinIPv6Prefix || j.IPv6Prefix > MaxIPv6Prefix {
			return nil, fmt.Errorf("jail %s: ipv6_prefix %d is not within %d..%d", j.Name, j.IPv6Prefix, MinIPv6Prefix, MaxIPv6Prefix)
		}
		if j.Increment.Factor <= 1 {
			j.Increment.Factor = DefaultIncrementFactor
		}
		if j.Increment.Window <= 0 {
			j.Increment.Window = DefaultIncrementWindow
		}
		if j.SubnetEscalation.Prefix4 == 0 {
			j.SubnetEscalation.Prefix4 = 24
		}
		if j.SubnetEscalation.Prefix6 == 0 {
			j.SubnetEscalation.Prefix6 = 48
		}
		if p := j.SubnetEscalation.Prefix4; p < 1 || p > 32 {
			return nil, fmt.Errorf("jail %s: subnet_escalation prefix4 %d is not within 1..32", j.Name, p)
		}
		if p := j.SubnetEscalation.Prefix6; p < 1 || p > 128 {
			return nil, fmt.Errorf("jail %s: subnet_escalation prefix6 %d is not within 1..128", j.Name, p)
		}
		if !j.APIOnly {
			if err := e.addRoutes(&j, i, seenUnit, seenIdent); err != nil {
				return nil, err
			}
		}
		js := &jailState{Jail: j, tracker: NewTracker(j.MaxRetry, j.FindTime, j.MaxTracked), escalated: map[netip.Prefix]time.Time{}}
		if !j.APIOnly && j.Filter.HasContext() {
			js.ctx = NewProcContexts(0, j.FindTime)
		}
		if j.Distributed.Window > 0 && j.Distributed.MinAddresses > 0 {
			js.dist = newDistTracker(j.Distributed, j.MaxTracked)
		}
		e.jails = append(e.jails, js)
	}
	sort.Strings(e.units)
	sort.Strings(e.idents)
	return e, nil
}

// addRoutes registers the units and identifiers jail j (the i-th) reads, and
// sets j.Units to its units as the reader matches them.
func (e *Engine) addRoutes(j *Jail, i int, seenUnit, seenIdent map[string]bool) error {
	units := j.Units
	if len(units) == 0 {
		units = j.Filter.Units()
	}
	if len(units) == 0 && len(j.Identifiers) == 0 {
		return fmt.Errorf("jail %s has no units (and its filter names none)", j.Name)
	}
	j.Units = nil
	for _, u := range units {
		u = journal.UnitName(u)
		j.Units = append(j.Units, u)
		if base, ok := strings.CutSuffix(u, "@.service"); ok {
			e.byPrefix[base+"@"] = append(e.byPrefix[base+"@"], i)
		} else {
			e.byUnit[u] = append(e.byUnit[u], i)
		}
		if !seenUnit[u] {
			seenUnit[u] = true
			e.units = append(e.units, u)
		}
	}
	for _, s := range j.Filter.Unitless() {
		u := journal.Unitless{Unit: j.Units[0], Identifier: s.Identifier, UID: s.UID}
		if !slices.Contains(e.unitless, u) {
			e.unitless = append(e.unitless, u)
		}
	}
	for _, id := range j.Identifiers {
		e.byIdent[id] = append(e.byIdent[id], i)
		if !seenIdent[id] {
			seenIdent[id] = true
			e.idents = append(e.idents, id)
		}
	}
	return nil
}

// Units returns every unit of every jail, deduplicated and sorted, with
// ".service" added where a name had no suffix.
func (e *Engine) Units() []string { return append([]string(nil), e.units...) }

// Identifiers returns every SYSLOG_IDENTIFIER some jail opted in to.
func (e *Engine) Identifiers() []string { return append([]string(nil), e.idents...) }

// Unitless returns the senders whose entries without _SYSTEMD_UNIT the
// reader is to give to the jails' units (from the jails' filters).
func (e *Engine) Unitless() []journal.Unitless {
	return append([]journal.Unitless(nil), e.unitless...)
}

// Key returns the prefix under which jail counts and bans a: the address
// itself for IPv4, its /ipv6Prefix for IPv6.
func Key(a netip.Addr, ipv6Prefix int) netip.Prefix {
	a = prefix.Addr(a)
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(ipv6Prefix)
	return p
}

// route returns the indexes of the jails that read en.
func (e *Engine) route(en journal.Entry) []int {
	var idx []int
	if en.Unit != "" {
		idx = e.byUnit[en.Unit]
		if len(e.byPrefix) > 0 {
			if at := strings.IndexByte(en.Unit, '@'); at > 0 && strings.HasSuffix(en.Unit, ".service") {
				if more := e.byPrefix[en.Unit[:at+1]]; len(more) > 0 {
					idx = append(append([]int(nil), idx...), more...)
				}
			}
		}
	}
	if en.Identifier != "" && len(e.byIdent) > 0 {
		if more := e.byIdent[en.Identifier]; len(more) > 0 {
			idx = append(append([]int(nil), idx...), more...)
			sort.Ints(idx)
			idx = dedupInts(idx)
		}
	}
	return idx
}

func dedupInts(s []int) []int {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Handle runs en through the filters of the jails that read its unit (or,
// for jails that opted in, its identifier) and returns the bans it
// decides, if any. en.Time is the time of the failure (zero: now).
func (e *Engine) Handle(en journal.Entry) []Decision {
	idx := e.route(en)
	if len(idx) == 0 {
		return nil
	}
	at := en.Time
	if at.IsZero() {
		at = time.Now()
	}
	var out []Decision
	for _, i := range idx {
		js := e.jails[i]
		// Filters and the whitelist are immutable, and only Handle
		// touches ctx: match outside the lock.
		var m Match
		var ok bool
		if js.ctx == nil {
			m, ok = js.Filter.Match(en.Message)
		} else {
			m, ok = js.Filter.MatchIn(js.ctx, Proc{Unit: en.Unit, PID: en.PID}, en.Message, at)
		}
		if !ok || e.wl.Contains(m.Addr) {
			continue
		}
		e.mu.Lock()
		out = append(out, e.fail(js, m, at)...)
		e.mu.Unlock()
	}
	return out
}

// HandleFailure counts one failure already recognised (for tests and
// replays) and returns the bans it decides.
func (e *Engine) HandleFailure(f Failure) []Decision {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, js := range e.jails {
		if js.Name == f.Jail {
			if e.wl.Contains(f.Addr) {
				return nil
			}
			return e.fail(js, Match{Addr: prefix.Addr(f.Addr), User: f.User, Regex: -1}, f.Time)
		}
	}
	return nil
}

// fail counts m in js at time at. Called with e.mu held.
func (e *Engine) fail(js *jailState, m Match, at time.Time) []Decision {
	key := Key(m.Addr, js.IPv6Prefix)
	n, counted := js.tracker.AddUser(key, m.Addr, m.Port, m.Regex, m.User, at)
	if !counted {
		return nil
	}
	js.total++
	js.totalDirty = true
	var out []Decision
	if n >= js.MaxRetry {
		js.tracker.Reset(key)
		if js.dist != nil {
			js.dist.reset(key)
		}
		reason := fmt.Sprintf("%d failures within %s", n, js.FindTime)
		if m.User != "" {
			reason += fmt.Sprintf(", last for user %q", ReasonUser(m.User))
		}
		out = append(out, e.decide(js, key, at, reason))
	} else if js.dist != nil && m.User != "" {
		for _, hit := range js.dist.add(m.User, key, at) {
			js.tracker.Reset(hit.key)
			reason := fmt.Sprintf("distributed attack on user %q: %d addresses within %s, %d failures from this one", ReasonUser(m.User), hit.addresses, js.Distributed.Window, hit.failures)
			out = append(out, e.decide(js, hit.key, at, reason))
		}
	}
	return e.escalate(js, out, at)
}

// MaxReasonUser bounds, in bytes, the user name a ban reason quotes: the
// client chooses it (sshd logs whatever name it is sent), and the reason
// goes into the ban table, the journal and D-Bus messages.
const MaxReasonUser = 64

// ReasonUser is u as a ban reason quotes it: cut to MaxReasonUser bytes
// at a character boundary, with "…" when cut.
func ReasonUser(u string) string {
	if len(u) <= MaxReasonUser {
		return u
	}
	i := MaxReasonUser
	for i > MaxReasonUser-utf8.UTFMax && !utf8.RuneStart(u[i]) {
		i--
	}
	return u[:i] + "…"
}

// decide turns a ban of p into a Decision, with the increment applied.
func (e *Engine) decide(js *jailState, p netip.Prefix, at time.Time, reason string) Decision {
	d := Decision{Jail: js.Name, Prefix: p, Duration: js.BanTime, Reason: reason, Time: at}
	if js.Increment.Enabled && js.BanTime != Permanent && e.hist != nil {
		prev := e.hist.BanCount(js.Name, p, at.Add(-js.Increment.Window))
		if prev > 0 {
			d.Duration = incremented(js.BanTime, js.Increment, prev)
			d.Reason += fmt.Sprintf("; repeat offender (%d earlier bans): bantime %s", prev, d.Duration)
		}
	}
	return d
}

// incremented returns base × factor^prev, capped at inc.Max (or maxBanTime).
func incremented(base time.Duration, inc Increment, prev int) time.Duration {
	limit := inc.Max
	if limit <= 0 || limit > maxBanTime {
		limit = maxBanTime
	}
	f := float64(base) * math.Pow(inc.Factor, float64(prev))
	if math.IsInf(f, 0) || math.IsNaN(f) || f >= float64(limit) {
		return limit
	}
	return time.Duration(f)
}

// escalate adds subnet bans for the subnets in which the decisions in ds
// bring the jail's active bans to the threshold.
func (e *Engine) escalate(js *jailState, ds []Decision, at time.Time) []Decision {
	se := js.SubnetEscalation
	if se.Threshold <= 0 || len(ds) == 0 {
		return ds
	}
	out := ds
	for _, d := range ds {
		bits := se.Prefix4
		if d.Prefix.Addr().Is6() {
			bits = se.Prefix6
		}
		if d.Prefix.Bits() <= bits {
			continue
		}
		sub, _ := d.Prefix.Addr().Prefix(bits)
		if until, ok := js.escalated[sub]; ok && (until.IsZero() || at.Before(until)) {
			continue
		}
		n := 0
		if e.hist != nil {
			n = e.hist.ActiveWithin(js.Name, sub, at)
		}
		for _, o := range out { // bans decided now are not in the history yet
			if sub.Contains(o.Prefix.Addr()) && o.Prefix.Bits() > bits {
				n++
			}
		}
		if n < se.Threshold {
			continue
		}
		sd := e.decide(js, sub, at, fmt.Sprintf("subnet escalation: %d banned addresses in %s", n, sub))
		out = append(out, sd)
		if sd.Duration == Permanent {
			js.escalated[sub] = time.Time{}
		} else {
			js.escalated[sub] = at.Add(sd.Duration)
		}
		js.tracker.Forget(sub)
		if js.dist != nil {
			js.dist.forget(sub)
		}
	}
	// Forget escalations that ended, so the map stays small.
	if len(js.escalated) > 1024 {
		for k, until := range js.escalated {
			if !until.IsZero() && !at.Before(until) {
				delete(js.escalated, k)
			}
		}
	}
	return out
}

// Forget drops the tracked failures of jail inside p (after a manual ban
// or unban of p). An empty jail name means every jail.
func (e *Engine) Forget(jail string, p netip.Prefix) {
	e.ForgetMany(jail, []netip.Prefix{p})
}

// Adopt takes over what old has counted for the jails both engines have
// (same name): the failures inside findtime, the distributed-attack counts,
// the escalated subnets and the failure total, so that a reload hands no
// attacker a fresh count. Tracked failures are kept only where their keys
// mean the same (same ipv6_prefix), distributed counts only where the
// distributed settings are unchanged; the new maxretry, findtime and
// max_tracked apply from the next failure on. old must not be used
// afterwards.
func (e *Engine) Adopt(old *Engine) {
	if old == nil || old == e {
		return
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	prev := map[string]*jailState{}
	for _, js := range old.jails {
		prev[js.Name] = js
	}
	// The saved state follows. When saved records of old are not carried
	// over (a jail removed, a tracker or distributed counts not taken),
	// the next TakeState hands out everything, so that they go.
	if old.state {
		e.recordState()
		e.fullNext = old.fullNext
	}
	carried := map[string]bool{}
	for _, js := range e.jails {
		o := prev[js.Name]
		if o == nil {
			continue
		}
		carried[js.Name] = true
		js.total = o.total
		js.totalDirty = o.totalDirty
		if o.ctx != nil && js.ctx != nil {
			o.ctx.maxAge = js.FindTime
			js.ctx = o.ctx // what processes said about their clients stays true
		}
		for sub, end := range o.escalated {
			js.escalated[sub] = end
		}
		if o.IPv6Prefix == js.IPv6Prefix {
			o.tracker.retune(js.MaxRetry, js.FindTime, js.MaxTracked)
			if e.state && o.tracker.changed == nil {
				o.tracker.changed = map[netip.Prefix]struct{}{}
			}
			js.tracker = o.tracker
		} else if o.tracker.keys.len() > 0 {
			e.fullNext = e.state
		}
		if o.dist != nil && js.dist != nil && o.Distributed == js.Distributed && o.IPv6Prefix == js.IPv6Prefix {
			if e.state && o.dist.changed == nil {
				o.dist.changed = map[distPair]struct{}{}
			}
			js.dist = o.dist
		} else if o.dist != nil && o.dist.pairs > 0 {
			e.fullNext = e.state
		}
	}
	for _, o := range old.jails {
		if !carried[o.Name] && (o.total > 0 || o.tracker.keys.len() > 0 || o.dist != nil && o.dist.pairs > 0) {
			e.fullNext = e.state
		}
	}
}

// Stats returns the failure counters of every jail, in configuration
// order. While a call that holds the engine long is under way (a state
// dump or sweep step of a cursor write, a forget of an import step: up to
// 355 ms during a 1M flood), it returns the counters as of that call's
// start instead of waiting for it: status must answer within 200 ms.
func (e *Engine) Stats() []JailStats {
	// Handle holds the lock for microseconds at a time, entry after
	// entry: a short wait for it, then the queue.
	deadline := time.Now().Add(statsWait)
	for !e.mu.TryLock() {
		if h := e.held.Load(); h != nil {
			return slices.Clone(*h)
		}
		if time.Now().After(deadline) {
			e.mu.Lock()
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	defer e.mu.Unlock()
	return e.statsLocked()
}

// statsWait bounds how long Stats tries for the lock before it queues.
const statsWait = time.Millisecond

// holdLong publishes the counters for Stats at the start of a call that
// may hold e.mu long; the caller holds e.mu and calls the function it
// returns before it releases it.
func (e *Engine) holdLong() (done func()) {
	st := e.statsLocked()
	e.held.Store(&st)
	return func() { e.held.Store(nil) }
}

// statsLocked is Stats; the caller holds e.mu.
func (e *Engine) statsLocked() []JailStats {
	out := make([]JailStats, 0, len(e.jails))
	for _, js := range e.jails {
		out = append(out, JailStats{Name: js.Name, CurrentlyFailed: js.tracker.Len(), TotalFailed: js.total})
	}
	return out
}
