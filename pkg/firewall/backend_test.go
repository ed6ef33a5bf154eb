package firewall

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

func TestNoneLogsAndChangesNothing(t *testing.T) {
	var lines []string
	b, err := New("none", Options{Logf: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }})
	if err != nil {
		t.Fatal(err)
	}
	l := Layout{Jails: []JailRules{sshJail}}
	p := netip.MustParsePrefix("203.0.113.7/32")
	steps := []struct {
		do   func() error
		want string
	}{
		{func() error { return b.Setup(l, nil) }, "would set up jail ssh: protocol tcp, ports [22 2222], action reject"},
		{func() error { return b.Add([]Ban{{Jail: "ssh", Prefix: p}}) }, "would ban 203.0.113.7 in jail ssh permanently"},
		{func() error { return b.Remove([]Ban{{Jail: "ssh", Prefix: p}}) }, "would unban 203.0.113.7 in jail ssh"},
		{b.Teardown, "would remove the layout"},
	}
	for _, s := range steps {
		lines = nil
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(lines, "\n"), s.want) {
			t.Errorf("log %q lacks %q", lines, s.want)
		}
	}
	if b.Name() != "none" {
		t.Errorf("Name = %q", b.Name())
	}
}

func TestNewRejectsUnknownBackend(t *testing.T) {
	if _, err := New("pf", Options{}); err == nil || !strings.Contains(err.Error(), `"pf"`) {
		t.Fatalf("New(pf) = %v, want an error naming it", err)
	}
}

func TestCheckLayoutAndNormalize(t *testing.T) {
	bad := []Layout{
		{Jails: []JailRules{{Name: "Bad Name"}}},
		{Jails: []JailRules{{Name: "a-name-longer-than-16"}}},
		{Jails: []JailRules{{Name: "x"}, {Name: "x"}}},
		{Jails: []JailRules{{Name: "x", Protocol: "icmp"}}},
		{Whitelist: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
	}
	for _, l := range bad {
		if err := checkLayout(l); err == nil {
			t.Errorf("checkLayout(%+v) = nil, want an error", l)
		}
	}
	n, err := normalize(Ban{Jail: "x", Prefix: netip.MustParsePrefix("::ffff:203.0.113.7/128")})
	if err != nil || n.Prefix != netip.MustParsePrefix("203.0.113.7/32") {
		t.Errorf("normalize(4in6) = %v, %v", n.Prefix, err)
	}
	if _, err := normalize(Ban{Jail: "x", Prefix: netip.MustParsePrefix("::/0")}); err == nil {
		t.Error("normalize(::/0) = nil error, want refusal")
	}
}

// TestDetect checks auto's choice in a fresh namespace: nothing or only
// iptables-nft tables → iptables; a native table → nftables.
func TestDetect(t *testing.T) {
	testbed.Require(t, "ip", "iptables", "nft")
	e := newKernelEnv(t, "iptables")
	steps := []struct{ line, want string }{
		{"true", "iptables"},
		{"iptables -A INPUT -s 203.0.113.9 -j ACCEPT", "iptables"},
		{"nft add table inet filter", "nftables"},
	}
	for _, s := range steps {
		e.sh(t, s.line)
		got, why := Detect(e.hosts.Srv)
		if got != s.want {
			t.Errorf("after %q: Detect = %s (%s), want %s", s.line, got, why, s.want)
		}
		b, err := New("auto", Options{NetNS: e.hosts.Srv})
		if err != nil {
			t.Fatal(err)
		}
		if b.Name() != s.want {
			t.Errorf("after %q: New(auto).Name() = %s, want %s", s.line, b.Name(), s.want)
		}
		b.Close()
	}
}

// TestKillConnections checks that banning a source removes its conntrack
// entries in the server namespace, for both real backends.
func TestKillConnections(t *testing.T) {
	testbed.Require(t, "conntrack")
	for _, kind := range []string{"iptables", "nftables"} {
		t.Run(kind, func(t *testing.T) {
			e := newKernelEnv(t, kind)
			// Something must use conntrack for the namespace to track flows.
			e.sh(t, "nft add table ip track && nft add chain ip track c '{ type filter hook input priority 0; }' && nft add rule ip track c ct state established counter")
			b := e.backend(t)
			defer b.Close()
			if err := b.Setup(Layout{Jails: []JailRules{sshJail}}, nil); err != nil {
				t.Fatal(err)
			}
			if v := e.probe(t, atk4, portOther); v != VerdictAccept {
				t.Fatalf("probe before ban: %s", v)
			}
			count := func() int {
				out, _ := e.hosts.InSrv("conntrack", "-L", "-s", atk4.String()).CombinedOutput()
				return strings.Count(string(out), "src="+atk4.String()+" dst=")
			}
			if n := count(); n == 0 {
				t.Fatal("no conntrack entry of the attacker before the ban")
			}
			if n := kernelConntrackCount(t, e.hosts.Srv); n == 0 {
				t.Fatal("conntrackCount = 0 with the attacker's entry in the table")
			}
			if err := b.Add([]Ban{{Jail: "ssh", Prefix: netip.PrefixFrom(atk4, 32), Expires: time.Now().Add(time.Hour)}}); err != nil {
				t.Fatal(err)
			}
			// The pass runs off the ban path, at once when the killer was idle.
			deadline := time.Now().Add(2 * time.Second)
			n := count()
			for n != 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				n = count()
			}
			if n != 0 {
				t.Errorf("%d conntrack entries of the attacker left 2s after the ban", n)
			}
		})
	}
}

