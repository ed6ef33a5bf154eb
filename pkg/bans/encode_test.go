package bans

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestRecordRoundTrip: a ban and a history read back as written, for
// ordinary, permanent and far-future bans and odd reasons.
func TestRecordRoundTrip(t *testing.T) {
	start := time.Date(2026, 11, 22, 23, 20, 1, 123456789, time.UTC)
	for _, b := range []Ban{
		{Jail: "sshd", Prefix: netip.MustParsePrefix("198.51.100.7/32"), Start: start, Expires: start.Add(time.Hour), Reason: "5 failures within 10m0s"},
		{Jail: "web-auth", Prefix: netip.MustParsePrefix("2001:db8:1::/48"), Start: start, Reason: ""},
		{Jail: "x", Prefix: netip.MustParsePrefix("203.0.113.0/24"), Start: start, Expires: time.Date(9999, 1, 1, 0, 0, 0, 1, time.UTC), Reason: "bad \xff utf-8 \x00 nul"},
		{Jail: "x", Prefix: netip.MustParsePrefix("0.0.0.0/0"), Start: time.Unix(-5, 7), Expires: time.Unix(-1, 0), Reason: "before 1970"},
	} {
		k := appendKey(nil, b.Jail, b.Prefix)
		got, err := decodeBan(k, appendBan(nil, b), interner{})
		if err != nil {
			t.Fatalf("%+v: %v", b, err)
		}
		if got.Jail != b.Jail || got.Prefix != b.Prefix || !got.Start.Equal(b.Start) || !got.Expires.Equal(b.Expires) ||
			got.Permanent() != b.Permanent() || got.Reason != b.Reason {
			t.Fatalf("round trip of %+v = %+v", b, got)
		}
		starts := []time.Time{b.Start, start, start.Add(time.Second)}
		j, p, hs, err := decodeHistory(k, appendHistory(nil, []int64{starts[0].UnixNano(), starts[1].UnixNano(), starts[2].UnixNano()}), nil)
		if err != nil || j != b.Jail || p != b.Prefix || len(hs) != 3 {
			t.Fatalf("history round trip: %s %s %v %v", j, p, hs, err)
		}
		for i := range hs {
			if !hs[i].Equal(starts[i]) {
				t.Fatalf("history start %d = %v, want %v", i, hs[i], starts[i])
			}
		}
	}
	k := appendKey(nil, "sshd", netip.MustParsePrefix("198.51.100.7/32"))
	for _, bad := range [][]byte{nil, {0x02, 0}, {recordV1}, {recordV1, 0, 0x80}} {
		if _, err := decodeBan(k, bad, nil); err == nil {
			t.Errorf("decodeBan(%x) accepted", bad)
		}
	}
}

// TestSizeV1: a typical ban's record is far smaller than its JSON.
func TestSizeV1(t *testing.T) {
	b := Ban{Jail: "sshd", Prefix: netip.MustParsePrefix("198.51.100.77/32"), Start: time.Now(), Expires: time.Now().Add(time.Hour), Reason: "banned by an administrator"}
	if n := len(appendBan(nil, b)); n > 45 {
		t.Fatalf("record of %d bytes", n)
	}
}

