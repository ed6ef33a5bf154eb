package firewall

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Names and numbers of the nftables layout.
const (
	nftTable    = "jailkeeper" // table inet jailkeeper
	nftChain    = "input"      // base chain, hook input
	nftPriority = -10          // before the usual filter chains (priority 0)
	// nftChunk is the most elements one message carries: google/nftables
	// v0.3.0 silently truncates much larger element lists (LIBS.md §4.3).
	nftChunk = 1000
	nftWL4   = "wl4"
	nftWL6   = "wl6"
)

// nftListMax is the largest set Setup and Verify read back: the kernel's
// set dump restarts from the first element for every message, so reading
// n elements costs O(n²) (2.3 s for 100k measured). Larger sets are
// checked by looking up a sample of their bans (a variable for tests).
var nftListMax = 20_000

// nftKind is what a ban set holds. Each jail has one set of each kind per
// family.
type nftKind uint8

const (
	// nftHosts: host addresses, in a hash set (<jail>-4, -6).
	nftHosts nftKind = iota
	// nftMasked: prefixes of the family's common length (nftMaskBits:
	// IPv4 /24, IPv6 /64, the default IPv6 grouping), as their first
	// address in a hash set that the rule looks the packet's source up
	// in after masking it (<jail>-24, -64). An interval set (the kernel's
	// rbtree) rebuilds its lookup array on every commit, so each
	// transaction costs as much as the set is large: 500,000 /64s took
	// 8.5 s to load into one, and 1.2 s as host-like keys.
	nftMasked
	// nftNets: prefixes of every other length, in an interval set
	// (<jail>-n4, -n6).
	nftNets
	nftKinds
)

// nftMaskBits is the prefix length of a family's nftMasked set.
func nftMaskBits(v6 bool) int {
	if v6 {
		return 64
	}
	return 24
}

// nftKindOf returns the kind of set a normalised prefix belongs in.
func nftKindOf(p netip.Prefix) nftKind {
	switch {
	case isHost(p):
		return nftHosts
	case p.Bits() == nftMaskBits(p.Addr().Is6()):
		return nftMasked
	default:
		return nftNets
	}
}

// nftSetName returns a jail's set for one family, for host addresses (a
// plain set) or prefixes of other lengths than nftMaskBits (an interval
// set): <jail>-4, -n4, -6, -n6.
func nftSetName(jail string, v6, net bool) string {
	return strings.TrimPrefix(banSetName(jail, v6, net), setPrefix)
}

// nftBanSet returns a jail's set of kind k for one family.
func nftBanSet(jail string, v6 bool, k nftKind) string {
	if k == nftMasked {
		return jail + "-" + strconv.Itoa(nftMaskBits(v6))
	}
	return nftSetName(jail, v6, k == nftNets)
}

// parseNFTSetName returns the jail, family and kind of a ban set's name.
func parseNFTSetName(name string) (jail string, v6 bool, k nftKind, ok bool) {
	for _, v6 := range []bool{false, true} {
		if j, found := strings.CutSuffix(name, "-"+strconv.Itoa(nftMaskBits(v6))); found && CheckJailName(j) == nil {
			return j, v6, nftMasked, true
		}
	}
	j, found := parseBanSetName(setPrefix + name)
	if !found {
		return "", false, 0, false
	}
	k = nftHosts
	if strings.HasSuffix(name, "-n4") || strings.HasSuffix(name, "-n6") {
		k = nftNets
	}
	return j, strings.HasSuffix(name, "6"), k, true
}

// nftSetFor returns the set a normalised ban belongs in.
func nftSetFor(b Ban) string {
	return nftBanSet(b.Jail, b.Prefix.Addr().Is6(), nftKindOf(b.Prefix))
}

// nftSetIDs numbers the ban sets of a layout (jail, family, kind), so that
// per-set tallies over a million bans are slice indexing.
type nftSetIDs struct {
	jails map[string]int
	names []string
	kinds []nftKind
	last  string
	lastI int
}

func newNFTSetIDs(l Layout) *nftSetIDs {
	x := &nftSetIDs{jails: make(map[string]int, len(l.Jails)), lastI: -1}
	for i, j := range l.Jails {
		x.jails[j.Name] = i
		for _, v6 := range []bool{false, true} {
			for k := range nftKinds {
				x.names = append(x.names, nftBanSet(j.Name, v6, k))
				x.kinds = append(x.kinds, k)
			}
		}
	}
	return x
}

// n is the number of sets.
func (x *nftSetIDs) n() int { return len(x.names) }

// id returns the set of a prepared ban (its jail is in the layout).
func (x *nftSetIDs) id(b Ban) int {
	if b.Jail != x.last || x.lastI < 0 {
		x.last, x.lastI = b.Jail, x.jails[b.Jail]
	}
	i := 2 * int(nftKinds) * x.lastI
	if b.Prefix.Addr().Is6() {
		i += int(nftKinds)
	}
	return i + int(nftKindOf(b.Prefix))
}

// idOf returns the set called name, or -1.
func (x *nftSetIDs) idOf(name string) int { return slices.Index(x.names, name) }

// nft is the nftables backend: one table inet jailkeeper, one base chain
// on the input hook at priority -10, and per jail and family three sets
// with timeouts (nftKind: host addresses, prefixes of the common length,
// other prefixes).
type nft struct {
	opts   Options
	ns     netns.NsHandle
	c      *nftables.Conn
	raw    *nftRaw     // large element batches and lookups
	killer *connKiller // only with KillConnections
	table  *nftables.Table
	layout Layout
	now    func() time.Time
	// netLens holds, per interval set, every prefix length this backend
	// has put in it (it only grows): while a call adds prefixes of the
	// one length the set has ever held, none can nest in another, and
	// addNets need not read the set back (a set dump costs O(n²) in the
	// kernel: 100,000 /64s took minutes to import a 50,000 at a time).
	netLens map[string]map[int]bool
	// noDestroy: the kernel refused DESTROYSETELEM once (older than 6.3).
	noDestroy bool
	// changed names the sets another program changed (changedAll: any
	// set) since the last Verify that succeeded, told by a Watcher: the
	// next Verify checks them in full however large they are.
	changed    map[string]bool
	changedAll bool
	// exact: the sets hold exactly what the backend's calls put there
	// since its last full fill (Setup): every write since succeeded, and
	// no other program's change was noted (Stamp).
	exact bool
}

