package bans

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func ban(jail, p string, start time.Time, d time.Duration) Ban {
	b := Ban{Jail: jail, Prefix: netip.MustParsePrefix(p), Start: start, Reason: "test"}
	if d > 0 {
		b.Expires = start.Add(d)
	}
	return b
}

// reopen closes tb and opens the database at path again.
func reopen(t *testing.T, tb *Table, path string) *Table {
	t.Helper()
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestPersistAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := tb.Add(ban("sshd", "198.51.100.2/32", t0, time.Hour), ban("sshd", "2001:db8::/64", t0, 0), ban("web", "203.0.113.0/24", t0, time.Minute))
	if err != nil || len(ch) != 3 {
		t.Fatalf("Add = %v, %v; want 3 changed", ch, err)
	}
	if err := tb.SaveCursor("s=abc;i=1"); err != nil {
		t.Fatal(err)
	}
	gone, err := tb.Remove("", netip.MustParsePrefix("203.0.113.0/24"))
	if err != nil || len(gone) != 1 {
		t.Fatalf("Remove = %v, %v", gone, err)
	}
	tb = reopen(t, tb, path)
	defer tb.Close()
	act := tb.Active(t0.Add(time.Minute))
	if len(act) != 2 || act[0].Prefix.String() != "198.51.100.2/32" || !act[1].Permanent() {
		t.Fatalf("after reopen Active = %+v", act)
	}
	if c := tb.Cursor(); c != "s=abc;i=1" {
		t.Fatalf("Cursor = %q", c)
	}
	if n := tb.Total("sshd"); n != 2 {
		t.Fatalf("Total(sshd) = %d, want 2", n)
	}
	if n := tb.BanCount("web", netip.MustParsePrefix("203.0.113.0/24"), t0.Add(-time.Hour)); n != 1 {
		t.Fatalf("history after unban = %d, want 1", n)
	}
}

func TestExpireAndExtend(t *testing.T) {
	tb := NewMemory()
	p := "198.51.100.7/32"
	if ch, _ := tb.Add(ban("sshd", p, t0, time.Minute)); len(ch) != 1 {
		t.Fatal("first ban not added")
	}
	if ch, _ := tb.Add(ban("sshd", p, t0.Add(10*time.Second), 10*time.Second)); len(ch) != 0 {
		t.Fatalf("shorter ban changed table: %v", ch)
	}
	ch, _ := tb.Add(ban("sshd", p, t0.Add(30*time.Second), time.Hour))
	if len(ch) != 1 || !ch[0].Start.Equal(t0) {
		t.Fatalf("longer ban = %+v, want extension keeping start", ch)
	}
	if n := tb.BanCount("sshd", netip.MustParsePrefix(p), time.Time{}); n != 1 {
		t.Fatalf("an extension counted as a new ban: %d", n)
	}
	if gone, _ := tb.Expire(t0.Add(59 * time.Minute)); len(gone) != 0 {
		t.Fatalf("expired early: %v", gone)
	}
	if a := tb.Active(t0); len(a) != 1 || !a[0].Prefix.Contains(netip.MustParseAddr("198.51.100.7")) {
		t.Fatalf("active = %v, want the ban of 198.51.100.7", a)
	}
	if gone, _ := tb.Expire(t0.Add(time.Hour + 30*time.Second)); len(gone) != 1 {
		t.Fatalf("Expire = %v, want 1", gone)
	}
	if len(tb.Active(t0)) != 0 {
		t.Fatal("still active after expiry")
	}
	tb.Add(ban("sshd", p, t0.Add(2*time.Hour), time.Minute))
	if n := tb.BanCount("sshd", netip.MustParsePrefix(p), time.Time{}); n != 2 {
		t.Fatalf("BanCount = %d, want 2", n)
	}
	tb.Add(ban("sshd", "198.51.100.8/32", t0.Add(2*time.Hour), time.Minute))
	if n := tb.ActiveWithin("sshd", netip.MustParsePrefix("198.51.100.0/24"), t0.Add(2*time.Hour)); n != 2 {
		t.Fatalf("ActiveWithin = %d, want 2", n)
	}
}

func TestSecondInstanceFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	start := time.Now()
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "another jailkeeper holds it") {
		t.Fatalf("second Open err = %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("second Open waited too long")
	}
}

