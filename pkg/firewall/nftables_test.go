package firewall

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// importMix returns n bans the way the daemon's import test makes them:
// the IPv4 addresses of 203.0.113.0/24, then IPv6 addresses and /64s
// inside 2001:db8::/32 in turn.
func importMix(n int, exp time.Time) []Ban {
	bs := make([]Ban, 0, n)
	for i := 1; i < 255 && len(bs) < n; i++ {
		bs = append(bs, Ban{Jail: "ssh", Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32), Expires: exp})
	}
	for i := 0; len(bs) < n; i++ {
		var a [16]byte
		a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb8
		if i%2 == 0 {
			v := 0x1000 + i>>16
			a[4], a[5], a[6], a[7] = byte(v>>8), byte(v), byte(i>>8), byte(i)
			bs = append(bs, Ban{Jail: "ssh", Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 64), Expires: exp})
		} else {
			v := 0x8000 + i>>16
			a[4], a[5], a[14], a[15] = byte(v>>8), byte(v), byte(i>>8), byte(i)
			bs = append(bs, Ban{Jail: "ssh", Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 128), Expires: exp})
		}
	}
	return bs
}

// scaleN is the number of bans of the scale benchmarks: JK_NFT_N, or
// 100,000 (make bench's firewall section runs a million).
func scaleN() int {
	if v, err := strconv.Atoi(os.Getenv("JK_NFT_N")); err == nil && v > 0 {
		return v
	}
	return 100_000
}