var _ Backend = (*nft)(nil)

// newNFTables opens a lasting netlink connection in opts.NetNS (or the
// current namespace).
func newNFTables(opts Options) (*nft, error) {
	b := &nft{opts: opts, now: time.Now, table: &nftables.Table{Name: nftTable, Family: nftables.TableFamilyINet}}
	var err error
	if b.ns, err = openNetNS(nsPath(opts.NetNS)); err != nil {
		return nil, err
	}
	copts := []nftables.ConnOption{nftables.AsLasting()}
	if b.ns != netns.None() {
		copts = append(copts, nftables.WithNetNSFd(int(b.ns)))
	}
	if b.c, err = nftables.New(copts...); err != nil {
		b.ns.Close()
		return nil, fmt.Errorf("opening nftables netlink connection: %w", err)
	}
	if b.raw, err = newNFTRaw(b.ns); err != nil {
		b.Close()
		return nil, err
	}
	if opts.KillConnections {
		if b.killer, err = newConnKiller(b.ns, opts); err != nil {
			b.Close()
			return nil, fmt.Errorf("opening conntrack netlink socket: %w", err)
		}
	}
	return b, nil
}

func (b *nft) Name() string { return "nftables" }

// nftSpec describes one named set of the layout.
type nftSpec struct {
	name     string
	v6       bool
	interval bool
	timeout  bool
}

// nftSpecOf returns the spec of a jail's ban set.
func nftSpecOf(jail string, v6 bool, k nftKind) nftSpec {
	return nftSpec{nftBanSet(jail, v6, k), v6, k == nftNets, true}
}

func (s nftSpec) set(t *nftables.Table) *nftables.Set {
	kt := nftables.TypeIPAddr
	if s.v6 {
		kt = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: t, Name: s.name, KeyType: kt, Interval: s.interval, HasTimeout: s.timeout}
}

func nftSets(l Layout) []nftSpec {
	specs := []nftSpec{{nftWL4, false, true, false}, {nftWL6, true, true, false}}
	for _, j := range l.Jails {
		for _, v6 := range []bool{false, true} {
			for k := range nftKinds {
				specs = append(specs, nftSpecOf(j.Name, v6, k))
			}
		}
	}
	return specs
}

// nftRule is one rule of the chain with the tag stored in its user data,
// by which Verify recognises it.
type nftRule struct {
	tag   string
	exprs func(sets map[string]*nftables.Set, anon func([]uint16) *nftables.Set) []expr.Any
}

func nfproto(v6 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if v6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// saddrIn matches a packet whose source address is in s; with bits > 0,
// whose source's first bits bits, the rest zeroed, are.
func saddrIn(v6 bool, s *nftables.Set, bits int) []expr.Any {
	off, n := uint32(12), uint32(4)
	if v6 {
		off, n = 8, 16
	}
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
	if bits > 0 {
		mask := make([]byte, n)
		for i := 0; i < bits; i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)})
	}
	return append(e, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID})
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// nftRules returns the chain's rules in order: whitelist, neighbour
// discovery, then every jail's sets.
func nftRules(l Layout) []nftRule {
	wv := "return"
	if l.WhitelistAccept {
		wv = "accept"
	}
	verdict := func(kind string) expr.Any {
		switch kind {
		case "accept":
			return &expr.Verdict{Kind: expr.VerdictAccept}
		case "return":
			return &expr.Verdict{Kind: expr.VerdictReturn}
		case "drop":
			return &expr.Verdict{Kind: expr.VerdictDrop}
		case "tcp-reset":
			return &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}
		default: // port-unreachable, as ICMP or ICMPv6 by family
			return &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}
		}
	}
	var rules []nftRule
	for _, v6 := range []bool{false, true} {
		wl := nftWL4
		if v6 {
			wl = nftWL6
		}
		rules = append(rules, nftRule{"jk " + wl + " " + wv, func(s map[string]*nftables.Set, _ func([]uint16) *nftables.Set) []expr.Any {
			return slices.Concat(nfproto(v6), saddrIn(v6, s[wl], 0), []expr.Any{verdict(wv)})
		}})
	}
	// Neighbour discovery passes even from banned sources (see iptRules).
	for _, typ := range []byte{135, 136} {
		rules = append(rules, nftRule{"jk nd " + strconv.Itoa(int(typ)), func(map[string]*nftables.Set, func([]uint16) *nftables.Set) []expr.Any {
			return slices.Concat(nfproto(true), l4proto(unix.IPPROTO_ICMPV6), []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{typ}},
				verdict("return"),
			})
		}})
	}
	for _, j := range l.Jails {
		var protos []string
		switch j.proto() {
		case ProtoTCP:
			protos = []string{"tcp"}
		case ProtoUDP:
			protos = []string{"udp"}
		case ProtoAll:
			if len(j.Ports) > 0 {
				protos = []string{"tcp", "udp"}
			} else if j.action() == ActionDrop {
				protos = []string{""}
			} else {
				protos = []string{"tcp", ""}
			}
		}
		ports := make([]string, len(j.Ports))
		for i, p := range j.Ports {
			ports[i] = strconv.Itoa(int(p))
		}
		for _, v6 := range []bool{false, true} {
			for kind := range nftKinds {
				set := nftBanSet(j.Name, v6, kind)
				bits := 0
				if kind == nftMasked {
					bits = nftMaskBits(v6)
				}
				for _, p := range protos {
					v := "drop"
					if j.action() == ActionReject {
						v = "port-unreachable"
						if p == "tcp" {
							v = "tcp-reset"
						}
					}
					tag := fmt.Sprintf("jk %s %s ports=%s %s", set, p, strings.Join(ports, ","), v)
					rules = append(rules, nftRule{tag, func(s map[string]*nftables.Set, anon func([]uint16) *nftables.Set) []expr.Any {
						e := slices.Concat(nfproto(v6), saddrIn(v6, s[set], bits))
						switch p {
						case "tcp":
							e = append(e, l4proto(unix.IPPROTO_TCP)...)
						case "udp":
							e = append(e, l4proto(unix.IPPROTO_UDP)...)
						}
						if len(j.Ports) > 0 {
							e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
							if len(j.Ports) == 1 {
								e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(j.Ports[0])})
							} else {
								as := anon(j.Ports)
								e = append(e, &expr.Lookup{SourceRegister: 1, SetName: as.Name, SetID: as.ID})
							}
						}
						return append(e, verdict(v))
					}})
				}
			}
		}
	}
	return rules
}

