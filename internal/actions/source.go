package actions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/godbus/dbus/v5"

	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

// ReconcileEvery is how often Follow reconciles with the daemon's bans besides
// its start and the daemon's restarts.
const ReconcileEvery = 15 * time.Minute

// Follow connects to the system bus, subscribes to the daemon's ban
// signals, reconciles with the daemon's bans (ListBansPage), and then hands every signal to eng
// until ctx ends. It reconnects after losing the bus (with a growing pause,
// at most 10 s) and reconciles again whenever org.jailkeeper gets a new
// owner. ready is called once, after the first connection attempt.
func Follow(ctx context.Context, eng *Engine, log Logger, ready func(status string)) {
	readyOnce := func(s string) {
		if ready != nil {
			ready(s)
			ready = nil
		}
	}
	dbusapi.Reconnect(ctx, func() error { return follow(ctx, eng, log, readyOnce) }, func(err error, wait time.Duration) {
		log.Log(journal.PriWarning, MsgBus, fmt.Sprintf("system bus: %v; reconnecting in %s", err, wait), nil)
		readyOnce("waiting for the system bus")
	})
}

// follow is one connection's life.
func follow(ctx context.Context, eng *Engine, log Logger, ready func(string)) error {
	// Signals are trusted only from the daemon's own connection (see
	// dbusapi.Follower): an action may mail or run a command.
	f, err := dbusapi.FollowDaemon(256)
	if err != nil {
		return err
	}
	defer f.Close()
	conn, ch, owner := f.Conn, f.Signals, f.Owner
	status := reconcile(conn, eng, log)
	ready(status)
	// A safety net: a batch the store failed to record, a signal the bus
	// dropped, are found by the next reconciliation.
	tick := time.NewTicker(ReconcileEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			reconcile(conn, eng, log)
		case <-conn.Context().Done():
			return errors.New("connection lost")
		case sig, ok := <-ch:
			if !ok {
				return errors.New("connection lost")
			}
			var batch []Event
			again := false
		drain:
			for {
				evs, newOwner, changed := decode(sig, owner, time.Now())
				if changed {
					owner = newOwner
				}
				batch = append(batch, evs...)
				again = again || changed && newOwner != ""
				if len(batch) >= 4096 {
					break
				}
				select {
				case sig, ok = <-ch:
					if !ok {
						break drain
					}
				default:
					break drain
				}
			}
			if len(batch) > 0 {
				if err := eng.Handle(batch); err != nil {
					log.Log(journal.PriErr, MsgFailed, fmt.Sprintf("%v: events lost until the next reconciliation", err), nil)
				}
			}
			if again {
				reconcile(conn, eng, log)
			}
			if !ok {
				return errors.New("connection lost")
			}
		}
	}
}

// reconcile asks the daemon for its bans, in pages of ListBansPage (one
// ListBans reply cannot carry a big table), and hands them to eng; it
// returns a status line.
func reconcile(conn *dbus.Conn, eng *Engine, log Logger) string {
	obj := conn.Object(dbusapi.BusName, dbusapi.Path)
	bans, whole, err := dbusapi.ReadBans(func(offset, limit uint32) ([]dbusapi.BanInfo, uint32, error) {
		var b []dbusapi.BanInfo
		var total uint32
		err := obj.Call(dbusapi.Interface+".ListBansPage", 0, offset, limit).Store(&b, &total)
		return b, total, err
	})
	if err != nil {
		var de dbus.Error
		if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.ServiceUnknown" {
			log.Log(journal.PriInfo, MsgBus, "jailkeeper is not on the bus: waiting for it", nil)
			return "waiting for jailkeeper on the bus"
		}
		log.Log(journal.PriWarning, MsgBus, fmt.Sprintf("ListBansPage: %v", err), nil)
		return "ListBansPage failed"
	}
	n, lifted, adopted, err := eng.Reconcile(bans, whole)
	if err != nil {
		log.Log(journal.PriErr, MsgFailed, fmt.Sprintf("reconciling: %v", err), nil)
		return "reconciling failed"
	}
	if adopted > 0 {
		log.Log(journal.PriInfo, MsgBus, fmt.Sprintf("first start: %d active bans adopted without acting on them; bans from now on are acted on", adopted),
			map[string]string{"BANS": fmt.Sprint(len(bans)), "ADOPTED": fmt.Sprint(adopted)})
		return fmt.Sprintf("following jailkeeper: %d active bans adopted on first start", adopted)
	}
	s := fmt.Sprintf("following jailkeeper: %d active bans, %d new since the last run, %d lifted meanwhile", len(bans), n, lifted)
	if !whole {
		s += " (the table changed while it was read: lifted bans are found by the next reconciliation)"
	}
	log.Log(journal.PriInfo, MsgBus, "reconciled with ListBansPage: "+s[len("following jailkeeper: "):], map[string]string{
		"BANS": fmt.Sprint(len(bans)), "NEW": fmt.Sprint(n), "LIFTED": fmt.Sprint(lifted)})
	return s
}