// kernelConntrackCount asks the kernel through conntrackCount how many
// connections namespace ns tracks.
func kernelConntrackCount(t *testing.T, ns string) uint32 {
	t.Helper()
	h, err := openNetNS(nsPath(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, err := openStatsSocket(h)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := conntrackCount(s)
	if err != nil {
		t.Fatalf("conntrackCount: %v", err)
	}
	return n
}

// TestConntrackCountIdle: a namespace where no rule uses conntrack tracks
// nothing, even after traffic, so the killer skips its dump there.
func TestConntrackCountIdle(t *testing.T) {
	testbed.Require(t, "ip")
	e := newKernelEnv(t, "iptables")
	e.probe(t, atk4, portOther)
	if n := kernelConntrackCount(t, e.hosts.Srv); n != 0 {
		t.Fatalf("conntrackCount = %d in a namespace without conntrack users, want 0", n)
	}
}

// BenchmarkAdd measures adding a batch of 10k bans (fresh addresses each
// iteration) per real backend inside a fresh namespace.
func BenchmarkAdd(b *testing.B) {
	for _, kind := range []string{"iptables", "nftables"} {
		b.Run(kind, func(b *testing.B) {
			testbed.Require(b, "ip", "iptables", "ipset", "nft")
			h := testbed.NewHosts(b)
			be, err := New(kind, Options{NetNS: h.Srv})
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			if err := be.Setup(Layout{Jails: []JailRules{sshJail}}, nil); err != nil {
				b.Fatal(err)
			}
			exp := time.Now().Add(time.Hour)
			batch := make([]Ban, 10_000)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for k := range batch {
					v := uint32(0x0a000001 + i*len(batch) + k)
					a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
					batch[k] = Ban{Jail: "ssh", Prefix: netip.PrefixFrom(a, 32), Expires: exp}
				}
				b.StartTimer()
				if err := be.Add(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "bans/s")
		})
	}
}

// TestVerifyLargeSets runs Verify the way it runs at a million bans (ipset:
// header counts; nftables: sets above nftListMax, lowered here, checked by
// looking up a sample) against partial and total loss of bans: each drift
// is reported and repaired, after which the kernel holds every ban again
// and the next Verify finds nothing.
func TestVerifyLargeSets(t *testing.T) {
	defer func(n int) { nftListMax = n }(nftListMax)
	nftListMax = 500
	l := Layout{Jails: []JailRules{{Name: "t", Ports: []uint16{22}}}}
	exp := time.Now().Add(time.Hour)
	var bans []Ban
	var del []string // a third of the v4 addresses
	for i := range 3000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		bans = append(bans, Ban{Jail: "t", Prefix: netip.PrefixFrom(a, 32), Expires: exp})
		if i%3 == 0 {
			del = append(del, a.String())
		}
	}
	for i := range 800 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		bans = append(bans, Ban{Jail: "t", Prefix: netip.PrefixFrom(a, 128)})
	}
	bans = append(bans, Ban{Jail: "t", Prefix: netip.MustParsePrefix("203.0.113.0/24"), Expires: exp})
	for _, c := range []struct {
		backend string
		drifts  map[string]string // name → shell line in the server namespace
	}{
		{"iptables", map[string]string{
			"partial loss": "printf 'del jk-t-4 %s\\n' " + strings.Join(del, " ") + " | ipset restore",
			"total loss":   "ipset flush jk-t-4 && ipset flush jk-t-6",
			"one ban lost": "ipset del jk-t-4 10.0.0.1",
		}},
		{"nftables", map[string]string{
			"partial loss": "nft delete element inet jailkeeper t-4 '{ " + strings.Join(del, ", ") + " }'",
			"total loss":   "nft flush set inet jailkeeper t-4 && nft flush set inet jailkeeper t-6",
			"table gone":   "nft delete table inet jailkeeper",
		}},
	} {
		t.Run(c.backend, func(t *testing.T) {
			e := newKernelEnv(t, c.backend)
			b := e.backend(t)
			defer b.Close()
			if err := b.Setup(l, bans); err != nil {
				t.Fatal(err)
			}
			if found, err := b.Verify(l, bans); err != nil || found != nil {
				t.Fatalf("Verify after Setup: %q, %v", found, err)
			}
			for _, name := range slices.Sorted(maps.Keys(c.drifts)) {
				e.sh(t, c.drifts[name])
				if got, _ := b.List(); len(got) == len(bans) {
					t.Fatalf("%s: drift changed nothing", name)
				}
				found, err := b.Verify(l, bans)
				if err != nil || len(found) == 0 {
					t.Fatalf("%s: Verify = %q, %v; want drift found", name, found, err)
				}
				if got, err := b.List(); err != nil || len(got) != len(bans) {
					t.Fatalf("%s: after repair List has %d bans (%v), want %d", name, len(got), err, len(bans))
				}
				if found, err := b.Verify(l, bans); err != nil || found != nil {
					t.Fatalf("%s: second Verify = %q, %v", name, found, err)
				}
			}
		})
	}
}
