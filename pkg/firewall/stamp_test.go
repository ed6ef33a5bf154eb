package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// stampBans are the bans of the stamp tests: hosts, /64s and /24s (the
// masked sets) and a /20 and a /48 (the interval sets).
func stampBans(exp time.Time) []Ban {
	bs := importMix(3000, exp)
	for _, p := range []string{"198.51.100.0/24", "203.0.112.0/20", "2001:db8:ffff::/48"} {
		bs = append(bs, Ban{Jail: "ssh", Prefix: netip.MustParsePrefix(p), Expires: exp})
	}
	return bs
}

// stoppedWithStamp builds the layout with bans in a namespace of its own,
// watched as the daemon watches it, and stops cleanly: it returns the
// hosts and the stamp.
func stoppedWithStamp(t *testing.T, l Layout, bans []Ban) (*testbed.Hosts, []byte) {
	t.Helper()
	h := testbed.NewHosts(t)
	b, err := New("nftables", Options{NetNS: h.Srv, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Setup(l, bans); err != nil {
		t.Fatal(err)
	}
	w, err := Watch(b)
	if err != nil {
		t.Fatal(err)
	}
	// A ban added and one removed while running, as the daemon's would.
	extra := Ban{Jail: "ssh", Prefix: netip.MustParsePrefix("192.0.2.77/32"), Expires: time.Now().Add(time.Hour)}
	if err := b.Add([]Ban{extra}); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove([]Ban{extra}); err != nil {
		t.Fatal(err)
	}
	stamp, err := b.(Stamper).Stamp()
	if err != nil {
		t.Fatalf("Stamp after a clean run: %v", err)
	}
	w.Close()
	b.Close()
	return h, stamp
}

// sameBans fails unless the kernel holds exactly want. A dump of a hash
// set the kernel is resizing (just refilled) may repeat or skip an
// element: a mismatch is read again, three times at most.
func sameBans(t *testing.T, b Backend, want []Ban) {
	t.Helper()
	for try := 0; ; try++ {
		msg := diffBans(t, b, want)
		if msg == "" {
			return
		}
		if try == 2 {
			t.Fatal(msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func diffBans(t *testing.T, b Backend, want []Ban) string {
	t.Helper()
	got, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, bn := range got {
		have[bn.Jail+" "+bn.Prefix.String()] = true
	}
	var missing []string
	for _, bn := range want {
		k := bn.Jail + " " + bn.Prefix.String()
		if !have[k] {
			missing = append(missing, k)
		}
		delete(have, k)
	}
	if len(missing) > 0 || len(have) > 0 {
		var extra []string
		for k := range have {
			extra = append(extra, k)
		}
		slices.Sort(extra)
		return fmt.Sprintf("the kernel lacks %d bans (%v) and holds %d more (%v)", len(missing), missing[:min(len(missing), 3)], len(extra), extra[:min(len(extra), 3)])
	}
	for _, bn := range got {
		if bn.Expires.IsZero() || time.Until(bn.Expires) < 50*time.Minute {
			return fmt.Sprintf("ban %v has timeout until %v, want about an hour", bn.Prefix, bn.Expires)
		}
	}
	return ""
}

// TestNFTStamp: a restart with the stamp of a clean stop skips the refill
// only when nothing changed in the namespace's ruleset since, and ends with
// every ban in the kernel either way.
func TestNFTStamp(t *testing.T) {
	testbed.Require(t, "ip", "nft")
	l := Layout{Jails: []JailRules{sshJail}, Whitelist: []netip.Prefix{netip.MustParsePrefix("198.51.100.3/32")}}
	cases := []struct {
		name  string
		touch func(t *testing.T, h *testbed.Hosts, stamp []byte) []byte // between stop and start; returns the stamp to use
		skip  bool
	}{
		{"unchanged", nil, true},
		{"element removed", func(t *testing.T, h *testbed.Hosts, s []byte) []byte {
			nftIn(t, h, "delete element inet jailkeeper ssh-4 { 203.0.113.5 }")
			return s
		}, false},
		{"set flushed", func(t *testing.T, h *testbed.Hosts, s []byte) []byte {
			nftIn(t, h, "flush set inet jailkeeper ssh-64")
			return s
		}, false},
		{"another program's unrelated commit", func(t *testing.T, h *testbed.Hosts, s []byte) []byte {
			nftIn(t, h, "add table inet other")
			return s
		}, false},
		{"no stamp", func(*testing.T, *testbed.Hosts, []byte) []byte { return nil }, false},
		{"stamp of another format", func(_ *testing.T, _ *testbed.Hosts, s []byte) []byte { return s[:len(s)-1] }, false},
		{"killed after a start from the stamp", func(t *testing.T, h *testbed.Hosts, s []byte) []byte {
			// A start that used the stamp, a ban, then kill -9: no
			// new stamp; the old one is all there could be.
			b, err := New("nftables", Options{NetNS: h.Srv, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if filled, err := b.(Stamper).SetupFrom(l, stampBans(time.Now().Add(time.Hour)), s); err != nil || filled != "" {
				t.Fatalf("SetupFrom = %q, %v; want the sets kept", filled, err)
			}
			if err := b.Add([]Ban{{Jail: "ssh", Prefix: netip.MustParsePrefix("192.0.2.1/32"), Expires: time.Now().Add(time.Hour)}}); err != nil {
				t.Fatal(err)
			}
			if err := b.Remove([]Ban{{Jail: "ssh", Prefix: netip.MustParsePrefix("192.0.2.1/32")}}); err != nil {
				t.Fatal(err)
			}
			return s
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			bans := stampBans(time.Now().Add(time.Hour))
			h, stamp := stoppedWithStamp(t, l, bans)
			if c.touch != nil {
				stamp = c.touch(t, h, stamp)
			}
			b, err := New("nftables", Options{NetNS: h.Srv, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			filled, err := b.(Stamper).SetupFrom(l, bans, stamp)
			if err != nil {
				t.Fatal(err)
			}
			if skipped := filled == ""; skipped != c.skip {
				t.Errorf("sets kept = %v (%q), want %v", skipped, filled, c.skip)
			}
			sameBans(t, b, bans)
			// The layout is in place: the whitelist rule first.
			out := nftIn(t, h, "list chain inet jailkeeper input")
			if i, j := strings.Index(out, "@wl4"), strings.Index(out, "@ssh-4"); i < 0 || j < 0 || i > j {
				t.Errorf("chain after the start:\n%s", out)
			}
		})
	}
}

// TestNFTStampRefused: Stamp refuses when it cannot prove the sets hold
// what the backend put there.
func TestNFTStampRefused(t *testing.T) {
	testbed.Require(t, "ip", "nft")
	l := Layout{Jails: []JailRules{sshJail}}
	bans := stampBans(time.Now().Add(time.Hour))
	setup := func(t *testing.T) (*testbed.Hosts, Backend) {
		h := testbed.NewHosts(t)
		b, err := New("nftables", Options{NetNS: h.Srv, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		if err := b.Setup(l, bans); err != nil {
			t.Fatal(err)
		}
		return h, b
	}
	// watched is setup with the backend's drift Watcher running.
	watched := func(t *testing.T) (*testbed.Hosts, Backend, *Watcher) {
		h, b := setup(t)
		w, err := Watch(b)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		return h, b, w
	}
	t.Run("no watcher", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		if s, err := b.(Stamper).Stamp(); err == nil {
			t.Errorf("Stamp without a Watcher = %x, want an error", s)
		}
	})
	t.Run("another program's change, repaired", func(t *testing.T) {
		t.Parallel()
		h, b, w := watched(t)
		nftIn(t, h, "delete element inet jailkeeper ssh-4 { 203.0.113.9 }")
		deadline := time.Now().Add(5 * time.Second)
		for !w.Check() {
			if time.Now().After(deadline) {
				t.Fatal("no drift alarm within 5 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if found, err := b.Verify(l, bans); err != nil || len(found) == 0 {
			t.Fatalf("Verify = %v, %v; want the element found missing", found, err)
		}
		if s, err := b.(Stamper).Stamp(); err == nil {
			t.Errorf("Stamp after another program's change = %x, want an error", s)
		}
		// A full fill makes the sets exact again.
		if err := b.Setup(l, bans); err != nil {
			t.Fatal(err)
		}
		if _, err := b.(Stamper).Stamp(); err != nil {
			t.Errorf("Stamp after Setup: %v", err)
		}
	})
	t.Run("another program's change, not yet heard", func(t *testing.T) {
		t.Parallel()
		h, b, _ := watched(t)
		nftIn(t, h, "flush set inet jailkeeper ssh-64")
		if s, err := b.(Stamper).Stamp(); err == nil {
			t.Errorf("Stamp right after another program's change = %x, want an error", s)
		}
	})
}

// nftIn runs nft with args (one string, split on spaces) in the server
// namespace and returns its output.
func nftIn(t *testing.T, h *testbed.Hosts, args string) string {
	t.Helper()
	out, err := h.InSrv("nft", strings.Fields(args)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", args, err, out)
	}
	return string(out)
}
