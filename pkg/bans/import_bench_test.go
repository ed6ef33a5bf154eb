package bans

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkImportSteps measures an administrator's import into a table
// on disk as the keeper commits it: 200,000 new bans of one jail, in the
// table's key order, in steps of 5,000 (one transaction each, synced).
// ns/op is per ban.
func BenchmarkImportSteps(b *testing.B) {
	const n, step = 200_000, 5_000
	now := time.Now()
	all := make([]Ban, n)
	for i := range all {
		v := uint32(0x0a000000 + i*7919) // spread over 10.0.0.0/8
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		all[i] = Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Start: now, Expires: now.Add(time.Hour), Reason: "banned by an administrator"}
	}
	slices.SortFunc(all, func(x, y Ban) int {
		return bytes.Compare(appendKey(nil, x.Jail, x.Prefix), appendKey(nil, y.Jail, y.Prefix))
	})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += n {
		b.StopTimer()
		tb, err := Open(filepath.Join(b.TempDir(), FileName))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for bs := all; len(bs) > 0; bs = bs[min(len(bs), step):] {
			if _, err := tb.Add(bs[:min(len(bs), step)]...); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		tb.Close()
		b.StartTimer()
	}
}

// TestImportStepsOnDisk: what an import's steps have returned is in the
// file as a kill -9 leaves it (the file copied while the table is still
// open, without Close): every ban, and the history of each (a prefix
// banned before gets its second start).
func TestImportStepsOnDisk(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	again := netip.MustParsePrefix("10.0.0.7/32")
	if _, err := tb.Add(Ban{Jail: "sshd", Prefix: again, Start: t0, Expires: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	var all []Ban
	for i := range 12_000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		all = append(all, Ban{Jail: "sshd", Prefix: netip.PrefixFrom(a, 32), Start: now, Expires: now.Add(time.Hour), Reason: "imported"})
	}
	slices.SortFunc(all, func(x, y Ban) int {
		return bytes.Compare(appendKey(nil, x.Jail, x.Prefix), appendKey(nil, y.Jail, y.Prefix))
	})
	for bs := all; len(bs) > 0; bs = bs[min(len(bs), 5_000):] {
		if _, err := tb.Add(bs[:min(len(bs), 5_000)]...); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	re, err := Open(crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	got := re.Active(now)
	if len(got) != 12_000 {
		t.Fatalf("%d bans after the crash, want 12000", len(got))
	}
	for _, b := range got {
		if b.Reason != "imported" || !b.Expires.Equal(now.Add(time.Hour)) {
			t.Fatalf("after the crash: %+v", b)
		}
	}
	if n := re.BanCount("sshd", again, time.Time{}); n != 2 {
		t.Errorf("%s banned before and imported: %d starts, want 2", again, n)
	}
	if n := re.BanCount("sshd", all[42].Prefix, time.Time{}); n != 1 {
		t.Errorf("%s: %d starts, want 1", all[42].Prefix, n)
	}
	if n := re.Total("sshd"); n != 12_001 {
		t.Errorf("total %d, want 12001", n)
	}
}
