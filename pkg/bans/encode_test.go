package bans

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
	"unicode/utf8"
)

// TestEncodeMatchesJSON: the hand-written encoders write the same bytes as
// json.Marshal, for ordinary bans, permanent ones, hostile reasons
// (attacker-chosen user names end up there) and random strings, and the
// result decodes back to the same values.
func TestEncodeMatchesJSON(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	t0 := time.Date(2026, 11, 22, 23, 20, 1, 123456789, time.UTC)
	strs := []string{
		"", "5 failures within 10m0s", `last for user "root"`, `back\slash`, "tab\there\nnewline\r\x00\x1f\x7f",
		"<script>&amp;</script>", "utf-8 ü 日本 🙂", "bad \xff\xfe utf-8", "line\u2028sep\u2029para", "\xed\xa0\x80 surrogate",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		strs = append(strs, string(b))
	}
	var cases []Ban
	for i, s := range strs {
		b := Ban{Jail: s, Prefix: netip.MustParsePrefix("203.0.113.7/32"), Start: t0, Expires: t0.Add(time.Hour), Reason: s}
		switch i % 4 {
		case 1:
			b.Expires = time.Time{}
			b.Prefix = netip.MustParsePrefix("2001:db8::/64")
		case 2:
			b.Start, b.Expires = t0.In(berlin), t0.Add(time.Hour).In(berlin)
		case 3:
			b.Start = t0.Truncate(time.Second)
			b.Prefix = netip.Prefix{}
		}
		cases = append(cases, b)
	}
	cases = append(cases, Ban{Jail: "far", Start: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}) // json refuses
	for _, b := range cases {
		want, wantErr := json.Marshal(b)
		got, gotErr := encodeBan(b)
		if (wantErr != nil) != (gotErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("encodeBan(%+v)\n got %s (%v)\nwant %s (%v)", b, got, gotErr, want, wantErr)
		}
		if wantErr != nil {
			continue
		}
		var back Ban
		if err := json.Unmarshal(got, &back); err != nil || back.Prefix != b.Prefix || !back.Start.Equal(b.Start) || !back.Expires.Equal(b.Expires) ||
			utf8.ValidString(b.Jail) && (back.Jail != b.Jail || back.Reason != b.Reason) {
			t.Fatalf("round trip of %+v: %+v, %v", b, back, err)
		}
	}
	for _, h := range []historyRecord{
		{Jail: "sshd", Prefix: netip.MustParsePrefix("198.51.100.2/32"), Starts: []time.Time{t0, t0.Add(time.Minute).In(berlin)}},
		{Jail: `"odd"`, Prefix: netip.MustParsePrefix("2001:db8::/48")},
		{Jail: "empty", Starts: []time.Time{}},
	} {
		want, _ := json.Marshal(h)
		got, err := encodeHistory(h)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("encodeHistory(%+v)\n got %s (%v)\nwant %s", h, got, err, want)
		}
	}
}
