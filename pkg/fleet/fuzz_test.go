package fleet

import (
	"testing"
)

// FuzzDecode: whatever a bucket holds, Decode does not panic, and a value
// it accepts is a valid record of its own key that encodes back.
func FuzzDecode(f *testing.F) {
	f.Add("ban.web1.sshd.203_0_113_9", []byte(`{"prefix":"203.0.113.9/32","jail":"sshd","reason":"x","start":"2026-11-29T10:00:00Z","expires":"2026-11-29T11:00:00Z","origin":"web1"}`))
	f.Add("ban.web1.sshd.2001-db8--/64", []byte(`{"prefix":"2001:db8::/64","jail":"sshd","reason":"","start":"2026-11-29T10:00:00Z","expires":"0001-01-01T00:00:00Z","origin":"web1"}`))
	f.Add("ban.web1.sshd.0_0_0_0/0", []byte(`{"prefix":"0.0.0.0/0"}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		r, err := Decode(key, value)
		if err != nil {
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("Decode accepted an invalid record %+v: %v", r, err)
		}
		if r.Key().String() != key {
			t.Fatalf("Decode accepted %+v under key %q", r, key)
		}
		if _, err := r.Encode(); err != nil {
			t.Fatalf("an accepted record does not encode: %v", err)
		}
	})
}