// TestMigrateJSON: testdata/json-v0.db was written by the table when it
// stored JSON records; it loads, and a table that writes to it again
// rewrites the records it touches in version 1 and still reads the rest.
func TestMigrateJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	src, err := os.Open("testdata/json-v0.db")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	dst.Close()

	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 29, 9, 0, 0, 123456789, time.UTC)
	check := func(tb *Table) {
		t.Helper()
		act := tb.Active(t0.Add(time.Minute))
		want := []struct {
			jail, prefix, reason string
			expires              time.Time
		}{
			{"sshd", "203.0.113.7/32", "3 failures in 10m0s", time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)},
			{"sshd", "203.0.113.9/32", "expired long ago", t0.Add(time.Hour)},
			{"sshd", "2001:db8:1:2::/64", "banned by an administrator", time.Time{}},
			{"web-auth", "198.51.100.0/24", "<&> \"quoted\" é", time.Date(2099, 1, 2, 0, 0, 0, 0, time.UTC)},
		}
		if len(act) != len(want) {
			t.Fatalf("Active = %+v", act)
		}
		for i, w := range want {
			a := act[i]
			if a.Jail != w.jail || a.Prefix.String() != w.prefix || a.Reason != w.reason || !a.Start.Equal(t0) || !a.Expires.Equal(w.expires) {
				t.Errorf("ban %d = %+v, want %+v", i, a, w)
			}
		}
		if c := tb.Cursor(); c != "s=0123abcd;i=42;b=feed;m=1;t=5f0;x=9" {
			t.Errorf("Cursor = %q", c)
		}
		if n := tb.Total("sshd"); n != 3 {
			t.Errorf("Total(sshd) = %d, want 3", n)
		}
		if n := tb.BanCount("web-auth", netip.MustParsePrefix("198.51.100.0/24"), t0); n != 1 {
			t.Errorf("BanCount = %d, want 1", n)
		}
		if c := tb.Counts(); c["sshd"] != 3 || c["web-auth"] != 1 {
			t.Errorf("Counts = %v", c)
		}
	}
	check(tb)
	// Write again: extend one ban (rewritten in version 1), expire one.
	ext := Ban{Jail: "sshd", Prefix: netip.MustParsePrefix("203.0.113.9/32"), Start: t0.Add(time.Minute), Expires: t0.Add(2 * time.Hour), Reason: "expired long ago"}
	if ch, err := tb.Add(ext); err != nil || len(ch) != 1 {
		t.Fatalf("extend: %v %v", ch, err)
	}
	tb = reopen(t, tb, path)
	act := tb.Active(t0.Add(90 * time.Minute))
	if len(act) != 4 || !act[1].Expires.Equal(t0.Add(2*time.Hour)) || !act[1].Start.Equal(t0) {
		t.Fatalf("after extension: %+v", act)
	}
	tb.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBans).Get([]byte("sshd\x00203.0.113.9/32"))
		if len(v) == 0 || v[0] != recordV1 {
			t.Errorf("rewritten record = %q, want version 1", v)
		}
		v = tx.Bucket(bucketBans).Get([]byte("sshd\x00203.0.113.7/32"))
		if !bytes.HasPrefix(v, []byte("{")) {
			t.Errorf("untouched record = %q, want JSON", v)
		}
		return nil
	})
}

// TestParsePrefix4: the fast path agrees with netip.ParsePrefix wherever
// it says ok, and says ok for every IPv4 prefix as keys are written.
func TestParsePrefix4(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "198.51.100.7/32", "203.0.113.0/24", "255.255.255.255/32", "10.0.0.0/8", "1.2.3.4/5"} {
		p, ok := parsePrefix4([]byte(s))
		if want := netip.MustParsePrefix(s); !ok || p != want {
			t.Errorf("parsePrefix4(%q) = %v, %v; want %v", s, p, ok, want)
		}
	}
	for _, s := range []string{"", "1.2.3.4", "1.2.3.4/", "01.2.3.4/32", "1.2.3.4/033", "256.1.1.1/32", "1.2.3.4/33", "1.2.3/24",
		"1.2.3.4.5/32", "1.2.3.4/32x", "2001:db8::/32", "::ffff:1.2.3.4/128", "1.2.3.4/-1", "1..3.4/32", "1000.2.3.4/32"} {
		if p, ok := parsePrefix4([]byte(s)); ok {
			if want, err := netip.ParsePrefix(s); err != nil || want != p {
				t.Errorf("parsePrefix4(%q) = %v, ok; netip.ParsePrefix: %v, %v", s, p, want, err)
			}
		}
	}
}

// FuzzParsePrefix4: never ok where netip.ParsePrefix disagrees.
func FuzzParsePrefix4(f *testing.F) {
	f.Add("198.51.100.0/24")
	f.Add("0.0.0.0/0")
	f.Fuzz(func(t *testing.T, s string) {
		if p, ok := parsePrefix4([]byte(s)); ok {
			if want, err := netip.ParsePrefix(s); err != nil || want != p {
				t.Fatalf("parsePrefix4(%q) = %v, ok; netip.ParsePrefix: %v, %v", s, p, want, err)
			}
		}
	})
}
