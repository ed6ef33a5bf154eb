// Package fleetsync is `jailkeeper sync`: the companion that shares bans
// between servers through a NATS JetStream key-value bucket (the data model
// is pkg/fleet's). It is a pure D-Bus client of the daemon: it publishes
// the bans of the local jails it shares (following the Banned, BannedMany,
// Unbanned and UnbannedMany signals, and reconciling with ListBans whenever
// the daemon appears on the bus), and applies the other servers' bans into
// a jail of their own through BanMany, whose bans it never publishes.
//
// Engine holds the decisions and talks to the daemon and to the bucket
// through two small interfaces, so that its unit tests run on in-memory
// fakes; Run wires it to the system bus and to NATS.
package fleetsync

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/fleet"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// Daemon is the part of the daemon's D-Bus API the engine uses
// (dbusapi.Client implements it).
type Daemon interface {
	// BanFrom bans the addresses the daemon does not whitelist and
	// returns the whitelisted ones it skipped.
	BanFrom(jail string, addresses []string, d time.Duration, reason, origin string) (uint32, []string, error)
	Unban(jail, address string) (uint32, error)
}

// Store is the key-value bucket.
type Store interface {
	// Put sets key to value for ttl (0: until deleted).
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key.
	Delete(ctx context.Context, key string) error
	// Keys returns the keys matching the filter (NATS wildcards).
	Keys(ctx context.Context, filter string) ([]string, error)
	// Values returns the keys matching the filter with their values.
	Values(ctx context.Context, filter string) (map[string][]byte, error)
}

// Logger receives the engine's messages (priority as syslog's: 3 error,
// 4 warning, 6 info).
type Logger func(pri int, msg string)

// Ban is a local ban, as a signal or ListBans reports it.
type Ban struct {
	Jail    string
	Prefix  netip.Prefix
	Start   time.Time
	Expires time.Time // zero: permanent
	Reason  string
}

// Update is one change the bucket reports.
type Update struct {
	Key     string
	Value   []byte
	Deleted bool // deleted, purged or expired
}

// Options configure an Engine.
type Options struct {
	Origin     string   // this server's origin
	Share      []string // local jails whose bans are published
	Apply      bool     // apply the other servers' bans
	Jail       string   // the local jail they go into
	MaxBanTime time.Duration
	Daemon     Daemon
	Store      Store
	Log        Logger
	Now        func() time.Time
}

// Engine decides what is published and what is applied.
type Engine struct {
	o      Options
	share  map[string]bool
	policy fleet.Policy

	mu sync.Mutex
	// applied maps each address this server holds for the fleet to the
	// keys (origins and jails) that ask for it: the local ban is lifted
	// when the last of them is deleted. Nearly always one key: a slice
	// costs a fraction of a map per address.
	applied map[netip.Prefix][]string
}

// New returns an engine.
func New(o Options) *Engine {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = func(int, string) {}
	}
	e := &Engine{o: o, share: map[string]bool{}, applied: map[netip.Prefix][]string{},
		policy: fleet.Policy{Self: o.Origin, MaxBanTime: o.MaxBanTime}}
	for _, j := range o.Share {
		e.share[j] = true
	}
	// The fleet's jail is never published, whatever Share says: no loops.
	delete(e.share, o.Jail)
	return e
}

// Publish puts the bans of shared jails into the bucket; it returns how
// many it published. A reason goes out with its user names hidden, as the
// Banned signal carries it: they are private to this server's root.
func (e *Engine) Publish(ctx context.Context, bans []Ban) (int, error) {
	now, n := e.o.Now(), 0
	for _, b := range bans {
		if !e.share[b.Jail] {
			continue
		}
		r := fleet.Record{Prefix: b.Prefix, Jail: b.Jail, Reason: clip(dbusapi.HideUsers(b.Reason)), Start: b.Start, Expires: b.Expires, Origin: e.o.Origin}
		if r.Start.IsZero() {
			r.Start = now
		}
		ttl := r.TTL(now)
		if !r.Expires.IsZero() && ttl < time.Second {
			continue // ends before the others could apply it
		}
		v, err := r.Encode()
		if err != nil {
			e.o.Log(4, fmt.Sprintf("not publishing: %v", err))
			continue
		}
		if err := e.o.Store.Put(ctx, r.Key().String(), v, ttl.Truncate(time.Second)); err != nil {
			return n, fmt.Errorf("publishing the ban of %s in %s: %w", prefix.Format(b.Prefix), b.Jail, err)
		}
		n++
	}
	return n, nil
}