// TestCommitAndChanges: Changes predicts what Add would change and records
// nothing; Commit writes the bans and the cursor together, both survive a
// reopen; a Commit with nothing new but a new cursor saves the cursor.
func TestCommitAndChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a := ban("sshd", "198.51.100.2/32", t0, time.Hour)
	b := ban("sshd", "203.0.113.9/32", t0, time.Hour)
	if ch := tb.Changes(a, b); len(ch) != 2 {
		t.Fatalf("Changes on an empty table = %v, want both", ch)
	}
	if n := tb.Len(); n != 0 {
		t.Fatalf("Changes recorded %d bans", n)
	}
	ch, err := tb.Commit("s=x;i=10", a, b)
	if err != nil || len(ch) != 2 {
		t.Fatalf("Commit = %v, %v; want 2 changed", ch, err)
	}
	if ch := tb.Changes(a, ban("sshd", "203.0.113.9/32", t0, 2*time.Hour)); len(ch) != 1 || ch[0].Prefix != b.Prefix {
		t.Fatalf("Changes with one repeat and one extension = %v, want the extension only", ch)
	}
	if ch, err := tb.Commit("s=x;i=11", a); err != nil || len(ch) != 0 {
		t.Fatalf("Commit of a repeat = %v, %v; want nothing changed", ch, err)
	}
	tb = reopen(t, tb, path)
	defer tb.Close()
	if c := tb.Cursor(); c != "s=x;i=11" {
		t.Fatalf("Cursor after reopen = %q, want the last Commit's", c)
	}
	if n := tb.Len(); n != 2 {
		t.Fatalf("%d bans after reopen, want 2", n)
	}
	if n := tb.Total("sshd"); n != 2 {
		t.Fatalf("Total(sshd) = %d, want 2", n)
	}
}

// BenchmarkCommit measures one ban-path transaction on disk: 25 new bans
// (a journal batch's worth in make bench's burst) and the cursor, synced.
func BenchmarkCommit(b *testing.B) {
	tb, err := Open(filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
	now := time.Now()
	batch := make([]Ban, 25)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range batch {
			v := uint32(0x0a000000 + i*len(batch) + k)
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			batch[k] = Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Start: now, Expires: now.Add(time.Hour), Reason: "5 failures within 10m0s"}
		}
		if _, err := tb.Commit(fmt.Sprintf("s=x;i=%x", i), batch...); err != nil {
			b.Fatal(err)
		}
	}
}

// fakeState is a StateSource handing out what was queued on it.
type fakeState struct {
	queued map[string][]byte // the changes the next call hands out
	all    map[string][]byte // what a full call hands out
	fulls  int
}

func (f *fakeState) TakeState(all bool, put func(k, v []byte)) bool {
	src := f.queued
	if all {
		src = f.all
	}
	for k, v := range src {
		put([]byte(k), v)
	}
	f.queued = map[string][]byte{}
	if all {
		f.fulls++
	}
	return all
}

