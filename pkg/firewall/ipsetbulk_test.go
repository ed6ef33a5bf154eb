package firewall

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

func TestIpsetHashSize(t *testing.T) {
	for _, c := range []struct {
		n    int
		want uint32
	}{{0, 1024}, {4096, 1024}, {4097, 2048}, {100_000, 32768}, {1_000_000, 262144}, {1 << 30, 1 << 26}} {
		if got := ipsetHashSize(c.n); got != c.want {
			t.Errorf("ipsetHashSize(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

// TestIpsetBulk checks the raw ipset messages against the ipset CLI in a
// namespace of the test's own: create with hash size and maxelem, bulk
// adds of both families with CIDRs and timeouts, and the header count,
// which must leave out entries that timed out.
func TestIpsetBulk(t *testing.T) {
	testbed.Require(t, "ip", "ipset")
	h := testbed.NewHosts(t)
	ns, err := openNetNS(nsPath(h.Srv))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	b, err := newIpsetBulk(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	ipset := func(args ...string) string {
		t.Helper()
		out, err := h.InSrv("ipset", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ipset %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if _, err := b.count("jk-nosuch-4"); !isNotFound(err) {
		t.Errorf("count of a missing set: %v, want ENOENT", err)
	}

	hosts := setSpec{"jk-t-4", "hash:ip", false, true}
	if err := b.create(hosts, hosts.name, 100_000, ipsetMaxElem); err != nil {
		t.Fatal(err)
	}
	if err := b.create(hosts, hosts.name, 0, ipsetMaxElem); err == nil {
		t.Error("creating an existing set succeeded")
	}
	hdr := ipset("list", "-t", hosts.name)
	for _, want := range []string{"Type: hash:ip", "family inet ", "hashsize 32768", "maxelem 16777216", "timeout 0"} {
		if !strings.Contains(hdr, want) {
			t.Errorf("header lacks %q:\n%s", want, hdr)
		}
	}
	var els []ipsetElem
	for i := range 5000 { // several messages
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		els = append(els, ipsetElem{prefix: netip.PrefixFrom(a, 32), timeout: 3600, hasTimeout: true})
	}
	els = append(els, ipsetElem{prefix: netip.MustParsePrefix("10.2.0.1/32"), timeout: 1, hasTimeout: true},
		ipsetElem{prefix: netip.MustParsePrefix("10.2.0.2/32"), hasTimeout: true}) // permanent
	if err := b.add(hosts.name, els); err != nil {
		t.Fatal(err)
	}
	if err := b.add(hosts.name, els[:10]); err != nil { // present elements: replaced
		t.Fatalf("re-adding: %v", err)
	}
	if n, err := b.count(hosts.name); err != nil || n != 5002 {
		t.Errorf("count = %d, %v; want 5002", n, err)
	}
	out := ipset("list", hosts.name)
	for _, want := range []string{"10.1.19.135 timeout 3", "10.2.0.2 timeout 0", "Number of entries: 5002"} {
		if !strings.Contains(out, want) {
			t.Errorf("ipset list lacks %q", want)
		}
	}
	time.Sleep(2500 * time.Millisecond)
	if n, err := b.count(hosts.name); err != nil || n != 5001 {
		t.Errorf("count after one entry timed out = %d, %v; want 5001", n, err)
	}

	nets := setSpec{"jk-t-n6", "hash:net", true, false}
	if err := b.create(nets, nets.name, 0, 1000); err != nil {
		t.Fatal(err)
	}
	if hdr := ipset("list", "-t", nets.name); !strings.Contains(hdr, "family inet6 hashsize 1024 maxelem 1000") {
		t.Errorf("header:\n%s", hdr)
	}
	var want []string
	els = nil
	for i := range 2000 {
		p := netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/48", i+1))
		els = append(els, ipsetElem{prefix: p})
		want = append(want, p.String())
	}
	if err := b.add(nets.name, els); err == nil {
		t.Error("adding 2000 elements to a set of maxelem 1000 succeeded")
	}
	if err := b.add(nets.name, els[:1000]); err != nil {
		t.Fatal(err)
	}
	out = ipset("list", nets.name)
	for _, p := range want[:1000] {
		if !strings.Contains(out, "\n"+p+"\n") {
			t.Fatalf("ipset list lacks %s:\n%.500s", p, out)
		}
	}
	if n, err := b.count(nets.name); err != nil || n != 1000 {
		t.Errorf("count = %d, %v; want 1000", n, err)
	}

	// Bulk removal: several messages, elements the set does not hold
	// (the 1000 refused above) are no error.
	if err := b.del(nets.name, els[500:]); err != nil {
		t.Fatalf("removing: %v", err)
	}
	if n, err := b.count(nets.name); err != nil || n != 500 {
		t.Errorf("count after removing 500 = %d, %v; want 500", n, err)
	}
	out = ipset("list", nets.name)
	if !strings.Contains(out, "\n"+want[499]+"\n") || strings.Contains(out, "\n"+want[500]+"\n") {
		t.Errorf("after removing from the 501st on, ipset list holds:\n%.500s", out)
	}
	hostEls := make([]ipsetElem, 0, 5000)
	for i := range 5000 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		hostEls = append(hostEls, ipsetElem{prefix: netip.PrefixFrom(a, 32)})
	}
	if err := b.del(hosts.name, hostEls); err != nil {
		t.Fatalf("removing hosts: %v", err)
	}
	if n, err := b.count(hosts.name); err != nil || n != 1 {
		t.Errorf("count after removing 5000 = %d, %v; want 1 (10.2.0.2)", n, err)
	}
	if err := b.del("jk-nosuch-4", hostEls[:1]); !isNotFound(err) {
		t.Errorf("removing from a missing set: %v, want ENOENT", err)
	}
}

// TestIpsetBulkRefusedElement: an element the kernel refuses (ipset
// refuses 0.0.0.0 in a hash set) keeps none of the others of its message
// out, and the error names it.
func TestIpsetBulkRefusedElement(t *testing.T) {
	testbed.Require(t, "ip", "ipset")
	h := testbed.NewHosts(t)
	ns, err := openNetNS(nsPath(h.Srv))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	b, err := newIpsetBulk(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	hosts := setSpec{"jk-r-4", "hash:ip", false, true}
	if err := b.create(hosts, hosts.name, 0, ipsetMaxElem); err != nil {
		t.Fatal(err)
	}
	var els []ipsetElem
	for i := range 100 {
		if i == 10 {
			els = append(els, ipsetElem{prefix: netip.MustParsePrefix("0.0.0.0/32"), hasTimeout: true})
		}
		els = append(els, ipsetElem{prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32), timeout: 600, hasTimeout: true})
	}
	err = b.add(hosts.name, els)
	if err == nil || !strings.Contains(err.Error(), "refused 0.0.0.0 (the other elements were added)") {
		t.Errorf("add = %v, want an error naming 0.0.0.0", err)
	}
	if n, err := b.count(hosts.name); err != nil || n != 100 {
		t.Errorf("count = %d, %v; want the 100 good elements", n, err)
	}
}