// Withdraw deletes this server's keys of bans lifted locally.
func (e *Engine) Withdraw(ctx context.Context, jail string, ps []netip.Prefix) error {
	if !e.share[jail] {
		return nil
	}
	for _, p := range ps {
		k := fleet.Key{Origin: e.o.Origin, Jail: jail, Prefix: p}
		if err := e.o.Store.Delete(ctx, k.String()); err != nil {
			return fmt.Errorf("withdrawing the ban of %s in %s: %w", prefix.Format(p), jail, err)
		}
	}
	return nil
}

// Reconcile makes this server's keys those of its active shared bans:
// a ban without its key, or whose key says another end, is published, and
// every key of this origin without an active ban is deleted (a ban lifted
// while the service was down). Keys that agree are left alone: a
// reconciliation of 10,000 bans reads their keys instead of putting them
// all again.
func (e *Engine) Reconcile(ctx context.Context, bans []Ban) (published, withdrawn int, err error) {
	have, err := e.o.Store.Values(ctx, fleet.OriginFilter(e.o.Origin))
	if err != nil {
		return 0, 0, fmt.Errorf("reading this server's keys: %w", err)
	}
	active := map[string]bool{}
	var stale []Ban
	for _, b := range bans {
		if !e.share[b.Jail] {
			continue
		}
		k := fleet.Key{Origin: e.o.Origin, Jail: b.Jail, Prefix: b.Prefix}.String()
		active[k] = true
		if v, ok := have[k]; ok {
			if r, err := fleet.Decode(k, v); err == nil && r.Expires.Equal(b.Expires) {
				continue
			}
		}
		stale = append(stale, b)
	}
	if published, err = e.Publish(ctx, stale); err != nil {
		return published, 0, err
	}
	keys := make([]string, 0, len(have))
	for k := range have {
		if !active[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := e.o.Store.Delete(ctx, k); err != nil {
			return published, withdrawn, fmt.Errorf("deleting %s: %w", k, err)
		}
		withdrawn++
	}
	return published, withdrawn, nil
}

// Apply applies a batch of the bucket's changes: the other servers' bans go
// into the fleet's jail, grouped by remaining time and origin into BanFrom
// calls (reason "fleet: <jail> on <origin>"); a
// deleted key lifts the local ban once no other key asks for the address;
// a deleted key of this server's own (a fleet-wide unban) lifts the ban of
// the shared jail it names.
// A malformed value is logged and skipped. It returns how many addresses
// were banned and lifted.
func (e *Engine) Apply(ctx context.Context, updates []Update) (banned, lifted int, err error) {
	now := e.o.Now()
	groups := map[group][]netip.Prefix{}
	var unban []netip.Prefix
	var ownUnban []fleet.Key
	e.mu.Lock()
	for _, u := range updates {
		if u.Deleted {
			k, err := fleet.ParseKey(u.Key)
			if err != nil {
				continue
			}
			if k.Origin == e.o.Origin {
				// A fleet-wide unban (or this server's own unban,
				// or the key's expiry: lifting again is harmless).
				if e.share[k.Jail] {
					ownUnban = append(ownUnban, k)
				}
				continue
			}
			if !e.o.Apply {
				continue
			}
			keys := e.applied[k.Prefix]
			i := slices.Index(keys, u.Key)
			if i < 0 {
				continue
			}
			if keys = slices.Delete(keys, i, i+1); len(keys) > 0 {
				e.applied[k.Prefix] = keys
				continue
			}
			delete(e.applied, k.Prefix)
			unban = append(unban, k.Prefix)
			continue
		}
		if !e.o.Apply {
			continue
		}
		r, err := fleet.Decode(u.Key, u.Value)
		if err != nil {
			e.o.Log(4, fmt.Sprintf("ignoring a value of the bucket: %v", err))
			continue
		}
		d, ok := e.policy.Decide(r, now)
		if !ok {
			continue
		}
		if keys := e.applied[r.Prefix]; !slices.Contains(keys, u.Key) {
			e.applied[r.Prefix] = append(keys, u.Key)
		}
		d = d.Round(time.Second)
		if d == 0 && e.o.MaxBanTime == 0 && !r.Expires.IsZero() {
			d = time.Second
		}
		g := group{d: d, reason: r.LocalReason(), origin: r.Origin}
		groups[g] = append(groups[g], r.Prefix)
	}
	e.mu.Unlock()

	gs := make([]group, 0, len(groups))
	for g := range groups {
		gs = append(gs, g)
	}
	sort.Slice(gs, func(i, j int) bool {
		if gs[i].d != gs[j].d {
			return gs[i].d < gs[j].d
		}
		return gs[i].reason < gs[j].reason
	})
	for _, g := range gs {
		n, err := e.banFrom(groups[g], g)
		banned += n
		if err != nil {
			return banned, lifted, err
		}
	}
	for _, k := range ownUnban {
		n, err := e.o.Daemon.Unban(k.Jail, prefix.Format(k.Prefix))
		if err != nil {
			e.o.Log(4, fmt.Sprintf("lifting the ban of %s in %s, whose key was deleted: %v", prefix.Format(k.Prefix), k.Jail, err))
			continue
		}
		lifted += int(n)
	}
	for _, p := range unban {
		if _, err := e.o.Daemon.Unban(e.o.Jail, prefix.Format(p)); err != nil {
			e.o.Log(4, fmt.Sprintf("lifting the fleet's ban of %s: %v", prefix.Format(p), err))
			continue
		}
		lifted++
	}
	return banned, lifted, nil
}

// fleetDuration is the duration argument of a fleet ban: 0 (permanent, no
// cap) becomes the API's "permanent".
func fleetDuration(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// group is the bans of a batch that one BanFrom call applies.
type group struct {
	d      time.Duration
	reason string
	origin string
}

// banFrom bans ps in the fleet's jail; the addresses this server
// whitelists are skipped by the daemon and logged: each server's whitelist
// wins.
func (e *Engine) banFrom(ps []netip.Prefix, g group) (int, error) {
	addrs := make([]string, len(ps))
	for i, p := range ps {
		addrs[i] = prefix.Format(p)
	}
	_, skipped, err := e.o.Daemon.BanFrom(e.o.Jail, addrs, fleetDuration(g.d), g.reason, g.origin)
	if err != nil {
		return 0, fmt.Errorf("banning %d addresses of %s in %s: %w", len(addrs), g.origin, e.o.Jail, err)
	}
	if len(skipped) > 0 {
		e.o.Log(6, fmt.Sprintf("%d of the fleet's bans from %s not applied here (whitelisted): %s", len(skipped), g.origin, strings.Join(skipped, ", ")))
	}
	return len(addrs) - len(skipped), nil
}

// FleetUnban deletes every origin's keys of p; it returns how many.
func FleetUnban(ctx context.Context, s Store, p netip.Prefix) (int, error) {
	keys, err := s.Keys(ctx, fleet.AddressFilter(p))
	if err != nil {
		return 0, fmt.Errorf("listing the keys of %s: %w", prefix.Format(p), err)
	}
	for i, k := range keys {
		if err := s.Delete(ctx, k); err != nil {
			return i, fmt.Errorf("deleting %s: %w", k, err)
		}
	}
	return len(keys), nil
}

// clip shortens a local reason to what a record may carry.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > fleet.MaxReason {
		s = strings.ToValidUTF8(s[:fleet.MaxReason], "")
	}
	return s
}
