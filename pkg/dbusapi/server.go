package dbusapi

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// Server is the exported org.jailkeeper object.
//
// Nothing it sends can block its caller: signals go into a bounded queue
// that one goroutine empties (a full queue drops the signal and counts
// it), so a bus that stops reading from the daemon — dbus-daemon does when
// a peer leaves its replies unread — never stalls the ban path. Costly
// reads (Status, ListBans, ListBansPage) are rate-limited per caller and
// per user, root excepted, and at most maxReads run at once. Health says
// whether the bus still takes the daemon's messages.
type Server struct {
	conn *dbus.Conn
	m    Manager

	mu        sync.Mutex
	authorize func(Caller) error
	objs      *objects               // the object model (objects.go); nil without a Model
	uids      map[dbus.Sender]uint32 // callers' uids, looked up once per connection
	limits    map[string]*bucket     // rate limits of costly reads, by "sender" and "uid"

	sigs     chan signal
	done     chan struct{}
	closeOne sync.Once
	dropped  atomic.Uint64
	sending  atomic.Int64 // UnixNano when the signal leaving now started, 0 when idle
	probeOK  atomic.Int64 // UnixNano of the last answered bus probe
	started  time.Time
	reads    chan struct{} // semaphore of costly reads in flight
	budget   atomic.Int64  // the most body bytes of a reply (size.go); 0: replyBudget(BusLimit)
}

// signal is one signal waiting in the queue.
type signal struct {
	member string
	body   []any
}

const (
	// SignalQueue is how many signals wait at most; more are dropped and
	// counted (Dropped).
	SignalQueue = 4096
	// probeEvery is how often Serve's prober asks the bus something
	// cheap, and stallAfter how long a signal or a probe may take before
	// Health reports the bus as not taking the daemon's messages.
	probeEvery = 2 * time.Second
	stallAfter = 10 * time.Second
	// maxReads bounds the costly reads that run at once; ReadsPerSecond
	// and readBurst the rate of one caller or one user (root is exempt).
	maxReads       = 4
	ReadsPerSecond = 2
	readBurst      = 10
	// MaxPage is the most bans ListBansPage returns at once.
	MaxPage = 4096
)

// ErrNameLimits is the D-Bus error of a refused costly read.
const ErrNameLimits = "org.jailkeeper.Error.LimitsExceeded"

// SetAuthorizer replaces the check of callers that change bans (nil
// restores the default: uid 0, or polkit's verdict on PolkitAction). An
// error refuses the call with ErrNamePermission and the error's text.
func (s *Server) SetAuthorizer(f func(Caller) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == nil {
		f = s.defaultAuthorize
	}
	s.authorize = f
}

// Serve exports m on conn at Path and takes BusName. It fails when another
// process owns the name (a second daemon).
func Serve(conn *dbus.Conn, m Manager) (*Server, error) {
	s := &Server{conn: conn, m: m, uids: map[dbus.Sender]uint32{}, limits: map[string]*bucket{},
		sigs: make(chan signal, SignalQueue), done: make(chan struct{}), reads: make(chan struct{}, maxReads),
		started: time.Now()}
	s.authorize = s.defaultAuthorize
	if err := export(conn, methods{s}, Path, Interface); err != nil {
		return nil, fmt.Errorf("exporting %s: %w", Interface, err)
	}
	if err := export(conn, introspectable(introspectXML), Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return nil, fmt.Errorf("exporting introspection: %w", err)
	}
	if mdl, ok := m.(Model); ok {
		if err := s.exportObjects(mdl); err != nil {
			return nil, err
		}
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return nil, fmt.Errorf("requesting bus name %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner && reply != dbus.RequestNameReplyAlreadyOwner {
		return nil, fmt.Errorf("requesting bus name %s: already owned by another process (is another jailkeeper running?)", BusName)
	}
	s.probeOK.Store(time.Now().UnixNano())
	go s.send()
	go s.probe()
	return s, nil
}

// Close stops the server's goroutines (the connection stays the caller's
// to close; close it first, or a goroutine blocked in a write stays until
// it is).
func (s *Server) Close() {
	s.closeOne.Do(func() { close(s.done) })
}

// send empties the signal queue, one signal at a time.
func (s *Server) send() {
	for {
		select {
		case <-s.done:
			return
		case sig := <-s.sigs:
			s.sending.Store(time.Now().UnixNano())
			_ = s.conn.Emit(Path, Interface+"."+sig.member, sig.body...)
			s.sending.Store(0)
		}
	}
}

// probe asks the bus who owns BusName every probeEvery and records when
// it last answered: a call that never returns (the bus stopped reading
// from the daemon) or an answer naming someone else shows in Health.
func (s *Server) probe() {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), stallAfter)
		var owner string
		err := s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner)
		cancel()
		if err == nil && len(s.conn.Names()) > 0 && owner == s.conn.Names()[0] {
			s.probeOK.Store(time.Now().UnixNano())
		}
	}
}