// txSetIDs numbers the sets a transaction creates (NFTA_SET_ID, by which
// its rules refer to an anonymous set). google/nftables numbers a set
// without one from a package-level counter guarded only by each Conn's
// own lock, a data race between two backends (two goroutines, two Conns).
var txSetIDs atomic.Uint32

// nftSetID is the next set ID, never 0 (0 asks the library for one, and
// names an anonymous set "__set%d" for the kernel to number: a set given
// an ID needs that name from its maker).
func nftSetID() uint32 {
	for {
		if id := txSetIDs.Add(1); id != 0 {
			return id
		}
	}
}

// queueLayout queues, for one transaction, the table, the sets, the base
// chain with exactly the layout's rules (flushed and refilled: atomic) and
// the whitelist's exact contents.
func (b *nft) queueLayout(l Layout) error {
	t := b.c.AddTable(b.table)
	sets := map[string]*nftables.Set{}
	for _, sp := range nftSets(l) {
		s := sp.set(t)
		s.ID = nftSetID()
		if err := b.c.AddSet(s, nil); err != nil {
			return fmt.Errorf("queueing set %s: %w", sp.name, err)
		}
		sets[sp.name] = s
	}
	accept := nftables.ChainPolicyAccept
	ch := b.c.AddChain(&nftables.Chain{
		Name: nftChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(nftPriority), Policy: &accept,
	})
	b.c.FlushChain(ch)
	var anonErr error
	anon := func(ports []uint16) *nftables.Set {
		s := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeInetService, ID: nftSetID(), Name: "__set%d"}
		els := make([]nftables.SetElement, len(ports))
		for i, p := range ports {
			els[i] = nftables.SetElement{Key: be16(p)}
		}
		if err := b.c.AddSet(s, els); err != nil {
			anonErr = err
		}
		return s
	}
	for _, r := range nftRules(l) {
		b.c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs(sets, anon), UserData: []byte(r.tag)})
	}
	if anonErr != nil {
		return fmt.Errorf("queueing port set: %w", anonErr)
	}
	for _, name := range []string{nftWL4, nftWL6} {
		s := sets[name]
		b.c.FlushSet(s)
		var els []nftables.SetElement
		for _, p := range mergeCovered(l.Whitelist) {
			if p.Addr().Is6() == (name == nftWL6) {
				e, err := intervalElems(p, 0)
				if err != nil {
					return fmt.Errorf("whitelist: %w", err)
				}
				els = append(els, e...)
			}
		}
		if len(els) > 0 {
			if err := b.c.SetAddElements(s, els); err != nil {
				return fmt.Errorf("queueing whitelist: %w", err)
			}
		}
	}
	return nil
}

// mergeCovered drops prefixes contained in another one of the list: an
// interval set rejects nested intervals.
func mergeCovered(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for i, p := range ps {
		p = p.Masked()
		covered := false
		for k, q := range ps {
			q = q.Masked()
			if k != i && q.Bits() <= p.Bits() && q.Contains(p.Addr()) && (q.Bits() < p.Bits() || k < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if a.Is4() {
		v := binary.BigEndian.Uint32(a.AsSlice())
		v |= ^uint32(0) >> p.Bits()
		return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, v)))
	}
	b := a.As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

// intervalElems returns the start and end elements of p in an interval
// set; the start carries the timeout.
func intervalElems(p netip.Prefix, timeout time.Duration) ([]nftables.SetElement, error) {
	end := lastAddr(p).Next()
	if !end.IsValid() {
		return nil, fmt.Errorf("%v reaches the end of the address space, which the nftables backend cannot store", p)
	}
	return []nftables.SetElement{
		{Key: p.Masked().Addr().AsSlice(), Timeout: timeout},
		{Key: end.AsSlice(), IntervalEnd: true},
	}, nil
}

// nftElem is a set element read back: a prefix and its time left.
type nftElem struct {
	p    netip.Prefix
	left time.Duration // 0 = permanent
}

// readElems turns set elements into prefixes: start/end pairs for
// interval sets, plain keys for hash sets, as prefixes of bits (0: host
// addresses).
func readElems(els []nftables.SetElement, interval bool, bits int) []nftElem {
	var out []nftElem
	if !interval {
		for _, e := range els {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				l := bits
				if l == 0 {
					l = a.BitLen()
				}
				out = append(out, nftElem{netip.PrefixFrom(a, l), e.Expires})
			}
		}
		return out
	}
	slices.SortFunc(els, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		if a.IntervalEnd != b.IntervalEnd { // an end sorts before a start at the same key
			if a.IntervalEnd {
				return -1
			}
			return 1
		}
		return 0
	})
	for i, e := range els {
		if e.IntervalEnd {
			continue
		}
		start, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		var end netip.Addr
		if i+1 < len(els) && els[i+1].IntervalEnd {
			end, _ = netip.AddrFromSlice(els[i+1].Key)
		}
		for bits := start.BitLen(); bits >= 0; bits-- {
			p := netip.PrefixFrom(start, bits)
			if p.Masked().Addr() != start {
				break
			}
			if lastAddr(p).Next() == end {
				out = append(out, nftElem{p, e.Expires})
				break
			}
		}
	}
	return out
}

