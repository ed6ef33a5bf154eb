package dbusapi

import (
	"context"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"
)

// BusDaemon is the bus's own name and interface.
const BusDaemon = "org.freedesktop.DBus"

// Follower is a client's subscription to the daemon's signals on the
// system bus, as the companion services (`jailkeeper actions`,
// `jailkeeper sync`) follow it.
type Follower struct {
	Conn *dbus.Conn
	// Signals delivers, in order, the signals of Interface at Path sent by
	// the holder of BusName, and the bus's NameOwnerChanged for BusName.
	// Any client may emit a signal of that name (and send one straight to
	// us, whatever the match rules): only those whose sender is the
	// daemon's connection are the daemon's.
	Signals chan *dbus.Signal
	// Owner is the unique name of the daemon's connection when the
	// subscription began, "" when it was not on the bus (NameOwnerChanged
	// then tells).
	Owner string
}

// FollowDaemon connects to the system bus and subscribes to the daemon's
// signals and to its name's changes of owner, buffering up to size
// signals. Close ends it.
func FollowDaemon(size int) (*Follower, error) {
	conn, err := dbus.ConnectSystemBus(dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	if err := conn.AddMatchSignal(dbus.WithMatchSender(BusName), dbus.WithMatchObjectPath(Path),
		dbus.WithMatchInterface(Interface)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribing to %s: %w", Interface, err)
	}
	if err := conn.AddMatchSignal(dbus.WithMatchSender(BusDaemon), dbus.WithMatchInterface(BusDaemon),
		dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, BusName)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribing to NameOwnerChanged: %w", err)
	}
	f := &Follower{Conn: conn, Signals: make(chan *dbus.Signal, size)}
	conn.Signal(f.Signals)
	if err := conn.BusObject().Call(BusDaemon+".GetNameOwner", 0, BusName).Store(&f.Owner); err != nil {
		f.Owner = "" // not on the bus yet: NameOwnerChanged will say
	}
	return f, nil
}

// Close ends the subscription and the connection.
func (f *Follower) Close() {
	f.Conn.RemoveSignal(f.Signals)
	_ = f.Conn.Close()
}

// Reconnect runs attempt, one connection's life, again and again until
// ctx ends. After each attempt that ends while ctx lasts, lost is told
// its error and the pause before the next attempt: 500 ms, doubling up to
// 10 s.
func Reconnect(ctx context.Context, attempt func() error, lost func(err error, wait time.Duration)) {
	wait := 500 * time.Millisecond
	for ctx.Err() == nil {
		err := attempt()
		if ctx.Err() != nil {
			return
		}
		lost(err, wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}
