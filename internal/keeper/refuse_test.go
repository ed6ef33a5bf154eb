package keeper

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// specials are addresses no entry point may ban (prefix.Refuse), one per
// class, plus 198.51.100.1, which newRefuseBed makes the machine's own.
var specials = []string{"0.0.0.0", "::", "0.0.0.0/0", "127.0.0.2", "::1", "169.254.7.7", "fe80::7",
	"224.0.0.251", "ff02::1", "255.255.255.255", "198.51.100.1"}

func newRefuseBed(t *testing.T, table *bans.Table) *bed {
	t.Helper()
	b := newBed(t, table, testRuntime(t, "iptables", "sshd"))
	b.k.opts.Own = func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("198.51.100.1")}, nil }
	b.k.ownAt = time.Time{}
	return b
}

// TestRefuseManualBans: Ban and BanMany (and so the CLI) refuse every
// special address with ErrBadAddress, all or nothing.
func TestRefuseManualBans(t *testing.T) {
	b := newRefuseBed(t, nil)
	for _, s := range specials {
		p := pfx(s)
		n, err := b.k.Ban("sshd", []netip.Prefix{pfx("203.0.113.5"), p}, 0)
		if !errors.Is(err, dbusapi.ErrBadAddress) || n != 0 {
			t.Errorf("Ban(%s) = %d, %v; want 0, bad address", s, n, err)
			continue
		}
		if !strings.Contains(err.Error(), "nothing banned") {
			t.Errorf("Ban(%s): %v", s, err)
		}
	}
	if got := b.table.Len(); got != 0 {
		t.Errorf("table holds %d bans after refused ones", got)
	}
	if v := b.verdict("iptables", "203.0.113.5"); v != firewall.VerdictAccept {
		t.Errorf("203.0.113.5 of a refused batch meets %s", v)
	}
}

// TestRefuseLoggedAddresses: log lines naming special addresses ban
// nothing and say why; a real attacker in the same batch is banned.
func TestRefuseLoggedAddresses(t *testing.T) {
	b := newRefuseBed(t, nil)
	var batch []journal.Entry
	for _, s := range []string{"0.0.0.0", "::", "224.0.0.251", "ff02::1", "169.254.7.7", "fe80::7", "255.255.255.255", "198.51.100.1"} {
		batch = append(batch, failure(s, ""), failure(s, ""))
	}
	batch = append(batch, failure("203.0.113.9", ""), failure("203.0.113.9", "c=1"))
	b.k.HandleBatch(batch)
	active := b.table.Active(time.Now())
	if len(active) != 1 || active[0].Prefix != pfx("203.0.113.9") {
		t.Fatalf("table holds %+v, want 203.0.113.9 only", active)
	}
	if v := b.verdict("iptables", "203.0.113.9"); v != firewall.VerdictReject {
		t.Errorf("203.0.113.9 meets %s", v)
	}
	for _, want := range []string{"not banning in jail sshd: not bannable: 0.0.0.0 is the unspecified address", "fe80::/64 is link-local", "198.51.100.1 is an address of this machine"} {
		if !strings.Contains(b.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, b.log)
		}
	}
	if c := b.table.Cursor(); c != "c=1" {
		t.Errorf("cursor %q, want c=1", c)
	}
}

// TestRefuseRecordedBans: a special address already in the table (an
// older version banned it) is dropped at start with a warning, and the
// other bans reach the kernel.
func TestRefuseRecordedBans(t *testing.T) {
	table := bans.NewMemory()
	now := time.Now()
	if _, err := table.Add(
		bans.Ban{Jail: "sshd", Prefix: pfx("203.0.113.1"), Start: now},
		bans.Ban{Jail: "sshd", Prefix: pfx("0.0.0.0"), Start: now},
		bans.Ban{Jail: "sshd", Prefix: pfx("::"), Start: now},
		bans.Ban{Jail: "sshd", Prefix: pfx("203.0.113.2"), Start: now},
	); err != nil {
		t.Fatal(err)
	}
	b := newBed(t, table, testRuntime(t, "iptables", "sshd"))
	if b.k.Restored() != 2 {
		t.Errorf("restored %d bans, want 2", b.k.Restored())
	}
	for _, a := range []string{"203.0.113.1", "203.0.113.2"} {
		if v := b.verdict("iptables", a); v != firewall.VerdictReject {
			t.Errorf("%s meets %s after start", a, v)
		}
	}
	if table.Len() != 2 {
		t.Errorf("table holds %d bans, want 2", table.Len())
	}
	if !strings.Contains(b.log.String(), "dropped the recorded ban of 0.0.0.0 in jail sshd: not bannable") {
		t.Errorf("log:\n%s", b.log)
	}
}

// TestBanManyCopies: copies of one address in one BanMany are one ban, in
// the reply, the totals and the history.
func TestBanManyCopies(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	ps := []netip.Prefix{pfx("203.0.113.5"), pfx("203.0.113.5"), pfx("::ffff:203.0.113.5"), pfx("203.0.113.5"), pfx("203.0.113.6")}
	n, err := b.k.Ban("sshd", ps, 0)
	if err != nil || n != 2 {
		t.Fatalf("Ban = %d, %v; want 2", n, err)
	}
	if got := b.table.Total("sshd"); got != 2 {
		t.Errorf("total bans %d, want 2", got)
	}
	if got := b.table.BanCount("sshd", pfx("203.0.113.5"), time.Now().Add(-time.Hour)); got != 1 {
		t.Errorf("history counts %d bans of 203.0.113.5, want 1", got)
	}
	st, err := b.k.Status("sshd")
	if err != nil || st[0].TotalBanned != 2 || st[0].CurrentlyBanned != 2 {
		t.Errorf("Status = %+v, %v", st, err)
	}
}
