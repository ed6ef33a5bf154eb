package dbusapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// FuzzArgs drives what the service does with a caller's arguments before
// the keeper sees them: the address (ParsePrefix, then the one rule of
// what may be banned), the seconds of Ban/BanMany, and a reason shown to
// an unprivileged ListBans caller. It must not panic; an address that
// parses prints back to itself; an error names the class; a hidden reason
// keeps no quoted user name. Seeds: testdata/fuzz/FuzzArgs and below.
func FuzzArgs(f *testing.F) {
	f.Add("203.0.113.7", uint64(600), `3 failures within 10m0s, last for user "root"`)
	f.Add("0.0.0.0", uint64(0), `distributed attack on user "a\"b": 5 addresses`)
	f.Add("::ffff:198.51.100.7/120", uint64(1<<64-1), "")
	f.Add("fe80::1%eth0", uint64(60479999999395200), `user "`)
	f.Add("2001:db8::/0", uint64(3153600000), "banned by an administrator")
	f.Fuzz(func(t *testing.T, addr string, secs uint64, reason string) {
		p, err := ParsePrefix(addr)
		if err != nil {
			if !errors.Is(err, ErrBadAddress) {
				t.Fatalf("ParsePrefix(%q): %v does not wrap ErrBadAddress", addr, err)
			}
		} else {
			if back, err := ParsePrefix(prefix.Format(p)); err != nil || back != p {
				t.Fatalf("ParsePrefix(Format(%s)) = %s, %v", p, back, err)
			}
			if err := prefix.Refuse(p, nil); err != nil && !errors.Is(err, prefix.ErrNotBannable) {
				t.Fatalf("Refuse(%s): %v", p, err)
			}
		}
		d, err := seconds(secs)
		if err != nil && !errors.Is(err, ErrBadDuration) || err == nil && d < 0 && secs != 1<<64-1 {
			t.Fatalf("seconds(%d) = %v, %v", secs, d, err)
		}
		hidden := HideUsers(reason)
		if strings.Count(reason, `user "`) > 0 && strings.Contains(hidden, `user "`) && userInReason.MatchString(hidden) {
			t.Fatalf("HideUsers(%q) = %q still quotes a user", reason, hidden)
		}
	})
}