// Health is nil while the bus takes the daemon's messages and it owns
// BusName; otherwise it says what is wrong: a signal that has waited more
// than stallAfter to leave, or no answer to the prober for as long (the
// connection is closed, blocked, or the name is lost).
func (s *Server) Health() error {
	if !s.conn.Connected() {
		return fmt.Errorf("D-Bus: connection to the bus lost")
	}
	now := time.Now()
	if t := s.sending.Load(); t != 0 && now.Sub(time.Unix(0, t)) > stallAfter {
		return fmt.Errorf("D-Bus: a signal has waited %s to leave (the bus is not reading from jailkeeper)", now.Sub(time.Unix(0, t)).Round(time.Second))
	}
	if last := time.Unix(0, s.probeOK.Load()); now.Sub(last) > stallAfter+probeEvery {
		return fmt.Errorf("D-Bus: the bus has not answered for %s, or %s is no longer ours", now.Sub(last).Round(time.Second), BusName)
	}
	return nil
}

// Dropped is how many signals were dropped because the queue was full.
func (s *Server) Dropped() uint64 { return s.dropped.Load() }

// emit queues a signal; a full queue drops it and counts it.
func (s *Server) emit(member string, body ...any) error {
	select {
	case s.sigs <- signal{member, body}:
		return nil
	default:
		s.dropped.Add(1)
		return fmt.Errorf("D-Bus signal %s dropped: %d signals waiting", member, SignalQueue)
	}
}

// Banned emits the Banned signal. expires is zero for a permanent ban.
// The signal goes to every listener on the bus, whoever it runs as, so
// its reason has the user names hidden (HideUsers), as a reply to a
// caller other than root shows it; root reads the full reason with
// ListBansPage or ListHistory.
func (s *Server) Banned(jail string, p netip.Prefix, expires time.Time, reason string) error {
	s.touch()
	var exp int64
	if !expires.IsZero() {
		exp = expires.Unix()
	}
	return s.emit("Banned", jail, prefix.Format(p), exp, HideUsers(reason))
}

// Unbanned emits the Unbanned signal.
func (s *Server) Unbanned(jail string, p netip.Prefix) error {
	s.touch()
	return s.emit("Unbanned", jail, prefix.Format(p))
}

// BannedMany emits the BannedMany signal: bans of one jail made at once
// (a flood decided from one journal batch, a blocklist import), address i
// expiring at expires[i] (zero: permanent). The daemon sends it instead of
// one Banned per ban when more than a few bans happen at once: a signal
// costs the daemon and dbus-daemon a message each. Many addresses go in
// several signals of at most SignalBudget bytes each.
func (s *Server) BannedMany(jail string, ps []netip.Prefix, expires []time.Time) error {
	s.touch()
	addrs := formatAll(ps)
	exps := expiriesOf(ps, expires)
	var err error
	addrSplit(addrs, 8, s.signalLimit()-strSize(jail), func(i, j int) {
		if e := s.emit("BannedMany", jail, addrs[i:j], exps[i:j]); e != nil && err == nil {
			err = e
		}
	})
	return err
}

// UnbannedMany emits the UnbannedMany signal: bans of one jail lifted at
// once (a mass expiry, an unban of a prefix), sent instead of one Unbanned
// each when more than a few go at once; many addresses in several signals
// of at most SignalBudget bytes each.
func (s *Server) UnbannedMany(jail string, ps []netip.Prefix) error {
	s.touch()
	addrs := formatAll(ps)
	var err error
	addrSplit(addrs, 0, s.signalLimit()-strSize(jail), func(i, j int) {
		if e := s.emit("UnbannedMany", jail, addrs[i:j]); e != nil && err == nil {
			err = e
		}
	})
	return err
}

func formatAll(ps []netip.Prefix) []string {
	addrs := make([]string, len(ps))
	for i, p := range ps {
		addrs[i] = prefix.Format(p)
	}
	return addrs
}

func (s *Server) defaultAuthorize(c Caller) error {
	return authorize(busAuthority{s.conn}, c)
}

// check authorizes the caller of msg, a changing call.
func (s *Server) check(msg *dbus.Message) *dbus.Error {
	s.mu.Lock()
	auth := s.authorize
	s.mu.Unlock()
	if err := auth(callerOf(msg)); err != nil {
		return refusal(err)
	}
	return nil
}

