package actions

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

// bigTable is a daemon's Manager holding many bans (in memory: the bus
// and the service in front of it are the real ones).
type bigTable struct{ bans []dbusapi.BanInfo }

func (m *bigTable) Ban(string, []netip.Prefix, time.Duration) (int, error) { return 0, nil }
func (m *bigTable) BanFrom(string, []netip.Prefix, time.Duration, string, string) (int, []netip.Prefix, error) {
	return 0, nil, nil
}
func (m *bigTable) Unban(string, netip.Prefix) (int, error)     { return 0, nil }
func (m *bigTable) Status(string) ([]dbusapi.JailStatus, error) { return nil, nil }
func (m *bigTable) UnbanAll(string) (int, error)                { return 0, nil }
func (m *bigTable) Reload() error                               { return nil }
func (m *bigTable) ListBans() []dbusapi.BanInfo                 { return append([]dbusapi.BanInfo(nil), m.bans...) }
func (m *bigTable) ListBansPage(offset, limit int) ([]dbusapi.BanInfo, int) {
	offset = min(offset, len(m.bans))
	end := min(offset+limit, len(m.bans))
	return append([]dbusapi.BanInfo(nil), m.bans[offset:end]...), len(m.bans)
}

// TestReconcileBigTable: the daemon holds 12,000 bans on a bus whose
// max_message_size is 64 KiB; reconcile reads them all in pages (one
// ListBans would be refused) and adopts them on a first start, and the
// daemon stays on the bus.
func TestReconcileBigTable(t *testing.T) {
	t.Parallel()
	testbed.Require(t, "dbus-daemon")
	const limit = 64 << 10
	bus := testbed.NewBusWithMaxMessage(t, limit)
	tbl := &bigTable{}
	for i := range 12000 {
		tbl.bans = append(tbl.bans, dbusapi.BanInfo{Jail: "sshd", Prefix: fmt.Sprintf("10.0.%d.%d", i>>8, i&255), Start: 1, Reason: "3 failures within 10m0s"})
	}
	daemon, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	srv, err := dbusapi.Serve(daemon, tbl)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetBusLimit(limit)

	client, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	rec := &recorder{}
	e, st := newEngine(t, t.TempDir(), rec, act("hook", nil))
	defer st.Close()
	defer e.Stop()
	status := reconcile(client, e, rec)
	if status != "following jailkeeper: 12000 active bans adopted on first start" {
		t.Fatalf("reconcile: %q; log:\n%s", status, strings.Join(rec.entries, "\n"))
	}
	seen, err := st.Seen()
	if err != nil || len(seen) != 12000 {
		t.Fatalf("store has %d bans seen, %v; want 12000", len(seen), err)
	}
	if !daemon.Connected() {
		t.Fatal("the daemon lost its bus connection")
	}
	// Again, with one more ban: one new ban acted on, nothing lifted.
	tbl.bans = append(tbl.bans, dbusapi.BanInfo{Jail: "sshd", Prefix: "203.0.113.9", Start: 2})
	if status := reconcile(client, e, rec); !strings.Contains(status, "12001 active bans, 1 new since the last run, 0 lifted") {
		t.Fatalf("second reconcile: %q", status)
	}
	waitFor(t, "the new ban's delivery", func() bool { return rec.count() == 1 })
}