// addElems adds elements (plain keys, or interval starts each followed
// by its end) to set s in large transactions.
func (b *nft) addElems(s *nftables.Set, els []nftables.SetElement) error {
	return b.raw.add(s.Name, len(els), func(i int) nftRawElem {
		a, _ := netip.AddrFromSlice(els[i].Key)
		return nftRawElem{addr: a, timeout: uint64(els[i].Timeout.Milliseconds()), end: els[i].IntervalEnd}
	})
}

// nftTimeout is the element timeout for a ban expiring at exp (0 =
// permanent), false if it has expired.
func nftTimeout(exp, now time.Time) (time.Duration, bool) {
	if exp.IsZero() {
		return 0, true
	}
	d := exp.Sub(now)
	if d <= 0 {
		return 0, false
	}
	return d.Round(time.Millisecond) + time.Millisecond, true
}

// Setup builds table, sets, chain and whitelist in one transaction, then
// loads the bans (1000 elements per transaction) and removes elements the
// kernel holds beyond them. Elements are only added or refreshed before
// the extras go, so a restart never opens a window.
func (b *nft) Setup(l Layout, bans []Ban) error {
	b.exact = false
	if err := checkLayout(l); err != nil {
		return fmt.Errorf("setting up nftables layout: %w", err)
	}
	now := b.now()
	in, perr := prepare(bans, jailIndex(l), now)
	if perr != nil {
		b.opts.logf("firewall nftables: bans left out of the layout: %v", perr)
	}
	_, terr := b.c.ListTableOfFamily(nftTable, nftables.TableFamilyINet)
	existed := terr == nil
	moved, err := b.masksToCreate(l, existed)
	if err != nil {
		return fmt.Errorf("setting up nftables layout: %w", err)
	}
	if err := b.queueLayout(l); err != nil {
		return fmt.Errorf("setting up nftables layout: %w", err)
	}
	if err := b.c.Flush(); err != nil {
		return fmt.Errorf("setting up nftables layout: %w", err)
	}
	b.layout = l
	if err := b.add(in, now, existed); err != nil {
		return fmt.Errorf("setting up nftables layout: loading %d bans: %w", len(in), err)
	}
	if err := b.moveMasked(moved, in); err != nil {
		return fmt.Errorf("setting up nftables layout: %w", err)
	}
	if existed && len(in) > nftListMax {
		b.opts.logf("firewall nftables: %d bans loaded; not reading the sets back for stale bans (too large), they expire by their timeouts", len(in))
	}
	if existed && len(in) <= nftListMax {
		want := map[banKey]bool{}
		for _, bn := range in {
			want[keyOf(bn)] = true
		}
		have, err := b.List()
		if err != nil {
			return fmt.Errorf("setting up nftables layout: %w", err)
		}
		var extra []Ban
		for _, bn := range have {
			if !want[keyOf(bn)] {
				extra = append(extra, bn)
			}
		}
		if err := b.Remove(extra); err != nil {
			return fmt.Errorf("setting up nftables layout: removing %d stale bans: %w", len(extra), err)
		}
		// Sets of jails no longer configured, unreferenced since the
		// chain was rebuilt.
		sets, err := b.c.GetSets(b.table)
		if err != nil {
			return fmt.Errorf("setting up nftables layout: listing sets: %w", err)
		}
		for _, s := range sets {
			if !s.Anonymous && !slices.ContainsFunc(nftSets(l), func(sp nftSpec) bool { return sp.name == s.Name }) {
				b.c.DelSet(s)
			}
		}
		if err := b.c.Flush(); err != nil {
			return fmt.Errorf("setting up nftables layout: deleting unused sets: %w", err)
		}
	}
	b.opts.logf("firewall nftables: layout set up for %d jails, %d bans loaded", len(l.Jails), len(in))
	b.exact = true
	return nil
}