// seconds turns the seconds argument of Ban and BanMany into a duration:
// 0 is the jail's bantime, 2^64-1 permanent, and anything longer than
// config.MaxDuration a range error wrapping ErrBadDuration.
func seconds(t uint64) (time.Duration, error) {
	switch {
	case t == 0:
		return 0, nil
	case t == math.MaxUint64:
		return -1, nil
	case t > uint64(config.MaxDuration/time.Second):
		return 0, fmt.Errorf("%w: %d seconds is out of range, the longest is %d (100 years); 2^64-1 means permanent", ErrBadDuration, t, uint64(config.MaxDuration/time.Second))
	}
	return time.Duration(t) * time.Second, nil
}

// methods is the exported method set; kept apart from Server so that only
// these become D-Bus methods. A dbus.Message parameter receives the call
// itself (godbus fills it in; it is not part of the D-Bus signature): the
// changing methods read their caller and its flags from it.
type methods struct{ s *Server }

// Ban bans one address or CIDR in jail for seconds (0 = the jail's bantime).
func (x methods) Ban(msg dbus.Message, jail, address string, secs uint64) *dbus.Error {
	if e := x.s.check(&msg); e != nil {
		return e
	}
	p, err := ParsePrefix(address)
	if err != nil {
		return dbusErr(err)
	}
	d, err := seconds(secs)
	if err != nil {
		return dbusErr(err)
	}
	_, err = x.s.m.Ban(jail, []netip.Prefix{p}, d)
	return dbusErr(err)
}

// BanMany bans every address in one batch: all or nothing.
func (x methods) BanMany(msg dbus.Message, jail string, addresses []string, secs uint64) (uint32, *dbus.Error) {
	if e := x.s.check(&msg); e != nil {
		return 0, e
	}
	ps := make([]netip.Prefix, 0, len(addresses))
	for i, a := range addresses {
		p, err := ParsePrefix(a)
		if err != nil {
			return 0, dbusErr(fmt.Errorf("entry %d: %w", i+1, err))
		}
		ps = append(ps, p)
	}
	d, err := seconds(secs)
	if err != nil {
		return 0, dbusErr(err)
	}
	n, err := x.s.m.Ban(jail, ps, d)
	return uint32(n), dbusErr(err)
}

// BanFrom bans the addresses no whitelist entry overlaps, with a reason
// and an origin, and returns the whitelisted ones it skipped.
func (x methods) BanFrom(msg dbus.Message, jail string, addresses []string, secs uint64, reason, origin string) (uint32, []string, *dbus.Error) {
	if e := x.s.check(&msg); e != nil {
		return 0, []string{}, e
	}
	ps := make([]netip.Prefix, 0, len(addresses))
	for i, a := range addresses {
		p, err := ParsePrefix(a)
		if err != nil {
			return 0, []string{}, dbusErr(fmt.Errorf("entry %d: %w", i+1, err))
		}
		ps = append(ps, p)
	}
	if err := CheckReason(reason, origin); err != nil {
		return 0, []string{}, dbusErr(err)
	}
	d, err := seconds(secs)
	if err != nil {
		return 0, []string{}, dbusErr(err)
	}
	n, skipped, err := x.s.m.BanFrom(jail, ps, d, reason, origin)
	out := make([]string, len(skipped))
	for i, p := range skipped {
		out[i] = prefix.Format(p)
	}
	return uint32(n), out, dbusErr(err)
}

// Unban lifts every ban of address, in every jail.
func (x methods) Unban(msg dbus.Message, address string) (uint32, *dbus.Error) {
	return x.UnbanJail(msg, "", address)
}

// UnbanJail lifts the ban of address in one jail ("" = every jail).
func (x methods) UnbanJail(msg dbus.Message, jail, address string) (uint32, *dbus.Error) {
	if e := x.s.check(&msg); e != nil {
		return 0, e
	}
	p, err := ParsePrefix(address)
	if err != nil {
		return 0, dbusErr(err)
	}
	n, err := x.s.m.Unban(jail, p)
	return uint32(n), dbusErr(err)
}

// UnbanAll lifts every ban of jail in one batch.
func (x methods) UnbanAll(msg dbus.Message, jail string) (uint32, *dbus.Error) {
	if e := x.s.check(&msg); e != nil {
		return 0, e
	}
	n, err := x.s.m.UnbanAll(jail)
	return uint32(n), dbusErr(err)
}

// Status returns the counters of jail, or of every jail for "".
func (x methods) Status(sender dbus.Sender, jail string) ([]JailStatus, *dbus.Error) {
	release, e := x.s.startRead(sender)
	if e != nil {
		return []JailStatus{}, e
	}
	defer release()
	st, err := x.s.m.Status(jail)
	if st == nil {
		st = []JailStatus{}
	}
	if statusSize(st) > x.s.replyLimit() {
		// The counts say how many; ListBansPage has the addresses.
		for i := range st {
			st[i].Banned = []string{}
		}
	}
	return st, dbusErr(err)
}

