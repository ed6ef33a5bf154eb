package firewall

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestNFTRaw checks the raw element batches and lookups against the nft
// CLI in a namespace of the test's own: thousands of host elements over
// several messages and transactions, intervals, timeouts, permanent
// elements, lookups of present and absent elements, and errors.
func TestNFTRaw(t *testing.T) {
	testbed.Require(t, "ip", "nft")
	h := testbed.NewHosts(t)
	b, err := newNFTables(Options{NetNS: h.Srv})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Setup(Layout{Jails: []JailRules{{Name: "t"}}}, nil); err != nil {
		t.Fatal(err)
	}
	r := b.raw
	r.txMax = nftElemsMax + 4096 // one message per transaction: many transactions
	nft := func(args ...string) string {
		t.Helper()
		out, err := h.InSrv("nft", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("nft %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	var hosts []netip.Addr
	for i := range 6000 {
		hosts = append(hosts, netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	err = r.add("t-4", len(hosts), func(i int) nftRawElem {
		e := nftRawElem{addr: hosts[i], timeout: 3_600_000}
		if i == 0 {
			e.timeout = 0 // permanent
		}
		return e
	})
	if err != nil {
		t.Fatal(err)
	}
	out := nft("list", "set", "inet", nftTable, "t-4")
	if n := strings.Count(out, "10.1."); n != len(hosts) {
		t.Errorf("set t-4 holds %d elements, want %d", n, len(hosts))
	}
	for _, want := range []string{"10.1.0.0,", "10.1.23.111 timeout 1h expires 59m"} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list set lacks %q", want)
		}
	}
	if strings.Contains(out, "10.1.0.0 timeout") {
		t.Error("the permanent element has a timeout")
	}
	if _, ok, err := r.present("t-4", hosts); !ok || err != nil {
		t.Errorf("present(all added) = %v, %v", ok, err)
	}
	absent := netip.MustParseAddr("10.9.9.9")
	probe := append(hosts[:300:300], absent, hosts[300])
	if miss, ok, err := r.present("t-4", probe); ok || err != nil || miss != absent {
		t.Errorf("present(with %v) = %v, %v, %v", absent, miss, ok, err)
	}

	// Interval set: prefixes as start/end pairs, never split.
	var els []nftRawElem
	for i := range 3000 {
		p := netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/48", i+1))
		e, err := intervalElems(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		els = append(els, nftRawElem{addr: p.Addr(), timeout: 60_000}, nftRawElem{addr: netip.AddrFrom16([16]byte(e[1].Key)), end: true})
	}
	if err := r.add("t-n6", len(els), func(i int) nftRawElem { return els[i] }); err != nil {
		t.Fatal(err)
	}
	got, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6000+3000 {
		t.Errorf("List: %d bans, want 9000", len(got))
	}
	inside := []netip.Addr{netip.MustParseAddr("2001:db8:1::5"), netip.MustParseAddr("2001:db8:bb8:ffff::1")}
	if _, ok, err := r.present("t-n6", inside); !ok || err != nil {
		t.Errorf("present(inside intervals) = %v, %v", ok, err)
	}
	if _, ok, _ := r.present("t-n6", []netip.Addr{netip.MustParseAddr("2001:db8:bb9::1")}); ok {
		t.Error("an address outside every interval is present")
	}

	// Errors name the batch; the socket stays usable.
	if err := r.add("nosuch", 1, func(int) nftRawElem { return nftRawElem{addr: absent} }); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("adding to a missing set: %v", err)
	}
	if err := r.add("t-4", 1, func(int) nftRawElem { return nftRawElem{addr: netip.MustParseAddr("2001:db8::1")} }); err == nil {
		t.Error("adding an IPv6 key to an IPv4 set succeeded")
	}
	if _, ok, err := r.present("t-4", hosts[:5]); !ok || err != nil {
		t.Errorf("present after errors = %v, %v", ok, err)
	}
}
