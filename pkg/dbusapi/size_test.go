package dbusapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// encodedSize is the size of a reply carrying body as godbus marshals it.
func encodedSize(t *testing.T, body ...any) int {
	t.Helper()
	m := &dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(uint32(1)),
		dbus.FieldDestination: dbus.MakeVariant(":1.12345"),
		dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(body...)),
	}, Body: body}
	var buf bytes.Buffer
	if err := m.EncodeTo(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	return buf.Len()
}

// TestSizesBoundTheWire: the estimates are upper bounds of what godbus
// puts on the wire (messageSlack covering the header), for the shortest
// and the longest strings, and not wildly above it.
func TestSizesBoundTheWire(t *testing.T) {
	long := strings.Repeat("r", 256)
	for _, c := range []struct {
		name string
		bans []BanInfo
	}{
		{"short", []BanInfo{{Jail: "a", Prefix: "1.2.3.4", Start: 1, Expires: 2}}},
		{"long", []BanInfo{{Jail: strings.Repeat("j", 16), Prefix: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", Start: 1, Reason: long}}},
		{"mixed", []BanInfo{{Jail: "ab", Prefix: "1.2.3.4", Reason: "x"}, {Jail: "abc", Prefix: "2001:db8::/64", Reason: long[:7]}, {Jail: "s", Prefix: "10.0.0.0/8"}}},
	} {
		var bs []BanInfo
		for range 100 {
			bs = append(bs, c.bans...)
		}
		est := 8
		for _, b := range bs {
			est += banSize(b)
		}
		got := encodedSize(t, bs)
		if est+messageSlack < got || est > 2*got {
			t.Errorf("%s: estimate %d (+%d slack) for %d bytes on the wire", c.name, est, messageSlack, got)
		}
		h := make([]HistoryEntry, len(bs))
		hest := 8
		for i, b := range bs {
			h[i] = HistoryEntry{Time: 1, Kind: "expiry", Jail: b.Jail, Prefix: b.Prefix, Count: 3, Reason: b.Reason, Origin: "fleet-host-1"}
			hest += historySize(h[i])
		}
		if got := encodedSize(t, h, uint32(7)); hest+messageSlack < got || hest > 2*got {
			t.Errorf("%s history: estimate %d for %d bytes on the wire", c.name, hest, got)
		}
	}
	st := []JailStatus{{Name: "sshd", CurrentlyBanned: 2, Banned: []string{"203.0.113.7", "2001:db8::/64"}}, {Name: "web", Banned: []string{}}}
	if est, got := statusSize(st), encodedSize(t, st); est+messageSlack < got {
		t.Errorf("status: estimate %d for %d bytes", est, got)
	}
}

// TestListBansBound: more than MaxListBans bans, or more bytes than the
// budget, give ErrNameUseListBansPage naming ListBansPage; pages are cut
// to the budget, at least one ban.
func TestListBansBound(t *testing.T) {
	t.Cleanup(func() { guardLimit.Store(0) })
	s := &Server{}
	bans := func(n int) []BanInfo {
		out := make([]BanInfo, n)
		for i := range out {
			out[i] = BanInfo{Jail: "sshd", Prefix: fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255), Reason: "3 failures within 10m0s"}
		}
		return out
	}
	if e := s.checkListBans(bans(MaxListBans), ""); e != nil {
		t.Fatalf("%d bans refused: %v", MaxListBans, e)
	}
	e := s.checkListBans(bans(MaxListBans+1), "")
	if e == nil || e.Name != ErrNameUseListBansPage || !strings.Contains(fmt.Sprint(e.Body...), "ListBansPage") {
		t.Fatalf("%d bans: %v", MaxListBans+1, e)
	}
	s.SetBusLimit(64 << 10)
	if e := s.checkListBans(bans(1500), "sshd"); e == nil || !strings.Contains(fmt.Sprint(e.Body...), "1500 bans in jail sshd") {
		t.Fatalf("1500 bans on a 64 KiB bus: %v", e)
	}
	page := fitBans(bans(4096), s.replyLimit())
	if len(page) == 0 || len(page) == 4096 || encodedSize(t, page, uint32(4096)) > 64<<10 {
		t.Fatalf("a page on a 64 KiB bus: %d bans, %d bytes", len(page), encodedSize(t, page, uint32(4096)))
	}
	huge := []BanInfo{{Jail: "sshd", Prefix: "10.0.0.1", Reason: strings.Repeat("x", 100<<10)}}
	if got := fitBans(huge, s.replyLimit()); len(got) != 1 {
		t.Fatalf("fitBans of one ban = %d bans, want it (at least one)", len(got))
	}
	s.SetBusLimit(0)
	if s.replyLimit() != MaxReply {
		t.Fatalf("default reply budget %d, want %d", s.replyLimit(), MaxReply)
	}
	s.SetBusLimit(1)
	if s.replyLimit() != MinBusLimit-messageSlack {
		t.Fatalf("reply budget below the floor: %d", s.replyLimit())
	}
}

// TestSignalSplit: BannedMany and UnbannedMany of many addresses leave as
// several signals, each within the signal budget, together every address
// with its expiry, in order.
func TestSignalSplit(t *testing.T) {
	s := &Server{sigs: make(chan signal, 1000)}
	var ps []netip.Prefix
	var exps []time.Time
	for i := range 5000 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i), 14: byte(i >> 8), 8: 0xff}), 128))
		exps = append(exps, time.Unix(int64(1000+i), 0))
	}
	exps[7] = time.Time{}
	if err := s.BannedMany("sshd", ps, exps); err != nil {
		t.Fatal(err)
	}
	if err := s.UnbannedMany("sshd", ps); err != nil {
		t.Fatal(err)
	}
	close(s.sigs)
	var banned, unbanned []string
	var expGot []int64
	pieces := 0
	for sig := range s.sigs {
		pieces++
		if sz := encodedSize(t, sig.body...); sz > SignalBudget+messageSlack {
			t.Errorf("%s of %d bytes", sig.member, sz)
		}
		switch sig.member {
		case "BannedMany":
			banned = append(banned, sig.body[1].([]string)...)
			expGot = append(expGot, sig.body[2].([]int64)...)
		case "UnbannedMany":
			unbanned = append(unbanned, sig.body[1].([]string)...)
		}
	}
	if pieces < 4 || len(banned) != 5000 || len(unbanned) != 5000 || len(expGot) != 5000 {
		t.Fatalf("%d signals: %d banned, %d expiries, %d unbanned; want all 5000 in several", pieces, len(banned), len(expGot), len(unbanned))
	}
	for i, p := range ps {
		if banned[i] != p.Addr().String() || unbanned[i] != banned[i] {
			t.Fatalf("address %d: %s / %s, want %s", i, banned[i], unbanned[i], p.Addr())
		}
	}
	if expGot[7] != 0 || expGot[8] != 1008 {
		t.Fatalf("expiries %v", expGot[:9])
	}
}