// masksToCreate returns the nftMasked sets of l that a table made before
// they existed lacks while it has the interval set beside them: that set
// holds the bans now kept in the masked one.
func (b *nft) masksToCreate(l Layout, existed bool) ([]string, error) {
	if !existed {
		return nil, nil
	}
	sets, err := b.c.GetSets(b.table)
	if err != nil {
		return nil, fmt.Errorf("listing sets: %w", err)
	}
	have := map[string]bool{}
	for _, s := range sets {
		have[s.Name] = true
	}
	var out []string
	for _, j := range l.Jails {
		for _, v6 := range []bool{false, true} {
			if m := nftBanSet(j.Name, v6, nftMasked); !have[m] && have[nftBanSet(j.Name, v6, nftNets)] {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// moveMasked removes from the interval sets the prefixes of in that now
// live in the masked sets of masks (just created and filled): otherwise
// an unban would leave the old element banning until its timeout.
func (b *nft) moveMasked(masks []string, in []Ban) error {
	for _, m := range masks {
		jail, v6, _, _ := parseNFTSetName(m)
		var els []nftRawElem
		for _, bn := range in {
			if bn.Jail == jail && bn.Prefix.Addr().Is6() == v6 && nftKindOf(bn.Prefix) == nftMasked {
				els = append(els, nftRawElem{addr: bn.Prefix.Addr()}, nftRawElem{addr: lastAddr(bn.Prefix).Next(), end: true})
			}
		}
		if len(els) == 0 {
			continue
		}
		nets := nftBanSet(jail, v6, nftNets)
		if b.noDestroy {
			b.opts.logf("firewall nftables: %d prefixes moved to set %s stay in %s until their timeouts (the kernel has no DESTROYSETELEM)", len(els)/2, m, nets)
			continue
		}
		err := b.raw.destroy(nets, len(els), func(i int) nftRawElem { return els[i] })
		if errors.Is(err, unix.EINVAL) {
			b.noDestroy = true
			b.opts.logf("firewall nftables: %d prefixes moved to set %s stay in %s until their timeouts (the kernel has no DESTROYSETELEM)", len(els)/2, m, nets)
			continue
		}
		if err != nil {
			return fmt.Errorf("moving %d prefixes from set %s to %s: %w", len(els)/2, nets, m, err)
		}
		b.opts.logf("firewall nftables: %d prefixes moved from set %s to %s", len(els)/2, nets, m)
	}
	return nil
}

// Add puts each ban into its set with a timeout until it expires; a present
// element gets the new timeout.
func (b *nft) Add(bans []Ban) error {
	now := b.now()
	in, perr := prepare(bans, jailIndex(b.layout), now)
	if err := b.add(in, now, true); err != nil {
		b.exact = false
		return errors.Join(perr, err)
	}
	if b.killer != nil {
		b.killer.kill(in)
	}
	return perr
}

// add loads prepared bans. Host addresses and prefixes of nftMaskBits go
// to the hash sets in large transactions. Other prefixes go to the
// interval sets, which reject nested intervals: a prefix inside a wider
// one already banned is skipped (the wider one covers it; Verify adds it
// should the wider one expire first), and a prefix containing narrower
// ones replaces them in the same transaction. checkNested=false skips
// reading the sets (they are known to be empty).
func (b *nft) add(in []Ban, now time.Time, checkNested bool) error {
	keyed := map[string][]int32{} // indices into in, by hash set
	nets := map[string][]Ban{}
	for i, bn := range in {
		if !bn.Expires.IsZero() && !bn.Expires.After(now) {
			continue
		}
		name := nftSetFor(bn)
		if nftKindOf(bn.Prefix) == nftNets {
			nets[name] = append(nets[name], bn)
		} else {
			keyed[name] = append(keyed[name], int32(i))
		}
	}
	for name, idx := range keyed {
		if err := b.addKeyed(name, in, idx, now); err != nil {
			return fmt.Errorf("adding %d elements to set %s: %w", len(idx), name, err)
		}
	}
	for name, bs := range nets {
		var err error
		for try := 0; try < 2; try++ { // an element may expire between read and delete
			if err = b.addNets(name, bs, now, checkNested); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("adding %d prefixes to set %s: %w", len(bs), name, err)
		}
	}
	return nil
}

// addKeyed adds the bans in[i] for i in idx (hosts, or prefixes of
// nftMaskBits as their first address) to the hash set name, encoded as it
// goes (a million google/nftables SetElements would cost more than the
// kernel's work).
func (b *nft) addKeyed(name string, in []Ban, idx []int32, now time.Time) error {
	return b.raw.add(name, len(idx), func(i int) nftRawElem {
		bn := in[idx[i]]
		to, _ := nftTimeout(bn.Expires, now) // expired bans were left out
		return nftRawElem{addr: bn.Prefix.Addr(), timeout: uint64(to.Milliseconds())}
	})
}

// oneLength reports whether every ban of bs has the same prefix length
// and seen holds no other.
func oneLength(seen map[int]bool, bs []Ban) bool {
	l := bs[0].Prefix.Bits()
	for _, bn := range bs {
		if bn.Prefix.Bits() != l {
			return false
		}
	}
	for s := range seen {
		if s != l {
			return false
		}
	}
	return true
}

func (b *nft) addNets(name string, bs []Ban, now time.Time, checkNested bool) error {
	s := nftSpec{name: name, v6: bs[0].Prefix.Addr().Is6(), interval: true, timeout: true}.set(b.table)
	state := map[netip.Prefix]bool{} // true = present in the kernel
	lens := map[int]int{}            // prefix length → how many in state
	if b.netLens == nil {
		b.netLens = map[string]map[int]bool{}
	}
	seen := b.netLens[name]
	if seen == nil {
		seen = map[int]bool{}
		b.netLens[name] = seen
	}
	if checkNested && oneLength(seen, bs) {
		checkNested = false
	}
	for _, bn := range bs {
		seen[bn.Prefix.Bits()] = true
	}
	if checkNested {
		els, err := b.c.GetSetElements(s)
		if err != nil {
			return fmt.Errorf("reading set %s: %w", name, err)
		}
		for _, e := range readElems(els, true, 0) {
			if _, ok := state[e.p]; !ok {
				lens[e.p.Bits()]++
			}
			state[e.p] = true
		}
	}
	slices.SortFunc(bs, func(a, b Ban) int { return a.Prefix.Bits() - b.Prefix.Bits() }) // wider first
	var adds, dels []nftables.SetElement
	// Nesting is looked up per prefix length present, not by a scan of
	// state per ban: 100,000 /64s took 25 s to import and over 20 s to
	// restore with the scans.
	for _, bn := range bs {
		p := bn.Prefix
		covered := false
		for l, n := range lens {
			if n == 0 || l >= p.Bits() {
				continue
			}
			if q, err := p.Addr().Prefix(l); err == nil {
				if _, ok := state[q]; ok {
					covered = true
					b.opts.logf("firewall nftables: %v in jail %s is covered by banned %v", p, bn.Jail, q)
					break
				}
			}
		}
		if covered {
			continue
		}
		longer := false
		for l, n := range lens {
			longer = longer || (n > 0 && l > p.Bits())
		}
		if longer {
			for q, present := range state {
				if q.Bits() > p.Bits() && p.Contains(q.Addr()) {
					if present {
						e, _ := intervalElems(q, 0)
						e[0].Timeout = 0
						dels = append(dels, e...)
					}
					delete(state, q)
					lens[q.Bits()]--
				}
			}
		}
		to, _ := nftTimeout(bn.Expires, now)
		e, err := intervalElems(p, to)
		if err != nil {
			return err
		}
		adds = append(adds, e...)
		if _, ok := state[p]; !ok {
			state[p] = false
			lens[p.Bits()]++
		}
	}
	if len(dels) > 0 {
		// Deletes and the first adds in one transaction: no window.
		if err := b.c.SetDeleteElements(s, dels); err != nil {
			return err
		}
	}
	if len(adds) == 0 {
		if len(dels) > 0 {
			return b.c.Flush()
		}
		return nil
	}
	first := adds[:min(len(adds), nftChunk)]
	if err := b.c.SetAddElements(s, first); err != nil {
		return err
	}
	if err := b.c.Flush(); err != nil {
		return err
	}
	return b.addElems(s, adds[len(first):])
}

// Remove deletes the bans. With NFT_MSG_DESTROYSETELEM (Linux 6.3), which
// skips elements the kernel no longer holds (expired, or removed by
// someone else), they go per set in large transactions, as add sends
// them. Otherwise (removeOld) they go nftChunk per transaction, and a ban
// the kernel no longer holds (ENOENT) undoes its whole transaction.
func (b *nft) Remove(bans []Ban) (err error) {
	defer func() {
		if err != nil {
			b.exact = false
		}
	}()
	if b.noDestroy {
		return b.removeOld(bans)
	}
	bySet := map[string][]nftRawElem{}
	for _, bn := range bans {
		n, err := normalize(bn)
		if err != nil {
			return err
		}
		name := nftSetFor(n)
		if nftKindOf(n.Prefix) != nftNets {
			bySet[name] = append(bySet[name], nftRawElem{addr: n.Prefix.Addr()})
			continue
		}
		end := lastAddr(n.Prefix).Next()
		if !end.IsValid() {
			return fmt.Errorf("%v reaches the end of the address space, which the nftables backend cannot store", n.Prefix)
		}
		bySet[name] = append(bySet[name], nftRawElem{addr: n.Prefix.Addr()}, nftRawElem{addr: end, end: true})
	}
	for name, els := range bySet {
		err := b.raw.destroy(name, len(els), func(i int) nftRawElem { return els[i] })
		if errors.Is(err, unix.EINVAL) && !b.noDestroy {
			// A kernel without DESTROYSETELEM: the old way, for good.
			b.noDestroy = true
			b.opts.logf("firewall nftables: the kernel refuses DESTROYSETELEM (%v); removing bans 1,000 per transaction", err)
			return b.removeOld(bans)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// removeOld deletes the bans, nftChunk per transaction. A ban the kernel
// no longer holds (ENOENT) undoes its whole transaction: the chunk is
// then deleted one ban per transaction, skipping bans whose time is up,
// which the kernel drops by their own timeouts (at most the time their
// batch took to load after it). One transaction per ban took 150 s for
// an unban of 100,000.
func (b *nft) removeOld(bans []Ban) error {
	type del struct {
		p    netip.Prefix
		name string
		set  *nftables.Set
		els  []nftables.SetElement
		over bool // expired: the kernel's timeout drops it
	}
	now := b.now()
	dels := make([]del, 0, len(bans))
	for _, bn := range bans {
		n, err := normalize(bn)
		if err != nil {
			return err
		}
		kind := nftKindOf(n.Prefix)
		sp := nftSpecOf(n.Jail, n.Prefix.Addr().Is6(), kind)
		d := del{p: n.Prefix, name: sp.name, set: sp.set(b.table), over: !n.Expires.IsZero() && !n.Expires.After(now)}
		if kind != nftNets {
			d.els = []nftables.SetElement{{Key: n.Prefix.Addr().AsSlice()}}
		} else if d.els, err = intervalElems(n.Prefix, 0); err != nil {
			return err
		}
		dels = append(dels, d)
	}
	for len(dels) > 0 {
		chunk := dels[:min(len(dels), nftChunk)]
		dels = dels[len(chunk):]
		// One message per set: a message per ban overflowed the socket's
		// receive buffer with acknowledgements.
		bySet := map[string][]nftables.SetElement{}
		sets := map[string]*nftables.Set{}
		for _, d := range chunk {
			bySet[d.name] = append(bySet[d.name], d.els...)
			sets[d.name] = d.set
		}
		for name, els := range bySet {
			if err := b.c.SetDeleteElements(sets[name], els); err != nil {
				return fmt.Errorf("removing %d elements from set %s: %w", len(els), name, err)
			}
		}
		err := b.c.Flush()
		if err == nil {
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing %d bans: %w", len(chunk), err)
		}
		for _, d := range chunk {
			if d.over {
				continue
			}
			if err := b.c.SetDeleteElements(d.set, d.els); err != nil {
				return fmt.Errorf("removing %v from set %s: %w", d.p, d.name, err)
			}
			if err := b.c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("removing %v from set %s: %w", d.p, d.name, err)
			}
		}
	}
	return nil
}

// List reads every ban set of the table.
func (b *nft) List() ([]Ban, error) {
	sets, err := b.c.GetSets(b.table)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing sets of table inet %s: %w", nftTable, err)
	}
	now := b.now()
	var out []Ban
	for _, s := range sets {
		jail, v6, kind, ok := parseNFTSetName(s.Name)
		if !ok || s.Anonymous {
			continue
		}
		els, err := b.c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("listing set %s: %w", s.Name, err)
		}
		bits := 0
		if kind == nftMasked {
			bits = nftMaskBits(v6)
		}
		for _, e := range readElems(els, s.Interval, bits) {
			bn := Ban{Jail: jail, Prefix: e.p}
			if e.left > 0 {
				bn.Expires = now.Add(e.left)
			}
			out = append(out, bn)
		}
	}
	sortBans(out)
	return out, nil
}

// nftSample is how many bans of a set too large to read back Verify looks
// up in the kernel per call, chosen at random: a flushed or half-emptied
// set is found at once, a set missing 1 % of its bans with a chance of
// 1-0.99^512 > 99.4 % per watchdog period. A set a Watcher heard another
// program change is not sampled but filled again in full.
const nftSample = 512

// Verify checks the table, the chain's hook, priority and rules, the sets,
// the whitelist and the bans; drift in the layout is repaired by rebuilding
// it in one transaction, missing bans are added back. Sets of up to
// nftListMax bans are read back in full; for larger ones (reading back is
// quadratic in the kernel) nftSample random bans not about to expire are
// looked up, and when one is missing every ban of that set is added again
// (adding a present element only refreshes it). A large set a Watcher
// heard another program change since the last Verify (noteDrift) is filled
// again in full without sampling: a single deleted element is repaired
// however large the set.
func (b *nft) Verify(l Layout, bans []Ban) (found []string, err error) {
	defer func() {
		// A repair may leave what another program added: only a full
		// fill (Setup) makes the sets exact again.
		if err != nil || len(found) > 0 {
			b.exact = false
		}
	}()
	if err := checkLayout(l); err != nil {
		return nil, fmt.Errorf("verifying nftables layout: %w", err)
	}
	now := b.now()
	jails := jailIndex(l)
	ids := newNFTSetIDs(l)
	// One pass over the bans (a million at the watchdog's every tick):
	// per set, its count, its bans while they are few enough to read the
	// set back, and a sample of those not about to expire.
	perSet := make([]int, ids.n())
	small := make([][]Ban, ids.n())
	samples := make([][]netip.Addr, ids.n())
	seen := make([]int, ids.n())
	sure := now.Add(verifySlack * time.Second)
	rnd := rand.New(rand.NewPCG(uint64(now.UnixNano()), 0))
	perr := eachPrepared(bans, jails, now, func(bn Ban) {
		k := ids.id(bn)
		perSet[k]++
		if perSet[k] <= nftListMax {
			small[k] = append(small[k], bn)
		} else if small[k] != nil {
			small[k] = nil // too large to read back: sampled
		}
		if !bn.Expires.IsZero() && bn.Expires.Before(sure) {
			return
		}
		// Reservoir sampling: every ban equally likely.
		n := seen[k]
		seen[k]++
		if n < nftSample {
			samples[k] = append(samples[k], bn.Prefix.Addr())
		} else if j := rnd.IntN(n + 1); j < nftSample {
			samples[k][j] = bn.Prefix.Addr()
		}
	})
	if perr != nil {
		// Bans the kernel must not hold: logged, the rest verified.
		b.opts.logf("firewall nftables: bans left out of the sets: %v", perr)
	}
	contents := map[string][]nftElem{}
	readAll := make([]bool, ids.n()) // large sets to fill again
	refill := false
	if _, err := b.c.ListTableOfFamily(nftTable, nftables.TableFamilyINet); err != nil {
		found = append(found, "table inet "+nftTable+" missing")
		for k, n := range perSet {
			readAll[k] = n > nftListMax
			refill = refill || readAll[k]
		}
	} else {
		ch, err := b.c.ListChain(b.table, nftChain)
		switch {
		case err != nil:
			found = append(found, "chain "+nftChain+" missing")
		case ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookInput || ch.Priority == nil || *ch.Priority != nftPriority:
			found = append(found, fmt.Sprintf("chain %s not on hook input at priority %d", nftChain, nftPriority))
		default:
			rules, err := b.c.GetRules(b.table, ch)
			if err != nil {
				return found, fmt.Errorf("listing rules of chain %s: %w", nftChain, err)
			}
			var have, want []string
			for _, r := range rules {
				have = append(have, string(r.UserData))
			}
			for _, r := range nftRules(l) {
				want = append(want, r.tag)
			}
			if !slices.Equal(have, want) {
				found = append(found, fmt.Sprintf("chain %s has %d rules, want %d as configured", nftChain, len(have), len(want)))
			}
		}
		sets, err := b.c.GetSets(b.table)
		if err != nil {
			return found, fmt.Errorf("listing sets: %w", err)
		}
		for _, sp := range nftSets(l) {
			i := slices.IndexFunc(sets, func(s *nftables.Set) bool { return s.Name == sp.name })
			k := ids.idOf(sp.name)
			if i < 0 {
				found = append(found, "set "+sp.name+" missing")
				if k >= 0 && perSet[k] > nftListMax {
					readAll[k] = true
					refill = true
				}
				continue
			}
			if sp.timeout && perSet[k] > nftListMax && (b.changedAll || b.changed[sp.name]) {
				found = append(found, fmt.Sprintf("set %s (%d bans) changed by another program", sp.name, perSet[k]))
				readAll[k] = true
				refill = true
				continue
			}
			if sp.timeout && perSet[k] > nftListMax {
				miss, ok, err := b.raw.present(sp.name, samples[k])
				if err != nil {
					return found, err
				}
				if !ok {
					found = append(found, fmt.Sprintf("set %s lacks %v, one of %d bans looked up of its %d", sp.name, miss, len(samples[k]), perSet[k]))
					readAll[k] = true
					refill = true
				}
				continue
			}
			els, err := b.c.GetSetElements(sets[i])
			if err != nil {
				return found, fmt.Errorf("listing set %s: %w", sp.name, err)
			}
			bits := 0
			if k >= 0 && ids.kinds[k] == nftMasked {
				bits = nftMaskBits(sp.v6)
			}
			contents[sp.name] = readElems(els, sp.interval, bits)
		}
		for _, name := range []string{nftWL4, nftWL6} {
			var want, have []netip.Prefix
			for _, p := range mergeCovered(l.Whitelist) {
				if p.Addr().Is6() == (name == nftWL6) {
					want = append(want, p)
				}
			}
			for _, e := range contents[name] {
				have = append(have, e.p)
			}
			slices.SortFunc(want, comparePrefix)
			slices.SortFunc(have, comparePrefix)
			if _, ok := contents[name]; ok && !slices.Equal(want, have) {
				found = append(found, fmt.Sprintf("set %s holds %v, want %v", name, have, want))
			}
		}
	}
	if len(found) > 0 {
		if err := b.queueLayout(l); err != nil {
			return found, fmt.Errorf("repairing nftables layout: %w", err)
		}
		if err := b.c.Flush(); err != nil {
			return found, fmt.Errorf("repairing nftables layout: %w", err)
		}
	}
	b.layout = l
	var missing []Ban
	for k, bs := range small {
		have := contents[ids.names[k]]
		exact := make(map[netip.Prefix]bool, len(have))
		for _, e := range have {
			exact[e.p] = true
		}
		for _, bn := range bs {
			present := exact[bn.Prefix]
			for i := 0; !present && i < len(have) && ids.kinds[k] == nftNets; i++ {
				// An interval set may hold a wider prefix instead.
				e := have[i]
				present = e.p.Bits() <= bn.Prefix.Bits() && e.p.Contains(bn.Prefix.Addr())
			}
			if !present {
				missing = append(missing, bn)
			}
		}
	}
	if len(missing) > 0 {
		found = append(found, fmt.Sprintf("%d bans missing from the sets (first %v in jail %s)", len(missing), missing[0].Prefix, missing[0].Jail))
	}
	if refill {
		n := 0
		_ = eachPrepared(bans, jails, now, func(bn Ban) {
			if readAll[ids.id(bn)] {
				missing = append(missing, bn)
				n++
			}
		})
		found = append(found, fmt.Sprintf("re-adding all %d bans of the large sets", n))
	}
	if len(missing) > 0 {
		if err := b.add(missing, now, true); err != nil {
			return found, fmt.Errorf("repairing nftables bans: %w", err)
		}
	}
	b.changed, b.changedAll = nil, false
	return found, nil
}

// noteDrift implements driftNoter.
func (b *nft) noteDrift(sets []string, all bool) {
	if all || len(sets) > 0 {
		b.exact = false
	}
	b.changedAll = b.changedAll || all
	for _, s := range sets {
		if b.changed == nil {
			b.changed = map[string]bool{}
		}
		b.changed[s] = true
	}
}

// watchSpec implements watchable: every change of table inet jailkeeper
// is notified; nothing needs a timer.
func (b *nft) watchSpec() (string, []nftTableID, bool) {
	return nsPath(b.opts.NetNS), []nftTableID{{unix.NFPROTO_INET, nftTable}}, false
}

// setHush implements hushable. The Watcher starts out knowing the
// current generation: it listens already, so it hears every later one.
func (b *nft) setHush(h *notifyHush) {
	if b.raw == nil {
		return
	}
	if h != nil {
		g, err := b.raw.genID()
		if err != nil {
			b.opts.logf("firewall nftables: notifications stay on during large batches: %v", err)
			return
		}
		h.w.mu.Lock()
		if int32(g-h.w.gen) > 0 || h.w.gen == 0 {
			h.w.gen = g
		}
		h.w.mu.Unlock()
	}
	b.raw.hush = h
}

// quickCheck implements watchable: notifications are the whole check.
func (b *nft) quickCheck(time.Time) (bool, error) { return false, nil }

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Close releases the netlink sockets and leaves the table in the kernel.
func (b *nft) Close() error {
	var err error
	if b.c != nil {
		err = b.c.CloseLasting()
	}
	if b.killer != nil {
		b.killer.close()
		b.killer = nil
	}
	if b.raw != nil {
		b.raw.close()
		b.raw = nil
	}
	if b.ns != netns.None() {
		b.ns.Close()
		b.ns = netns.None()
	}
	return err
}

// Teardown deletes table inet jailkeeper with everything in it.
func (b *nft) Teardown() error {
	if _, err := b.c.ListTableOfFamily(nftTable, nftables.TableFamilyINet); err != nil {
		return nil
	}
	b.exact = false
	b.c.DelTable(b.table)
	if err := b.c.Flush(); err != nil {
		return fmt.Errorf("deleting table inet %s: %w", nftTable, err)
	}
	b.layout = Layout{}
	return nil
}

// iptablesCompat names the tables iptables-nft creates; any other table
// means native nftables rules are in use.
var iptablesCompat = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true, "broute": true}

// Detect decides what "auto" means in the namespace ns ("" = current):
// "nftables" when a native nftables table exists (one not made by
// iptables-nft, e.g. inet filter from /etc/nftables.conf, firewalld's, or
// jailkeeper's own) or when iptables is not installed; else "iptables".
// The second result says why, for the log.
func Detect(ns string) (backend, reason string) {
	if _, err := exec.LookPath("iptables"); err != nil {
		return "nftables", "iptables is not installed"
	}
	h, err := openNetNS(nsPath(ns))
	if err != nil {
		return "iptables", err.Error()
	}
	defer h.Close()
	var opts []nftables.ConnOption
	if h != netns.None() {
		opts = append(opts, nftables.WithNetNSFd(int(h)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return "iptables", "nftables unavailable: " + err.Error()
	}
	tables, err := c.ListTables()
	if err != nil {
		return "iptables", "nftables unavailable: " + err.Error()
	}
	for _, t := range tables {
		native := t.Family == nftables.TableFamilyINet || t.Family == nftables.TableFamilyNetdev || !iptablesCompat[t.Name]
		if native {
			return "nftables", fmt.Sprintf("native nftables table %s in use", t.Name)
		}
	}
	return "iptables", "no native nftables tables in use"
}