// savedState replays the saved log: later records replace, nil deletes.
func savedState(t *testing.T, tb *Table) map[string]string {
	t.Helper()
	m := map[string]string{}
	if err := tb.EachState(func(k, v []byte) {
		if v == nil {
			delete(m, string(k))
			return
		}
		m[string(k)] = string(v)
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestStateCompaction: the log grows by the changes; past compactMin plus
// twice its size after the last compaction, the next cursor write takes
// everything from the source and the log holds just that.
func TestStateCompaction(t *testing.T) {
	tb, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	src := &fakeState{all: map[string][]byte{"live": []byte("x")}}
	tb.AttachState(src)
	entries := func() int {
		n := 0
		tb.EachState(func(k, v []byte) { n++ })
		return n
	}
	const per = 4096
	i := 0
	for ; src.fulls == 0 && i < 100; i++ {
		src.queued = map[string][]byte{}
		for k := 0; k < per; k++ {
			src.queued[fmt.Sprintf("k%d", k)] = []byte{byte(i)}
		}
		if err := tb.SaveCursor(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if src.fulls != 1 || i != compactMin/per+2 {
		t.Fatalf("%d full takes after %d writes of %d, want 1 after %d", src.fulls, i, per, compactMin/per+2)
	}
	if n := entries(); n != 1 {
		t.Fatalf("%d log entries after the compaction, want 1", n)
	}
	if m := savedState(t, tb); len(m) != 1 || m["live"] != "x" {
		t.Fatalf("state after the compaction: %v", m)
	}
}

// TestStateSavedWithCursor: the attached state's changes are written only
// with the journal cursor (Commit, SaveCursor, also when the cursor has
// not moved), in its transaction, and read back after a reopen; an Add
// without cursor keeps them pending.
func TestStateSavedWithCursor(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeState{queued: map[string][]byte{"a": []byte("1"), "b": []byte("2")}}
	tb.AttachState(src)
	if _, err := tb.Add(ban("sshd", "198.51.100.2/32", t0, time.Hour)); err != nil {
		t.Fatal(err)
	}
	if m := savedState(t, tb); len(m) != 0 {
		t.Fatalf("state written without a cursor: %v", m)
	}
	if _, err := tb.Commit("c1", ban("sshd", "198.51.100.3/32", t0, time.Hour)); err != nil {
		t.Fatal(err)
	}
	if m := savedState(t, tb); m["a"] != "1" || m["b"] != "2" || len(m) != 2 {
		t.Fatalf("after Commit: %v", m)
	}
	// Same cursor, but changes (an unban's): written too.
	src.queued = map[string][]byte{"a": nil, "c": []byte("3")}
	if err := tb.SaveCursor("c1"); err != nil {
		t.Fatal(err)
	}
	if m := savedState(t, tb); m["a"] != "" || m["c"] != "3" || len(m) != 2 {
		t.Fatalf("after SaveCursor with the same cursor: %v, want b c", m)
	}
	src.queued = map[string][]byte{"d": []byte("4")}
	if err := tb.SaveCursor("c2"); err != nil {
		t.Fatal(err)
	}
	tb = reopen(t, tb, path)
	defer tb.Close()
	m := savedState(t, tb)
	if len(m) != 3 || m["b"] != "2" || m["c"] != "3" || m["d"] != "4" {
		t.Fatalf("after SaveCursor and reopen: %v, want b c d", m)
	}
	if tb.Cursor() != "c2" {
		t.Fatalf("cursor %q", tb.Cursor())
	}
}

// BenchmarkCommitState is BenchmarkCommit with the engine's state changes
// of a journal batch of 1024 failures from distinct addresses (a record of
// about 60 bytes each): the cost the saved failure counts add on the ban
// path in a flood of new addresses.
func BenchmarkCommitState(b *testing.B) {
	tb, err := Open(filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
	src := &fakeState{}
	tb.AttachState(src)
	now := time.Now()
	batch := make([]Ban, 25)
	val := make([]byte, 46)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		src.queued = make(map[string][]byte, 1024)
		for k := 0; k < 1024; k++ {
			v := uint32(0xc6120000 + i*1024 + k)
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			src.queued["fsshd\x00"+a.String()+"/32"] = val
		}
		for k := range batch {
			v := uint32(0x0a000000 + i*len(batch) + k)
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			batch[k] = Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Start: now, Expires: now.Add(time.Hour), Reason: "5 failures within 10m0s"}
		}
		b.StartTimer()
		if _, err := tb.Commit(fmt.Sprintf("s=x;i=%x", i), batch...); err != nil {
			b.Fatal(err)
		}
	}
}

// TestExpireSomeAndRemoveBans: expiry in bounded batches, a mass unban of
// one jail, and the per-jail counts through both.
func TestExpireSomeAndRemoveBans(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var bs []Ban
	for i := range 250 {
		bs = append(bs, ban("sshd", fmt.Sprintf("198.51.100.%d/32", i), t0, time.Minute))
		bs = append(bs, ban("web", fmt.Sprintf("203.0.113.%d/32", i), t0, 0))
	}
	bs = append(bs, ban("sshd", "2001:db8::/64", t0, time.Hour))
	if _, err := tb.Add(bs...); err != nil {
		t.Fatal(err)
	}
	if c := tb.Counts(); c["sshd"] != 251 || c["web"] != 250 {
		t.Fatalf("Counts = %v", c)
	}
	if gone, _ := tb.ExpireSome(t0.Add(59*time.Second), 100); len(gone) != 0 {
		t.Fatalf("expired early: %d", len(gone))
	}
	total := 0
	for i := 0; ; i++ {
		gone, err := tb.ExpireSome(t0.Add(time.Minute), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(gone) > 100 {
			t.Fatalf("batch of %d", len(gone))
		}
		total += len(gone)
		if len(gone) < 100 {
			break
		}
	}
	if total != 250 || tb.Counts()["sshd"] != 1 {
		t.Fatalf("expired %d, counts %v", total, tb.Counts())
	}
	var web []Ban
	for _, b := range tb.Active(t0) {
		if b.Jail == "web" {
			web = append(web, Ban{Jail: b.Jail, Prefix: b.Prefix})
		}
	}
	web = append(web, ban("web", "192.0.2.1/32", t0, 0)) // not held
	gone, err := tb.RemoveBans(web)
	if err != nil || len(gone) != 250 || gone[0].Reason != "test" {
		t.Fatalf("RemoveBans = %d, %v", len(gone), err)
	}
	tb = reopen(t, tb, path)
	defer tb.Close()
	act := tb.Active(t0)
	if len(act) != 1 || act[0].Prefix.String() != "2001:db8::/64" {
		t.Fatalf("after reopen: %+v", act)
	}
	if gone, _ := tb.Expire(t0.Add(time.Hour)); len(gone) != 1 {
		t.Fatalf("reopened table did not expire: %v", gone)
	}
}

// TestExpireStepsAfterOneScan: bans that expire together are handed out
// in steps; a ban renewed or lifted between two steps is not handed out,
// and a ban due later is found once its time comes.
func TestExpireStepsAfterOneScan(t *testing.T) {
	tb := NewMemory()
	var bs []Ban
	for i := range 1000 {
		bs = append(bs, ban("sshd", fmt.Sprintf("10.0.%d.%d/32", i>>8, i&0xff), t0, time.Minute))
	}
	bs = append(bs, ban("sshd", "198.51.100.1/32", t0, 2*time.Minute))
	if _, err := tb.Add(bs...); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Minute)
	first, err := tb.ExpireSome(at, 100)
	if err != nil || len(first) != 100 {
		t.Fatalf("first step: %d, %v", len(first), err)
	}
	seen := map[netip.Prefix]bool{}
	for _, b := range first {
		seen[b.Prefix] = true
	}
	// One of the rest is renewed, another lifted by an administrator.
	var renewed, lifted netip.Prefix
	for _, b := range bs[:1000] {
		if seen[b.Prefix] {
			continue
		}
		if !renewed.IsValid() {
			renewed = b.Prefix
		} else if !lifted.IsValid() {
			lifted = b.Prefix
			break
		}
	}
	if _, err := tb.Add(Ban{Jail: "sshd", Prefix: renewed, Start: at, Expires: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if gone, err := tb.Remove("sshd", lifted); err != nil || len(gone) != 1 {
		t.Fatalf("Remove = %d, %v", len(gone), err)
	}
	total := len(first)
	for {
		gone, err := tb.ExpireSome(at, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range gone {
			if seen[b.Prefix] || b.Prefix == renewed || b.Prefix == lifted {
				t.Fatalf("%v handed out again, or renewed or lifted", b.Prefix)
			}
			seen[b.Prefix] = true
		}
		total += len(gone)
		if len(gone) == 0 {
			break
		}
	}
	if total != 998 || tb.Len() != 2 {
		t.Fatalf("expired %d, %d left; want 998 and 2", total, tb.Len())
	}
	if gone, _ := tb.ExpireSome(t0.Add(2*time.Minute), 0); len(gone) != 1 || gone[0].Prefix.String() != "198.51.100.1/32" {
		t.Fatalf("the later ban: %v", gone)
	}
	if gone, _ := tb.ExpireSome(at.Add(time.Hour), 0); len(gone) != 1 || gone[0].Prefix != renewed {
		t.Fatalf("the renewed ban: %v", gone)
	}
}

// TestStampServesOneStart: a stamp saved before Close is handed out by the
// next Open, once, and is gone from the file from then on (a crash after
// that start finds none).
func TestStampServesOneStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := tb.TakeStamp(); s != nil {
		t.Fatalf("a new table's stamp = %x, want none", s)
	}
	if err := tb.SaveStamp([]byte("stamp")); err != nil {
		t.Fatal(err)
	}
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"stamp", ""} {
		tb, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(tb.TakeStamp()); got != want {
			t.Errorf("open %d: stamp %q, want %q", i+1, got, want)
		}
		if s := tb.TakeStamp(); s != nil {
			t.Errorf("open %d: a second TakeStamp = %q, want none", i+1, s)
		}
		if err := tb.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
