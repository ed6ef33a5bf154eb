package fleetsync

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/godbus/dbus/v5"

	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/fleet"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// ErrConfig wraps the errors of a configuration that does not load.
var ErrConfig = errors.New("configuration does not load")

// ErrNoSync is returned when the configuration has no sync section.
var ErrNoSync = errors.New("no sync configured (add a sync: section to a drop-in)")

// Load reads the sync section of the configuration in cfgDir, with the
// origin filled in from the host name when unset.
func Load(cfgDir string) (config.ResolvedSync, error) {
	cfg, err := config.Load(cfgDir)
	if err != nil {
		return config.ResolvedSync{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s, ok, err := cfg.ResolveSync()
	if err != nil {
		return s, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if !ok {
		return s, ErrNoSync
	}
	if s.Origin == "" {
		host, err := os.Hostname()
		if err != nil {
			return s, fmt.Errorf("reading the host name: %w", err)
		}
		if s.Origin, err = fleet.OriginFromHostname(host); err != nil {
			return s, fmt.Errorf("%w: %w (set sync.origin)", ErrConfig, err)
		}
	}
	return s, nil
}

// Run is the service: it follows the daemon on the system bus and the
// bucket on NATS until SIGTERM or SIGINT.
func Run(cfgDir string, log Logger) error {
	s, err := Load(cfgDir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	store, err := Dial(ctx, s, "jailkeeper-sync "+s.Origin)
	if err != nil {
		return err
	}
	defer store.Close()
	store.Log = log
	client, err := dbusapi.Dial()
	if err != nil {
		return err
	}
	defer func() { _ = client.Close() }()
	eng := New(Options{Origin: s.Origin, Share: s.Share, Apply: s.Apply, Jail: s.Jail, MaxBanTime: s.MaxBanTime,
		Daemon: client, Store: store, Log: log})
	log(6, fmt.Sprintf("sharing %v as %s through bucket %s; applying the fleet's bans: %v", s.Share, s.Origin, s.Bucket, s.Apply))

	errc := make(chan error, 2)
	var readyOnce sync.Once
	ready := func() {
		readyOnce.Do(func() {
			_, _ = sd.SdNotify(false, sd.SdNotifyReady+"\nSTATUS=following the fleet as "+s.Origin)
		})
	}
	apply := func(us []Update) {
		if _, _, err := eng.Apply(ctx, us); err != nil {
			log(3, fmt.Sprintf("applying the fleet's bans: %v", err))
		}
	}
	// replay restarts the watch, whose start applies every key again:
	// bans that came while the daemon was away reach it on its return.
	replay := make(chan struct{}, 1)
	go func() {
		for {
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- store.Watch(wctx, apply, ready) }()
			select {
			case <-replay:
				cancel()
				<-done
				log(6, "jailkeeper (re)appeared on the bus: applying the fleet's bans again")
			case err := <-done:
				cancel()
				errc <- err
				return
			}
		}
	}()
	onDaemon := func() {
		select {
		case replay <- struct{}{}:
		default:
		}
	}
	go func() { errc <- Follow(ctx, eng, log, onDaemon) }()
	go trimWhenQuiet(ctx, trimEvery)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
	return err
}

// The heap a burst grew (thousands of keys applied or published) is
// returned to the OS once the service has been quiet for a trimEvery
// period: more than trimBurst bytes allocated since the last trim, less
// than trimQuiet during the last period. The Go runtime alone keeps it
// resident much longer.
const (
	trimEvery = 5 * time.Second
	trimBurst = 4 << 20
	trimQuiet = 256 << 10
)

// trimWhenQuiet calls debug.FreeOSMemory after each burst, once quiet (see
// trimEvery), until ctx ends.
func trimWhenQuiet(ctx context.Context, every time.Duration) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocated := func() uint64 {
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := allocated()
	trimmed := last
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := allocated()
		if now-last < trimQuiet && now-trimmed > trimBurst {
			debug.FreeOSMemory()
			now = allocated()
			trimmed = now
		}
		last = now
	}
}

// ReconcileEvery is how often Follow reconciles with ListBans besides its
// start and the daemon's returns: a safety net for a signal the bus
// dropped or a put that failed.
const ReconcileEvery = 15 * time.Minute

// Follow publishes the daemon's bans: it reconciles with ListBans, then
// follows the ban signals of the daemon's connection, reconnecting to the
// bus after losing it and reconciling whenever the daemon gets a new owner
// (and calling onDaemon then), until ctx ends.
func Follow(ctx context.Context, eng *Engine, log Logger, onDaemon func()) error {
	dbusapi.Reconnect(ctx, func() error { return follow(ctx, eng, log, onDaemon) }, func(err error, wait time.Duration) {
		log(4, fmt.Sprintf("system bus: %v; reconnecting in %s", err, wait))
	})
	return nil
}

func follow(ctx context.Context, eng *Engine, log Logger, onDaemon func()) error {
	// Signals count only from the daemon's own connection: any client may
	// emit one named Banned.
	f, err := dbusapi.FollowDaemon(1024)
	if err != nil {
		return err
	}
	defer f.Close()
	conn, ch, owner := f.Conn, f.Signals, f.Owner
	reconcile(ctx, conn, eng, log)
	tick := time.NewTicker(ReconcileEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			reconcile(ctx, conn, eng, log)
		case <-conn.Context().Done():
			return errors.New("connection lost")
		case sig, ok := <-ch:
			if !ok {
				return errors.New("connection lost")
			}
			if sig.Name == dbusapi.BusDaemon+".NameOwnerChanged" {
				if sig.Sender != dbusapi.BusDaemon || len(sig.Body) != 3 {
					continue
				}
				if name, _ := sig.Body[0].(string); name != dbusapi.BusName {
					continue
				}
				owner, _ = sig.Body[2].(string)
				if owner != "" {
					reconcile(ctx, conn, eng, log)
					if onDaemon != nil {
						onDaemon()
					}
				}
				continue
			}
			if owner == "" || sig.Sender != owner || sig.Path != dbusapi.Path {
				continue
			}
			if err := handle(ctx, eng, sig); err != nil {
				log(3, fmt.Sprintf("%v (the next reconciliation repairs it)", err))
			}
		}
	}
}

// handle publishes or withdraws what one signal of the daemon announces.
func handle(ctx context.Context, eng *Engine, sig *dbus.Signal) error {
	now := time.Now()
	switch sig.Name {
	case dbusapi.Interface + ".Banned":
		var jail, addr, reason string
		var exp int64
		if dbus.Store(sig.Body, &jail, &addr, &exp, &reason) == nil {
			if p, err := prefix.Parse(addr); err == nil {
				_, err := eng.Publish(ctx, []Ban{{Jail: jail, Prefix: p, Start: now, Expires: unix(exp), Reason: reason}})
				return err
			}
		}
	case dbusapi.Interface + ".BannedMany":
		var jail string
		var addrs []string
		var exps []int64
		if dbus.Store(sig.Body, &jail, &addrs, &exps) == nil {
			bans := make([]Ban, 0, len(addrs))
			for i, a := range addrs {
				p, err := prefix.Parse(a)
				if err != nil || i >= len(exps) {
					continue
				}
				bans = append(bans, Ban{Jail: jail, Prefix: p, Start: now, Expires: unix(exps[i])})
			}
			_, err := eng.Publish(ctx, bans)
			return err
		}
	case dbusapi.Interface + ".Unbanned", dbusapi.Interface + ".UnbannedMany":
		var jail string
		var addrs []string
		if sig.Name == dbusapi.Interface+".Unbanned" {
			var a string
			if dbus.Store(sig.Body, &jail, &a) != nil {
				return nil
			}
			addrs = []string{a}
		} else if dbus.Store(sig.Body, &jail, &addrs) != nil {
			return nil
		}
		ps := make([]netip.Prefix, 0, len(addrs))
		for _, a := range addrs {
			if p, err := prefix.Parse(a); err == nil {
				ps = append(ps, p)
			}
		}
		return eng.Withdraw(ctx, jail, ps)
	}
	return nil
}

func unix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

// reconcile publishes the daemon's active bans and withdraws this origin's
// keys without one. When the table changed while it was read in pages,
// nothing is withdrawn (a ban may have been skipped); the next
// reconciliation does it.
func reconcile(ctx context.Context, conn *dbus.Conn, eng *Engine, log Logger) {
	obj := conn.Object(dbusapi.BusName, dbusapi.Path)
	infos, whole, err := dbusapi.ReadBans(func(offset, limit uint32) ([]dbusapi.BanInfo, uint32, error) {
		var b []dbusapi.BanInfo
		var total uint32
		err := obj.Call(dbusapi.Interface+".ListBansPage", 0, offset, limit).Store(&b, &total)
		return b, total, err
	})
	if err != nil {
		log(6, fmt.Sprintf("ListBansPage: %v: waiting for jailkeeper", err))
		return
	}
	bans := make([]Ban, 0, len(infos))
	for _, b := range infos {
		p, err := prefix.Parse(b.Prefix)
		if err != nil {
			continue
		}
		bans = append(bans, Ban{Jail: b.Jail, Prefix: p, Start: unix(b.Start), Expires: unix(b.Expires), Reason: b.Reason})
	}
	if !whole {
		pub, err := eng.Publish(ctx, bans)
		if err != nil {
			log(3, fmt.Sprintf("reconciling with ListBansPage: %v", err))
			return
		}
		log(6, fmt.Sprintf("reconciled with ListBansPage: %d bans published; the table changed while it was read, so no key is withdrawn this time", pub))
		return
	}
	pub, wd, err := eng.Reconcile(ctx, bans)
	if err != nil {
		log(3, fmt.Sprintf("reconciling with ListBansPage: %v", err))
		return
	}
	log(6, fmt.Sprintf("reconciled with ListBansPage: %d bans published, %d keys withdrawn", pub, wd))
}