// BenchmarkNFTDaemonPath runs the nftables backend as the daemon does at
// scale, with a drift Watcher listening: an import Added in steps of
// 5,000, a restart (Setup of a new backend over the full sets),
// `nft flush ruleset` repaired by Verify, and every ban removed in steps
// of 20,000. It reports each phase's time, and the Watcher's alarms
// (one is the flush's).
func BenchmarkNFTDaemonPath(b *testing.B) {
	testbed.Require(b, "ip", "nft")
	n := scaleN()
	l := Layout{Jails: []JailRules{sshJail}}
	for i := 0; i < b.N; i++ {
		h := testbed.NewHosts(b)
		be, err := New("nftables", Options{NetNS: h.Srv})
		if err != nil {
			b.Fatal(err)
		}
		if err := be.Setup(l, nil); err != nil {
			b.Fatal(err)
		}
		w, err := Watch(be)
		if err != nil {
			b.Fatal(err)
		}
		bans := importMix(n, time.Now().Add(time.Hour))
		t0 := time.Now()
		step := 5000
		if v, err := strconv.Atoi(os.Getenv("JK_NFT_STEP")); err == nil && v > 0 {
			step = v
		}
		for s := 0; s < len(bans); s += step {
			if err := be.Add(bans[s:min(s+step, len(bans))]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(time.Since(t0).Seconds(), "import-s")
		alarms := 0
		if w.Check() {
			alarms++
		}
		w.Close()
		be.Close()

		t0 = time.Now()
		be, err = New("nftables", Options{NetNS: h.Srv})
		if err != nil {
			b.Fatal(err)
		}
		if err := be.Setup(l, bans); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "restart-s")
		w, err = Watch(be)
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		if found, err := be.Verify(l, bans); err != nil || len(found) > 0 {
			b.Fatalf("Verify after restart: %q, %v", found, err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "verify-s")

		if out, err := h.InSrv("nft", "flush", "ruleset").CombinedOutput(); err != nil {
			b.Fatalf("nft flush ruleset: %v\n%s", err, out)
		}
		t0 = time.Now()
		if found, err := be.Verify(l, bans); err != nil || len(found) == 0 {
			b.Fatalf("Verify after flush: %q, %v", found, err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "refill-s")
		if w.Check() {
			alarms++
		}
		t0 = time.Now()
		if found, err := be.Verify(l, bans); err != nil || len(found) > 0 {
			b.Fatalf("Verify after refill: %q, %v", found, err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "verify2-s")
		// Every ban lifted in steps of 20,000, as the daemon's expiry
		// and unban --all do.
		t0 = time.Now()
		for s := 0; s < len(bans); s += 20_000 {
			if err := be.Remove(bans[s:min(s+20_000, len(bans))]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(time.Since(t0).Seconds(), "remove-s")
		if w.Check() {
			alarms++
		}
		if got, err := be.List(); err != nil || len(got) != 0 {
			b.Fatalf("after removing every ban, List = %d bans, %v", len(got), err)
		}
		b.ReportMetric(float64(alarms), "alarms")
		w.Close()
		be.Close()
	}
}

// BenchmarkNFTRestore measures Setup from nothing with scaleN bans of one
// kind: IPv6 addresses (a plain set) or /64s (an interval set).
func BenchmarkNFTRestore(b *testing.B) {
	testbed.Require(b, "ip", "nft")
	n := scaleN()
	l := Layout{Jails: []JailRules{sshJail}}
	all := importMix(2*n+254, time.Now().Add(time.Hour))[254:]
	for _, kind := range []string{"hosts6", "nets64"} {
		var bans []Ban
		for _, bn := range all {
			if (bn.Prefix.Bits() == 128) == (kind == "hosts6") {
				bans = append(bans, bn)
			}
		}
		b.Run(kind, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				h := testbed.NewHosts(b)
				be, err := New("nftables", Options{NetNS: h.Srv})
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := be.Setup(l, bans); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(t0).Seconds(), "restore-s")
				t0 = time.Now()
				if err := be.Setup(l, bans); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(t0).Seconds(), "restart-s")
				be.Close()
			}
		})
	}
}

// oldRemoveEnv is the nftables kernel env with backends that remove bans
// as on a kernel without DESTROYSETELEM.
type oldRemoveEnv struct{ *kernelEnv }

func (e oldRemoveEnv) backend(t *testing.T) Backend {
	b := e.kernelEnv.backend(t)
	b.(*nft).noDestroy = true
	return b
}

// TestNFTablesRemoveOld runs the behaviour table's cases that remove bans
// on nftables with the removal path of kernels older than 6.3.
func TestNFTablesRemoveOld(t *testing.T) {
	t.Parallel()
	removes := func(name string) bool {
		return strings.Contains(name, "remove") || strings.Contains(name, "replaces") || strings.Contains(name, "nested")
	}
	runCasesOf(t, func(t *testing.T) env { return oldRemoveEnv{newKernelEnv(t, "nftables")} }, removes)
}

// TestNFTMaskedSetsUpgrade: a table made before the masked sets existed
// holds /64s in the interval set; Setup moves them to the new masked set
// (an unban must not leave the old element banning), keeps the other
// prefixes where they are, and a removal then lifts the /64 for real.
func TestNFTMaskedSetsUpgrade(t *testing.T) {
	testbed.Require(t, "ip", "nft")
	h := testbed.NewHosts(t)
	old := `table inet jailkeeper {
	set wl4 { type ipv4_addr; flags interval; }
	set wl6 { type ipv6_addr; flags interval; }
	set ssh-4 { type ipv4_addr; flags timeout; }
	set ssh-n4 { type ipv4_addr; flags interval,timeout; }
	set ssh-6 { type ipv6_addr; flags timeout; }
	set ssh-n6 { type ipv6_addr; flags interval,timeout; elements = { 2001:db8:0:7::/64 timeout 1h, 2001:db8:1::/48 timeout 1h } }
	chain input { type filter hook input priority -10; policy accept; ip6 saddr @ssh-n6 drop; }
}
`
	cmd := h.InSrv("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(old)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s", err, out)
	}
	exp := time.Now().Add(time.Hour)
	p64, p48 := netip.MustParsePrefix("2001:db8:0:7::/64"), netip.MustParsePrefix("2001:db8:1::/48")
	bans := []Ban{{Jail: "ssh", Prefix: p64, Expires: exp}, {Jail: "ssh", Prefix: p48, Expires: exp}}
	b, err := New("nftables", Options{NetNS: h.Srv, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Setup(Layout{Jails: []JailRules{sshJail}}, bans); err != nil {
		t.Fatal(err)
	}
	list := func(set string) string {
		t.Helper()
		out, err := h.InSrv("nft", "list", "set", "inet", "jailkeeper", set).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list set %s: %v\n%s", set, err, out)
		}
		return string(out)
	}
	if n6 := list("ssh-n6"); strings.Contains(n6, "2001:db8:0:7::") || !strings.Contains(n6, "2001:db8:1::/48") {
		t.Errorf("after Setup, ssh-n6 should hold the /48 only:\n%s", n6)
	}
	if m := list("ssh-64"); !strings.Contains(m, "2001:db8:0:7::") {
		t.Errorf("after Setup, ssh-64 lacks the /64:\n%s", m)
	}
	if err := b.Remove(bans[:1]); err != nil {
		t.Fatal(err)
	}
	got, err := b.List()
	if err != nil || len(got) != 1 || got[0].Prefix != p48 {
		t.Errorf("after removing the /64, List = %v, %v; want the /48 alone", got, err)
	}
}

// BenchmarkNFTEncode measures encoding set elements the way the raw
// batches do (an IPv4 address with its timeout per element), per element.
func BenchmarkNFTEncode(b *testing.B) {
	buf := make([]byte, 0, nftElemsMax+64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if len(buf) > nftElemsMax {
			buf = buf[:0]
		}
		v := uint32(0x0a000001 + i)
		buf = appendSetElem(buf, nftRawElem{addr: netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), timeout: 3_600_000})
	}
}

// nftScaleSetup is an nftables backend in a test namespace, set up with
// scaleN bans of importMix; the benchmark's cleanup closes it.
func nftScaleSetup(b *testing.B) (Backend, Layout, []Ban) {
	testbed.Require(b, "ip", "nft")
	h := testbed.NewHosts(b)
	be, err := New("nftables", Options{NetNS: h.Srv})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	l := Layout{Jails: []JailRules{sshJail}}
	bans := importMix(scaleN(), time.Now().Add(time.Hour))
	if err := be.Setup(l, bans); err != nil {
		b.Fatal(err)
	}
	return be, l, bans
}

// BenchmarkNFTVerify measures one Verify (the watchdog's check) with
// scaleN bans of importMix in place: the pass over the bans, the layout's
// checks, and the sample looked up in each large set.
func BenchmarkNFTVerify(b *testing.B) {
	be, l, bans := nftScaleSetup(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if found, err := be.Verify(l, bans); err != nil || len(found) > 0 {
			b.Fatalf("Verify: %q, %v", found, err)
		}
	}
}

// BenchmarkNFTVerifyChanged measures the Verify after a Watcher heard
// another program change every set (or lost notifications): with
// scaleN bans of importMix in place, every large set filled again in full.
func BenchmarkNFTVerifyChanged(b *testing.B) {
	be, l, bans := nftScaleSetup(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.(*nft).noteDrift(nil, true)
		if found, err := be.Verify(l, bans); err != nil || len(found) == 0 {
			b.Fatalf("Verify: %q, %v", found, err)
		}
	}
}
