package bans

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func event(i int, jail string, kind EventKind) Event {
	e := Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: kind, Jail: jail,
		Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32), Count: 1,
		Reason: fmt.Sprintf("5 failures of user \"u%d\"", i), Origin: "journal"}
	if kind == EventBan {
		e.Expires = e.Time.Add(time.Hour)
	}
	return e
}

func TestEventRecordRoundTrip(t *testing.T) {
	for _, e := range []Event{
		event(7, "sshd", EventBan),
		event(8, "web", EventExpire),
		{Time: t0, Kind: EventUnban, Jail: "j", Prefix: netip.MustParsePrefix("2001:db8::/64"), Count: 5000, Origin: "admin"},
		{Time: t0.Add(time.Nanosecond), Kind: EventBan, Jail: "j", Prefix: netip.MustParsePrefix("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff/128"), Count: 1, Reason: "ünïcode"},
	} {
		got, err := decodeEvent(appendEvent(nil, e))
		if err != nil {
			t.Fatalf("decode %+v: %v", e, err)
		}
		if !got.Time.Equal(e.Time) || !got.Expires.Equal(e.Expires) {
			t.Fatalf("times: got %+v, want %+v", got, e)
		}
		got.Time, got.Expires, e.Time, e.Expires = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("got %+v, want %+v", got, e)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {1, 1, 0}, {2, 1, 0, 0, 0, 1, 0, 0, 0}, appendEvent(nil, event(1, "sshd", EventBan))[:12]} {
		if _, err := decodeEvent(bad); err == nil {
			t.Errorf("decodeEvent(%x) gave no error", bad)
		}
	}
}

// The history is read newest first, paged, by jail, with the events not
// yet flushed, and survives a reopen.
func TestEventsPagingAndPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		jail := "sshd"
		if i%2 == 1 {
			jail = "web"
		}
		tb.RecordEvents(event(i, jail, EventBan))
		if i == 5 {
			if err := tb.FlushEvents(t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(tb *Table, what string) {
		t.Helper()
		page, total, err := tb.Events("", 0, 3)
		if err != nil || total != 10 || len(page) != 3 || page[0].Prefix.Addr().As4()[3] != 9 || page[2].Prefix.Addr().As4()[3] != 7 {
			t.Fatalf("%s: Events(all, 0, 3) = %+v, %d, %v", what, page, total, err)
		}
		page, total, err = tb.Events("web", 1, 2)
		if err != nil || total != 5 || len(page) != 2 || page[0].Prefix.Addr().As4()[3] != 7 || page[1].Prefix.Addr().As4()[3] != 5 {
			t.Fatalf("%s: Events(web, 1, 2) = %+v, %d, %v", what, page, total, err)
		}
		page, total, err = tb.Events("sshd", 4, 0)
		if err != nil || total != 5 || len(page) != 1 || page[0].Prefix.Addr().As4()[3] != 0 || page[0].Reason != `5 failures of user "u0"` {
			t.Fatalf("%s: Events(sshd, 4, 0) = %+v, %d, %v", what, page, total, err)
		}
		if page, total, _ := tb.Events("nope", 0, 0); len(page) != 0 || total != 0 {
			t.Fatalf("%s: an unknown jail has %d events", what, total)
		}
	}
	check(tb, "half flushed")
	if err := tb.FlushEvents(t0); err != nil {
		t.Fatal(err)
	}
	check(tb, "flushed")
	tb = reopen(t, tb, path)
	defer tb.Close()
	check(tb, "reopened")
	// Keys go on after the last one: a new event is the newest.
	tb.RecordEvents(event(42, "web", EventUnban))
	if err := tb.FlushEvents(t0); err != nil {
		t.Fatal(err)
	}
	if page, total, _ := tb.Events("", 0, 1); total != 11 || page[0].Kind != EventUnban {
		t.Fatalf("after reopen and a new event: %+v, %d", page, total)
	}
}

// Retention holds on disk and in memory: at most HistoryKeep (plus the
// step) events, none older than HistoryMaxAge.
func TestEventsRetention(t *testing.T) {
	for _, mem := range []bool{false, true} {
		t.Run(fmt.Sprint("memory=", mem), func(t *testing.T) {
			tb := NewMemory()
			if !mem {
				var err error
				if tb, err = Open(filepath.Join(t.TempDir(), FileName)); err != nil {
					t.Fatal(err)
				}
				defer tb.Close()
			}
			old := event(1, "sshd", EventBan)
			old.Time = t0.Add(-HistoryMaxAge - time.Hour)
			tb.RecordEvents(old)
			if err := tb.FlushEvents(t0.Add(-HistoryMaxAge)); err != nil {
				t.Fatal(err)
			}
			if _, total, _ := tb.Events("", 0, 0); total != 1 {
				t.Fatalf("events before the age bound passes: %d, want 1", total)
			}
			tb.RecordEvents(event(0, "web", EventExpire))
			if err := tb.FlushEvents(t0); err != nil {
				t.Fatal(err)
			}
			if page, total, _ := tb.Events("", 0, 0); total != 1 || page[0].Jail != "web" {
				t.Fatalf("after the age bound passed: %+v, want the new event alone", page)
			}
			batch := make([]Event, 0, HistoryKeep/4)
			for round := range 5 {
				batch = batch[:0]
				for i := range HistoryKeep / 4 {
					batch = append(batch, event(round*HistoryKeep/4+i, "web", EventExpire))
				}
				tb.RecordEvents(batch...)
				if err := tb.FlushEvents(t0); err != nil {
					t.Fatal(err)
				}
			}
			page, total, err := tb.Events("", 0, 1)
			if err != nil || total < HistoryKeep || total > HistoryKeep+HistoryKeep/16 {
				t.Fatalf("after %d events: %d kept (%v), want %d to %d", 5*HistoryKeep/4+1, total, err, HistoryKeep, HistoryKeep+HistoryKeep/16)
			}
			if !page[0].Time.Equal(batch[len(batch)-1].Time) {
				t.Fatalf("newest is %v, want %v", page[0].Time, batch[len(batch)-1].Time)
			}
		})
	}
}