// ListBans returns every active ban, when there are at most MaxListBans
// and they fit in one message (else ErrNameUseListBansPage). Only root
// sees the user names in the reasons (they can be mistyped passwords);
// other callers see them hidden.
func (x methods) ListBans(sender dbus.Sender) ([]BanInfo, *dbus.Error) {
	release, e := x.s.startRead(sender)
	if e != nil {
		return []BanInfo{}, e
	}
	defer release()
	if e := x.s.precheckListBans(""); e != nil {
		return []BanInfo{}, e
	}
	b := x.s.hideUsers(sender, x.s.m.ListBans())
	if e := x.s.checkListBans(b, ""); e != nil {
		return []BanInfo{}, e
	}
	return b, nil
}

// ListBansPage returns at most limit active bans (MaxPage when limit is 0
// or larger) from offset on, in ListBans' order, and how many there are in
// all; fewer (at least one) when the page would not fit in the reply
// budget.
func (x methods) ListBansPage(sender dbus.Sender, offset, limit uint32) ([]BanInfo, uint32, *dbus.Error) {
	release, e := x.s.startRead(sender)
	if e != nil {
		return []BanInfo{}, 0, e
	}
	defer release()
	if limit == 0 || limit > MaxPage {
		limit = MaxPage
	}
	b, total := x.s.m.ListBansPage(int(offset), int(limit))
	return fitBans(x.s.hideUsers(sender, b), x.s.replyLimit()), uint32(total), nil
}

// hideUsers hides the user names in the reasons of b unless sender is
// root.
func (s *Server) hideUsers(sender dbus.Sender, b []BanInfo) []BanInfo {
	if b == nil {
		return []BanInfo{}
	}
	if uid, ok := s.uidOf(sender); !ok || uid != 0 {
		for i := range b {
			b[i].Reason = HideUsers(b[i].Reason)
		}
	}
	return b
}

// uidOf returns the uid of sender, asking the bus once per connection.
func (s *Server) uidOf(sender dbus.Sender) (uint32, bool) {
	s.mu.Lock()
	uid, ok := s.uids[sender]
	s.mu.Unlock()
	if ok {
		return uid, true
	}
	if err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid); err != nil {
		return 0, false
	}
	s.mu.Lock()
	if len(s.uids) >= 4096 {
		clear(s.uids) // callers come and go: forget them all now and then
	}
	s.uids[sender] = uid
	s.mu.Unlock()
	return uid, true
}

// startRead admits a costly read of sender: root always; anyone else
// within ReadsPerSecond (burst readBurst) per connection and per user, and
// while fewer than maxReads run. The returned func ends the read.
func (s *Server) startRead(sender dbus.Sender) (func(), *dbus.Error) {
	uid, ok := s.uidOf(sender)
	if ok && uid == 0 {
		return func() {}, nil
	}
	now := time.Now()
	s.mu.Lock()
	if len(s.limits) >= 4096 {
		clear(s.limits)
	}
	allowed := s.take("c:"+string(sender), now) && (!ok || s.take(fmt.Sprintf("u:%d", uid), now))
	s.mu.Unlock()
	if !allowed {
		return nil, dbus.NewError(ErrNameLimits, []any{fmt.Sprintf("too many Status/ListBans calls: at most %d a second per caller and per user", ReadsPerSecond)})
	}
	select {
	case s.reads <- struct{}{}:
		return func() { <-s.reads }, nil
	default:
		return nil, dbus.NewError(ErrNameLimits, []any{"too many Status/ListBans calls at once; try again"})
	}
}

// bucket is a token bucket of costly reads.
type bucket struct {
	tokens float64
	last   time.Time
}

// take takes a token from the bucket of key, if it has one. Callers hold
// s.mu.
func (s *Server) take(key string, now time.Time) bool {
	b := s.limits[key]
	if b == nil {
		b = &bucket{tokens: readBurst, last: now}
		s.limits[key] = b
	}
	b.tokens = min(readBurst, b.tokens+now.Sub(b.last).Seconds()*ReadsPerSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// userInReason is a user name as ban reasons quote it (user "name").
// A quote cut short (a reason truncated) hides up to the end.
var userInReason = regexp.MustCompile(`\buser "(?:[^"\\]|\\.)*(?:"|\\?$)`)

// HideUsers replaces the user names quoted in a ban reason by "(hidden)":
// a failed login's user name can be a password typed in the wrong field.
func HideUsers(reason string) string {
	return userInReason.ReplaceAllLiteralString(reason, "user (hidden)")
}

// Reload re-reads the configuration; on error the running one stays.
func (x methods) Reload(msg dbus.Message) *dbus.Error {
	if e := x.s.check(&msg); e != nil {
		return e
	}
	defer x.s.touch()
	return dbusErr(x.s.m.Reload())
}
