package keeper

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

// TestSmallBus: the keeper served on a real dbus-daemon whose
// max_message_size is 32 KiB. A big ban (in calls that fit the bus), its
// expiry and an UnbanAll reach a subscriber as signals carrying every
// address; ListBans of too many bans is an error naming ListBansPage;
// ListBansPage's pages fit; Status leaves out a list too big; and through
// it all the daemon keeps its connection and org.jailkeeper (dbus-daemon disconnects a peer that
// sends a message over the limit).
func TestSmallBus(t *testing.T) {
	t.Parallel()
	testbed.Require(t, "dbus-daemon")
	const limit = 32 << 10
	bus := testbed.NewBusWithMaxMessage(t, limit)
	b := newBed(t, nil, testRuntime(t, "nftables", "sshd", "web"))
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv, err := dbusapi.Serve(conn, b.k)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetBusLimit(limit)
	b.k.SetAnnouncer(srv)
	daemon := conn.Names()[0]

	client, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.AddMatchSignal(dbus.WithMatchSender(dbusapi.BusName), dbus.WithMatchInterface(dbusapi.Interface)); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 10000)
	client.Signal(sigs)
	obj := client.Object(dbusapi.BusName, dbusapi.Path)
	onBus := func(when string) {
		t.Helper()
		var owner string
		if err := client.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, dbusapi.BusName).Store(&owner); err != nil || owner != daemon || !conn.Connected() {
			t.Fatalf("%s: %s owned by %q (%v), daemon's connection up: %v; want %s", when, dbusapi.BusName, owner, err, conn.Connected(), daemon)
		}
	}
	// received collects the addresses of signal member of jail until it
	// has n, and how many signals carried them.
	received := func(member, jail string, n int) (int, int) {
		t.Helper()
		got, pieces := map[string]bool{}, 0
		deadline := time.After(30 * time.Second)
		for len(got) < n {
			select {
			case s := <-sigs:
				if s.Name != dbusapi.Interface+"."+member || s.Body[0] != jail {
					continue
				}
				pieces++
				for _, a := range s.Body[1].([]string) {
					got[a] = true
				}
			case <-deadline:
				t.Fatalf("%s of %s: %d of %d addresses in %d signals after 30 s", member, jail, len(got), n, pieces)
			}
		}
		return len(got), pieces
	}
	addrs := func(n int, f string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(f, i>>8, i&255)
		}
		return out
	}

	// 2,500 bans in web, then 12,000 long IPv6 addresses in sshd, 500 a
	// call (a call must fit the bus too).
	const many, web = 12000, 2500
	banWeb := func(format string, secs uint64) {
		t.Helper()
		for i, chunk := 0, addrs(web, format); i < len(chunk); i += 500 {
			if err := obj.Call(dbusapi.Interface+".BanMany", 0, "web", chunk[i:i+500], secs).Err; err != nil {
				t.Fatal(err)
			}
		}
		received("BannedMany", "web", web)
	}
	banWeb("203.0.%d.%d", 0)
	// Status of 2,500 bans would list them (up to 10,000), but the list
	// does not fit: the counts come without it.
	var st []dbusapi.JailStatus
	if err := obj.Call(dbusapi.Interface+".Status", 0, "").Store(&st); err != nil || len(st) != 2 {
		t.Fatalf("Status: %v, %v", st, err)
	}
	for _, j := range st {
		if j.Name == "web" && (j.CurrentlyBanned != web || len(j.Banned) != 0) {
			t.Fatalf("Status of web: %d banned, %d listed; want %d without the list", j.CurrentlyBanned, len(j.Banned), web)
		}
	}
	all := addrs(many, "2001:db8:ffff:ffff:ffff:ffff:%x:%x")
	for i := 0; i < many; i += 500 {
		var n uint32
		if err := obj.Call(dbusapi.Interface+".BanMany", 0, "sshd", all[i:i+500], uint64(0)).Store(&n); err != nil || n != 500 {
			t.Fatalf("BanMany of bans %d…: %d, %v", i, n, err)
		}
	}
	if got, pieces := received("BannedMany", "sshd", many); got != many {
		t.Fatalf("BannedMany: %d addresses", got)
	} else {
		t.Logf("%d bans announced in %d BannedMany signals", got, pieces)
	}
	onBus("after the bans")

	// ListBans of 14,500 bans: refused, pointing at ListBansPage. Jail1's
	// of 2,500 IPv4 bans (under MaxListBans, over 32 KiB): refused too.
	for _, c := range []struct {
		path dbus.ObjectPath
		call string
		want string
	}{
		{dbusapi.Path, dbusapi.Interface + ".ListBans", " bans are too many"}, // the count may be the object model's, a second old
		{dbusapi.JailPath("web"), dbusapi.JailInterface + ".ListBans", "2500 bans in jail web are too many"},
	} {
		var got []dbusapi.BanInfo
		err := client.Object(dbusapi.BusName, c.path).Call(c.call, 0).Store(&got)
		var de dbus.Error
		if !errors.As(err, &de) || de.Name != dbusapi.ErrNameUseListBansPage || !strings.Contains(fmt.Sprint(de.Body...), c.want) || !strings.Contains(fmt.Sprint(de.Body...), "ListBansPage") {
			t.Fatalf("%s: %d bans, %v; want %s (%s…)", c.call, len(got), err, dbusapi.ErrNameUseListBansPage, c.want)
		}
		onBus("after " + c.call)
	}
	// The pages fit, and together they are the table.
	listed, whole, err := dbusapi.ReadBans(func(offset, n uint32) ([]dbusapi.BanInfo, uint32, error) {
		var page []dbusapi.BanInfo
		var total uint32
		err := obj.Call(dbusapi.Interface+".ListBansPage", 0, offset, n).Store(&page, &total)
		return page, total, err
	})
	if err != nil || !whole || len(listed) != many+web {
		t.Fatalf("ListBansPage: %d bans, whole %v, %v; want %d", len(listed), whole, err, many+web)
	}
	onBus("after the reads")

	// sshd's bans go by UnbanAll; 2,500 more in web expire at once.
	var n uint32
	if err := obj.Call(dbusapi.Interface+".UnbanAll", 0, "sshd").Store(&n); err != nil || n != many {
		t.Fatalf("UnbanAll: %d, %v", n, err)
	}
	if got, pieces := received("UnbannedMany", "sshd", many); got != many {
		t.Fatalf("UnbannedMany: %d", got)
	} else {
		t.Logf("UnbanAll of %d bans announced in %d UnbannedMany signals", got, pieces)
	}
	banWeb("10.1.%d.%d", 1)
	time.Sleep(1100 * time.Millisecond)
	b.k.Expire()
	received("UnbannedMany", "web", web)
	onBus("after the unbans")
	if d := srv.Dropped(); d != 0 {
		t.Errorf("%d signals dropped", d)
	}
}
