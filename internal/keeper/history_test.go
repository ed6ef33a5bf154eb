package keeper

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// TestHistory: every kind of change reaches the event history with its
// reason and origin, newest first, per jail; a large change is one event
// that counts its bans; the history is on disk after Expire's flush.
func TestHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), bans.FileName)
	table, err := bans.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b := newBed(t, table, testRuntime(t, "iptables", "sshd", "web"))
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.9", ""), failure("203.0.113.9", "c=1")})
	if _, err := b.k.Ban("web", []netip.Prefix{pfx("198.51.100.7")}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.k.BanFrom("web", []netip.Prefix{pfx("198.51.100.8")}, 0, "fleet: sshd on web1", "web1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.k.Unban("sshd", pfx("203.0.113.9")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	b.k.Expire() // 198.51.100.7 expires; the history is flushed
	big := make([]netip.Prefix, historyEach+1)
	for i := range big {
		big[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113 + byte(i/250), byte(1 + i%250)}), 32)
	}
	if _, err := b.k.Ban("sshd", big, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Newest first; the last change is not flushed yet and shows all the same.
	got, total, err := b.k.ListHistory("", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("ban sshd 203.0.113.1 ×%d origin admin: banned by an administrator", historyEach+1),
		"expiry web 198.51.100.7 ×1 origin : ",
		"unban sshd 203.0.113.9 ×1 origin admin: ",
		"ban web 198.51.100.8 ×1 origin web1: fleet: sshd on web1",
		"ban web 198.51.100.7 ×1 origin admin: banned by an administrator",
		// Both jails read sshd.service.
		"ban web 203.0.113.9 ×1 origin journal: 2 failures within 10m0s",
		"ban sshd 203.0.113.9 ×1 origin journal: 2 failures within 10m0s",
	}
	if total != len(want) || len(got) != len(want) {
		t.Fatalf("history has %d events (%+v), want %d", total, got, len(want))
	}
	for i, e := range got {
		line := fmt.Sprintf("%s %s %s ×%d origin %s: %s", e.Kind, e.Jail, e.Prefix, e.Count, e.Origin, e.Reason)
		if len(line) < len(want[i]) || line[:len(want[i])] != want[i] {
			t.Errorf("event %d: %q, want %q…", i, line, want[i])
		}
		if d := time.Since(time.Unix(e.Time, 0)); d < -time.Second || d > time.Minute {
			t.Errorf("event %d is %v old", i, d)
		}
	}
	if got[0].Expires == 0 || got[4].Expires == 0 || got[1].Expires != 0 {
		t.Errorf("ends: %d %d %d; want the bans' ends, none for an expiry", got[0].Expires, got[4].Expires, got[1].Expires)
	}
	if web, total, _ := b.k.ListHistory("web", 1, 1); total != 4 || len(web) != 1 || web[0].Prefix != "198.51.100.8" {
		t.Errorf("ListHistory(web, 1, 1) = %+v, %d", web, total)
	}
	// Close flushes; the history is read back from the file.
	if err := b.k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := table.Close(); err != nil {
		t.Fatal(err)
	}
	table, err = bans.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	if evs, total, err := table.Events("", 0, 1); err != nil || total != len(want) || evs[0].Count != historyEach+1 {
		t.Fatalf("after a reopen: %+v, %d, %v", evs, total, err)
	}
}

// TestHistoryExpiredWhileStopped: a ban that ended while the daemon was
// stopped is in the history as an expiry at its end.
func TestHistoryExpiredWhileStopped(t *testing.T) {
	table := bans.NewMemory()
	end := time.Now().Add(-time.Hour).Truncate(time.Second)
	if _, err := table.Add(bans.Ban{Jail: "sshd", Prefix: pfx("203.0.113.9"), Start: end.Add(-time.Hour), Expires: end, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	b := newBed(t, table, testRuntime(t, "iptables", "sshd"))
	got, total, err := b.k.ListHistory("sshd", 0, 0)
	if err != nil || total != 1 || got[0].Kind != "expiry" || got[0].Prefix != "203.0.113.9" || got[0].Time != end.Unix() {
		t.Fatalf("history after a start = %+v, %d, %v; want the expiry at %d", got, total, err, end.Unix())
	}
}

// TestHistoryJailRemoved: a reload that removes a jail records the unban
// of its bans by the configuration, with the reason.
func TestHistoryJailRemoved(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd", "web"))
	if _, err := b.k.Ban("web", []netip.Prefix{pfx("198.51.100.7")}, 0); err != nil {
		t.Fatal(err)
	}
	n, err := b.k.Prepare(testRuntime(t, "iptables", "sshd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.k.Swap(n); err != nil {
		t.Fatal(err)
	}
	got, _, err := b.k.ListHistory("web", 0, 1)
	if err != nil || len(got) != 1 || got[0].Kind != "unban" || got[0].Origin != OriginConfig || got[0].Reason != "jail web is no longer configured" {
		t.Fatalf("history of the removed jail = %+v, %v", got, err)
	}
}

// TestHistoryFloodFromJournal: the engine's bans get an event each, even
// many at once.
func TestHistoryFloodFromJournal(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	var batch []journal.Entry
	for i := range historyEach + 10 {
		a := fmt.Sprintf("203.0.%d.%d", 113+i/250, 1+i%250)
		batch = append(batch, failure(a, ""), failure(a, ""))
	}
	batch[len(batch)-1].Cursor = "c=1"
	b.k.HandleBatch(batch)
	got, total, err := b.k.ListHistory("sshd", 0, 0)
	if err != nil || total != historyEach+10 || got[0].Count != 1 || got[0].Origin != OriginJournal {
		t.Fatalf("history after %d bans from one batch: %d events (%v), newest %+v", historyEach+10, total, err, got[0])
	}
}