func TestHideUsersCutShort(t *testing.T) {
	for in, want := range map[string]string{
		`3 failures, last for user "root"`:            `3 failures, last for user (hidden)`,
		`3 failures, last for user "hunter2; repeat…`: `3 failures, last for user (hidden)`,
		`3 failures, last for user "a\`:               `3 failures, last for user (hidden)`,
	} {
		if got := HideUsers(in); got != want {
			t.Errorf("HideUsers(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBusLimitFromEnv(t *testing.T) {
	for v, want := range map[string]int{"": 0, "65536": 65536, "16384": MinBusLimit} {
		t.Setenv(BusLimitEnv, v)
		if n, err := BusLimitFromEnv(); err != nil || n != want {
			t.Errorf("%s=%q: %d, %v; want %d", BusLimitEnv, v, n, err, want)
		}
	}
	for _, v := range []string{"64k", "-1", "1000"} {
		t.Setenv(BusLimitEnv, v)
		if _, err := BusLimitFromEnv(); err == nil || !strings.Contains(err.Error(), BusLimitEnv) {
			t.Errorf("%s=%q accepted (%v)", BusLimitEnv, v, err)
		}
	}
}

// bigReply answers with n strings of 32 bytes.
type bigReply struct{}

func (bigReply) table() map[string]any {
	return map[string]any{"Strings": func(n uint32) ([]string, *dbus.Error) {
		out := make([]string, n)
		for i := range out {
			out[i] = strings.Repeat("x", 32)
		}
		return out, nil
	}}
}

// TestGuardReply: on a bus of 32 KiB, a reply over the limit leaves the
// daemon's connection as ErrNameReplyTooLarge, and the connection stays;
// replies within the limit pass unchanged.
func TestGuardReply(t *testing.T) {
	testbed.Require(t, "dbus-daemon")
	const limit = 32 << 10
	bus := testbed.NewBusWithMaxMessage(t, limit)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Address)
	conn, err := ConnectService()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Cleanup(func() { guardLimit.Store(0) })
	(&Server{}).SetBusLimit(limit)
	if err := export(conn.Conn, bigReply{}, "/test", "test.Big"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	client, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	obj := client.Object(BusName, "/test")
	var got []string
	if err := obj.Call("test.Big.Strings", 0, uint32(500)).Store(&got); err != nil || len(got) != 500 {
		t.Fatalf("500 strings (about 20 KB): %d, %v", len(got), err)
	}
	err = obj.Call("test.Big.Strings", 0, uint32(2000)).Store(&got)
	var de dbus.Error
	if !errors.As(err, &de) || de.Name != ErrNameReplyTooLarge || !strings.Contains(fmt.Sprint(de.Body...), "more than the bus's message size limit of 32768") {
		t.Fatalf("2000 strings (about 80 KB): %v; want %s", err, ErrNameReplyTooLarge)
	}
	if err := obj.Call("test.Big.Strings", 0, uint32(10)).Store(&got); err != nil || len(got) != 10 || !conn.Connected() {
		t.Fatalf("after the refusal: %d strings, %v, connected %v", len(got), err, conn.Connected())
	}
}

// BenchmarkGuardReply: what the last guard costs a full ListBansPage
// reply (4,096 bans with 45-byte reasons).
func BenchmarkGuardReply(b *testing.B) {
	page := make([]BanInfo, MaxPage)
	for i := range page {
		page[i] = BanInfo{Jail: "sshd", Prefix: fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255), Start: 1, Expires: 2,
			Reason: "5 failures within 10m0s, last for user (hidden)"}
	}
	for b.Loop() {
		m := &dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldReplySerial: dbus.MakeVariant(uint32(1)),
			dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(page, uint32(0))),
		}, Body: []any{page, uint32(len(page))}}
		guardReply(m)
		if m.Type != dbus.TypeMethodReply {
			b.Fatal("refused")
		}
	}
}