// decode turns one signal into events. Signals of the daemon's interface
// count only when sent by owner, the current owner of org.jailkeeper;
// changed reports a NameOwnerChanged of org.jailkeeper from the bus, and
// newOwner the name's new owner ("" when the daemon left).
func decode(sig *dbus.Signal, owner string, now time.Time) (evs []Event, newOwner string, changed bool) {
	if sig == nil {
		return nil, "", false
	}
	if sig.Name == dbusapi.BusDaemon+".NameOwnerChanged" {
		if sig.Sender != dbusapi.BusDaemon || len(sig.Body) != 3 {
			return nil, "", false
		}
		name, _ := sig.Body[0].(string)
		newOwner, _ = sig.Body[2].(string)
		return nil, newOwner, name == dbusapi.BusName
	}
	if owner == "" || sig.Sender != owner || sig.Path != dbusapi.Path {
		return nil, "", false
	}
	switch sig.Name {
	case dbusapi.Interface + ".Banned":
		var jail, addr, reason string
		var exp int64
		if dbus.Store(sig.Body, &jail, &addr, &exp, &reason) == nil {
			if p, err := prefixOf(addr); err == nil {
				evs = append(evs, banEvent(jail, p, exp, reason, now))
			}
		}
	case dbusapi.Interface + ".BannedMany":
		var jail string
		var addrs []string
		var exps []int64
		if dbus.Store(sig.Body, &jail, &addrs, &exps) == nil {
			for i, a := range addrs {
				var exp int64
				if i < len(exps) {
					exp = exps[i]
				}
				if p, err := prefixOf(a); err == nil {
					evs = append(evs, banEvent(jail, p, exp, "", now))
				}
			}
		}
	case dbusapi.Interface + ".Unbanned":
		var jail, addr string
		if dbus.Store(sig.Body, &jail, &addr) == nil {
			if p, err := prefixOf(addr); err == nil {
				evs = append(evs, Event{Kind: Unban, Jail: jail, Prefix: p, Seen: now})
			}
		}
	case dbusapi.Interface + ".UnbannedMany":
		var jail string
		var addrs []string
		if dbus.Store(sig.Body, &jail, &addrs) == nil {
			for _, a := range addrs {
				if p, err := prefixOf(a); err == nil {
					evs = append(evs, Event{Kind: Unban, Jail: jail, Prefix: p, Seen: now})
				}
			}
		}
	}
	return evs, "", false
}

func banEvent(jail string, p netip.Prefix, exp int64, reason string, now time.Time) Event {
	ev := Event{Kind: Ban, Jail: jail, Prefix: p, Start: now, Reason: reason, Seen: now}
	if exp != 0 {
		ev.Expires = time.Unix(exp, 0)
	}
	return ev
}
