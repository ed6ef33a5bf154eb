package firewall

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Names of the kernel objects the iptables backend owns.
const (
	iptChain  = "JAILKEEPER" // own chain in table filter, per family
	iptTable  = "filter"
	iptJump   = "-A INPUT -j " + iptChain
	setPrefix = "jk-"
	wlSet4    = "jk-wl4"
	wlSet6    = "jk-wl6"
)

// ipsetMaxTimeout is the kernel's IPSET_MAX_TIMEOUT (seconds, ~24.8 days);
// longer timeouts are capped and Verify re-adds the ban if it outlives it.
const ipsetMaxTimeout = 2147483

// ipsetMaxElem is each set's maxelem: far above any realistic ban count
// (memory grows with the elements, not with this limit).
const ipsetMaxElem = 1 << 24

// banSetName returns the ipset of a jail for one family, for host
// addresses (hash:ip) or prefixes (hash:net): jk-<jail>-4, -n4, -6, -n6.
func banSetName(jail string, v6, net bool) string {
	s := setPrefix + jail + "-"
	if net {
		s += "n"
	}
	if v6 {
		return s + "6"
	}
	return s + "4"
}

// ipsetFor returns the set a ban belongs in.
func ipsetFor(b Ban) string {
	return banSetName(b.Jail, b.Prefix.Addr().Is6(), !isHost(b.Prefix))
}

// ipt is the iptables+ipset backend.
type ipt struct {
	opts   Options
	ns     string // namespace path, "" = current
	mode   string // "nf_tables" or "legacy"
	v4, v6 *iptables.IPTables
	h      ipsetOps    // NETLINK_NETFILTER socket for ipset
	bulk   *ipsetBulk  // batched adds for Setup and large Add calls
	killer *connKiller // only with KillConnections
	layout Layout
	now    func() time.Time
	// tally counts the bans each set must hold, for the Watcher's cheap
	// check; tallyStale: the check alarmed, Verify must reset it.
	tally      *banTally
	tallyStale bool
	// countAt is the earliest time of the next count of the ban sets
	// (quickCheck).
	countAt time.Time
	// xt reads table filter's header with iptables-legacy (xtinfo.go);
	// nil otherwise.
	xt *xtWatch
}

var _ Backend = (*ipt)(nil)

// newIPTables opens the iptables backend in opts.NetNS (or the current
// namespace).
func newIPTables(opts Options) (*ipt, error) {
	b := &ipt{opts: opts, ns: nsPath(opts.NetNS), now: time.Now, tally: newBanTally()}
	err := inNetNS(b.ns, func() error {
		out, err := exec.Command("iptables", "--version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("running iptables --version: %w: %s", err, out)
		}
		b.mode = iptablesMode(string(out))
		if b.v4, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Timeout(5)); err != nil {
			return fmt.Errorf("opening iptables: %w", err)
		}
		if b.v6, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv6), iptables.Timeout(5)); err != nil {
			return fmt.Errorf("opening ip6tables: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ns, err := openNetNS(b.ns)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	if b.h, err = openIpsetOps(ns); err != nil {
		return nil, fmt.Errorf("opening netfilter netlink socket: %w", err)
	}
	if b.bulk, err = newIpsetBulk(ns); err != nil {
		b.h.close()
		return nil, err
	}
	if opts.KillConnections {
		if b.killer, err = newConnKiller(ns, opts); err != nil {
			b.h.close()
			b.bulk.close()
			return nil, fmt.Errorf("opening conntrack netlink socket: %w", err)
		}
	}
	if b.mode == "legacy" {
		if b.xt, err = openXTWatch(b.ns); err != nil {
			opts.logf("firewall iptables: rule changes by other programs are repaired at the watchdog's check only: %v", err)
		}
	}
	opts.logf("firewall iptables: using iptables (%s) with ipset", b.mode)
	return b, nil
}

// iptablesMode reads "nf_tables" or "legacy" from `iptables --version`
// ("iptables v1.8.9 (nf_tables)"); go-iptables keeps its own unexported.
func iptablesMode(version string) string {
	switch {
	case strings.Contains(version, "(nf_tables)"):
		return "nf_tables"
	case strings.Contains(version, "(legacy)"):
		return "legacy"
	default:
		return "legacy" // versions before 1.8 print no mode
	}
}

func (b *ipt) Name() string { return "iptables" }

// families returns the two iptables handles with their family flag.
func (b *ipt) families() []struct {
	v6  bool
	ipt *iptables.IPTables
	cmd string
} {
	return []struct {
		v6  bool
		ipt *iptables.IPTables
		cmd string
	}{{false, b.v4, "iptables"}, {true, b.v6, "ip6tables"}}
}

// iptRules returns the rules of chain JAILKEEPER for one family, exactly as
// `iptables -S JAILKEEPER` prints them.
func iptRules(l Layout, v6 bool) []string {
	wl := wlSet4
	if v6 {
		wl = wlSet6
	}
	verdict := "RETURN"
	if l.WhitelistAccept {
		// Our jump is the first rule of INPUT, so accepting here accepts at
		// the very top of INPUT.
		verdict = "ACCEPT"
	}
	rules := []string{"-A " + iptChain + " -m set --match-set " + wl + " src -j " + verdict}
	unreach := "icmp-port-unreachable"
	if v6 {
		unreach = "icmp6-port-unreachable"
		// Neighbour discovery must pass even from banned sources, or a
		// jail banning all protocols also stops the server from answering
		// them (our own RSTs could not be delivered).
		rules = append(rules,
			"-A "+iptChain+" -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN",
			"-A "+iptChain+" -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j RETURN")
	}
	for _, j := range l.Jails {
		for _, net := range []bool{false, true} {
			match := "-m set --match-set " + banSetName(j.Name, v6, net) + " src"
			target := func(proto string) string {
				switch {
				case j.action() == ActionDrop:
					return "-j DROP"
				case proto == "tcp":
					return "-j REJECT --reject-with tcp-reset"
				default:
					return "-j REJECT --reject-with " + unreach
				}
			}
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
					protos = []string{"tcp", ""} // tcp-reset for tcp, ICMP for the rest
				}
			}
			for _, p := range protos {
				pm := ""
				if p != "" {
					pm = "-p " + p + " "
				}
				if len(j.Ports) == 0 {
					rules = append(rules, "-A "+iptChain+" "+pm+match+" "+target(p))
					continue
				}
				for chunk := range slices.Chunk(j.Ports, 15) { // multiport takes at most 15
					ps := make([]string, len(chunk))
					for i, port := range chunk {
						ps[i] = strconv.Itoa(int(port))
					}
					rules = append(rules, "-A "+iptChain+" "+pm+"-m multiport --dports "+strings.Join(ps, ",")+" "+match+" "+target(p))
				}
			}
		}
	}
	return rules
}

// desiredSets lists every set of the layout with its type and family.
type setSpec struct {
	name    string
	typ     string // hash:ip or hash:net
	v6      bool
	timeout bool
}

func desiredSets(l Layout) []setSpec {
	sets := []setSpec{{wlSet4, "hash:net", false, false}, {wlSet6, "hash:net", true, false}}
	for _, j := range l.Jails {
		for _, v6 := range []bool{false, true} {
			sets = append(sets,
				setSpec{banSetName(j.Name, v6, false), "hash:ip", v6, true},
				setSpec{banSetName(j.Name, v6, true), "hash:net", v6, true})
		}
	}
	return sets
}

// setKey identifies a ban set without building its name.
type setKey struct {
	jail    string
	v6, net bool
}

func setKeyOf(b Ban) setKey { return setKey{b.Jail, b.Prefix.Addr().Is6(), !isHost(b.Prefix)} }

func (k setKey) name() string { return banSetName(k.jail, k.v6, k.net) }

// ipsetGroups sorts prepared bans by set, as elements with their kernel
// timeouts; bans expired by now are left out.
func ipsetGroups(in []Ban, now time.Time) map[string][]ipsetElem {
	counts := map[setKey]int{}
	for _, bn := range in {
		counts[setKeyOf(bn)]++
	}
	byKey := make(map[setKey][]ipsetElem, len(counts))
	for k, n := range counts {
		byKey[k] = make([]ipsetElem, 0, n)
	}
	for _, bn := range in {
		t, ok := timeoutSeconds(bn.Expires, now, ipsetMaxTimeout)
		if !ok {
			continue
		}
		k := setKeyOf(bn)
		byKey[k] = append(byKey[k], ipsetElem{prefix: bn.Prefix, timeout: t, hasTimeout: true})
	}
	out := make(map[string][]ipsetElem, len(byKey))
	for k, els := range byKey {
		out[k.name()] = els
	}
	return out
}

// entry builds the ipset element of a prefix with a timeout (nil = none).
func entry(p netip.Prefix, timeout *uint32) *netlink.IPSetEntry {
	e := &netlink.IPSetEntry{IP: net.IP(p.Addr().AsSlice()), Timeout: timeout, Replace: true}
	if !isHost(p) {
		e.CIDR = uint8(p.Bits())
	}
	return e
}

// setContents maps the prefixes of an ipset listing to their seconds left.
func setContents(r *netlink.IPSetResult) map[netip.Prefix]uint32 {
	m := make(map[netip.Prefix]uint32, len(r.Entries))
	for _, e := range r.Entries {
		a, ok := netip.AddrFromSlice(e.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if r.Family == unix.AF_INET6 && a.Is4() {
			a = netip.AddrFrom16(a.As16())
		}
		bits := int(e.CIDR)
		if bits == 0 {
			bits = a.BitLen()
		}
		var left uint32
		if e.Timeout != nil {
			left = *e.Timeout
		}
		m[netip.PrefixFrom(a, bits)] = left
	}
	return m
}

// isNotFound reports an ipset error meaning "no such set".
func isNotFound(err error) bool { return errors.Is(err, unix.ENOENT) }

// isAbsentElement reports the ipset error for deleting a missing element.
func isAbsentElement(err error) bool {
	var ie nl.IPSetError
	return errors.As(err, &ie) && ie == nl.IPSET_ERR_EXIST
}

// Setup builds the sets, loads whitelist and bans into fresh copies that
// are swapped in atomically (no window without bans), then makes the chain
// and the jump at the top of INPUT match the layout.
func (b *ipt) Setup(l Layout, bans []Ban) error {
	if err := checkLayout(l); err != nil {
		return fmt.Errorf("setting up iptables layout: %w", err)
	}
	now := b.now()
	in, perr := prepare(bans, jailIndex(l), now)
	if perr != nil {
		b.opts.logf("firewall iptables: bans left out of the layout: %v", perr)
	}
	bySet := ipsetGroups(in, now)
	for _, s := range desiredSets(l) {
		entries := bySet[s.name]
		if !s.timeout {
			entries = whitelistElems(l, s.v6)
		}
		if err := b.loadSet(s, entries); err != nil {
			if !errors.Is(err, errRefused) || !s.timeout {
				return fmt.Errorf("setting up iptables layout: %w", err)
			}
			b.opts.logf("firewall iptables: %v", err)
		}
	}
	if err := inNetNS(b.ns, func() error { _, err := b.fixRules(l); return err }); err != nil {
		return fmt.Errorf("setting up iptables layout: %w", err)
	}
	// Sets of jails dropped from the configuration, now unreferenced.
	for _, s := range desiredSets(b.layout) {
		if !slices.ContainsFunc(desiredSets(l), func(d setSpec) bool { return d.name == s.name }) {
			if err := b.h.destroy(s.name); err != nil && !isNotFound(err) {
				b.opts.logf("firewall iptables: destroying unused ipset %s: %v", s.name, err)
			}
		}
	}
	b.layout = l
	b.tally.reset(in, now)
	b.tallyStale = false
	if b.xt != nil {
		b.xt.snapshot()
	}
	b.opts.logf("firewall iptables: layout set up for %d jails, %d bans loaded", len(l.Jails), len(in))
	return nil
}

// whitelistElems returns the whitelist's prefixes of one family.
func whitelistElems(l Layout, v6 bool) []ipsetElem {
	var out []ipsetElem
	for _, p := range l.Whitelist {
		if p.Addr().Is6() == v6 {
			// A whitelisted /32 or /128 goes into the hash:net set with
			// its CIDR like any other prefix.
			out = append(out, ipsetElem{prefix: p.Masked()})
		}
	}
	return out
}

// loadSet fills a temporary set, created with a hash size fitted to the
// entries, and swaps it with the live one, so the live set holds exactly
// entries at every instant.
func (b *ipt) loadSet(s setSpec, entries []ipsetElem) error {
	tmp := s.name + "-t"
	if err := b.h.destroy(tmp); err != nil && !isNotFound(err) {
		return fmt.Errorf("destroying leftover ipset %s: %w", tmp, err)
	}
	if err := b.bulk.create(s, tmp, len(entries), ipsetMaxElem); err != nil {
		return err
	}
	var refused error // elements the kernel refused: the others are in
	if err := b.bulk.add(tmp, entries); errors.Is(err, errRefused) {
		refused = err
	} else if err != nil {
		_ = b.h.destroy(tmp)
		return err
	}
	// Create the live set if missing (not listed: that would read every
	// element); a live set of another type makes the swap fail.
	if err := b.bulk.create(s, s.name, 0, ipsetMaxElem); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := b.h.swap(tmp, s.name); err != nil {
		return fmt.Errorf("swapping ipset %s into %s (an existing set of another type must be destroyed first): %w", tmp, s.name, err)
	}
	if err := b.h.destroy(tmp); err != nil {
		return fmt.Errorf("destroying ipset %s: %w", tmp, err)
	}
	return refused
}

// fixRules makes chain JAILKEEPER hold exactly the layout's rules and the
// jump to it be the one and only first rule of INPUT, in both families.
// It runs inside the namespace and returns what it had to change.
func (b *ipt) fixRules(l Layout) ([]string, error) {
	var found []string
	for _, f := range b.families() {
		ok, err := f.ipt.ChainExists(iptTable, iptChain)
		if err != nil {
			return found, fmt.Errorf("%s: checking chain %s: %w", f.cmd, iptChain, err)
		}
		want := iptRules(l, f.v6)
		if !ok {
			found = append(found, fmt.Sprintf("%s: chain %s missing", f.cmd, iptChain))
			if err := f.ipt.NewChain(iptTable, iptChain); err != nil {
				return found, fmt.Errorf("%s: creating chain %s: %w", f.cmd, iptChain, err)
			}
		}
		have, err := chainRules(f.ipt, iptChain)
		if err != nil {
			return found, fmt.Errorf("%s: %w", f.cmd, err)
		}
		if !slices.Equal(have, want) {
			if ok {
				found = append(found, fmt.Sprintf("%s: chain %s has %d rules, want %d as configured", f.cmd, iptChain, len(have), len(want)))
			}
			if err := f.ipt.ClearChain(iptTable, iptChain); err != nil {
				return found, fmt.Errorf("%s: flushing chain %s: %w", f.cmd, iptChain, err)
			}
			for _, r := range want {
				spec := strings.Fields(strings.TrimPrefix(r, "-A "+iptChain+" "))
				if err := f.ipt.Append(iptTable, iptChain, spec...); err != nil {
					return found, fmt.Errorf("%s: appending %q: %w", f.cmd, r, err)
				}
			}
		}
		input, err := chainRules(f.ipt, "INPUT")
		if err != nil {
			return found, fmt.Errorf("%s: %w", f.cmd, err)
		}
		var at []int // 1-based positions of our jump
		for i, r := range input {
			if r == iptJump {
				at = append(at, i+1)
			}
		}
		if len(at) == 1 && at[0] == 1 {
			continue
		}
		switch {
		case len(at) == 0:
			found = append(found, fmt.Sprintf("%s: jump to %s missing from INPUT", f.cmd, iptChain))
		case at[0] != 1:
			found = append(found, fmt.Sprintf("%s: jump to %s is rule %d of INPUT, not 1 (%q above it)", f.cmd, iptChain, at[0], input[0]))
		default:
			found = append(found, fmt.Sprintf("%s: %d jumps to %s in INPUT", f.cmd, len(at), iptChain))
		}
		// Insert first, then delete the old ones from the bottom: the jump
		// is never absent.
		if err := f.ipt.Insert(iptTable, "INPUT", 1, "-j", iptChain); err != nil {
			return found, fmt.Errorf("%s: inserting jump to %s: %w", f.cmd, iptChain, err)
		}
		for i := len(at) - 1; i >= 0; i-- {
			if err := f.ipt.DeleteById(iptTable, "INPUT", at[i]+1); err != nil {
				return found, fmt.Errorf("%s: deleting old jump at INPUT %d: %w", f.cmd, at[i]+1, err)
			}
		}
	}
	return found, nil
}

// chainRules lists a chain's rules as `iptables -S` prints them, without
// the -N/-P line.
func chainRules(t *iptables.IPTables, chain string) ([]string, error) {
	lines, err := t.List(iptTable, chain)
	if err != nil {
		return nil, fmt.Errorf("listing chain %s: %w", chain, err)
	}
	out := lines[:0]
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			out = append(out, l)
		}
	}
	return out, nil
}

// Add puts each ban into its set with a timeout until it expires; a present
// element gets the new timeout.
func (b *ipt) Add(bans []Ban) error {
	now := b.now()
	in, perr := prepare(bans, jailIndex(b.layout), now)
	aerr := b.addBans(in, now)
	if aerr == nil {
		for _, bn := range in {
			b.tally.add(bn, 1)
		}
	} else {
		b.tallyStale = true // some are in, some not: Verify recounts
	}
	if b.killer != nil {
		b.killer.kill(in)
	}
	return errors.Join(perr, aerr)
}

// addBans adds bans grouped by set, many per message; a set that fails
// does not keep the others from being filled.
func (b *ipt) addBans(in []Ban, now time.Time) error {
	var errs []error
	for set, els := range ipsetGroups(in, now) {
		if err := b.bulk.add(set, els); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove deletes each ban from its set, many per message; absent bans and
// unknown jails are not errors.
func (b *ipt) Remove(bans []Ban) error {
	bySet := map[string][]ipsetElem{}
	var errs []error
	for _, bn := range bans {
		n, err := normalize(bn)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set := ipsetFor(n)
		bySet[set] = append(bySet[set], ipsetElem{prefix: n.Prefix})
		b.tally.add(n, -1)
	}
	for set, els := range bySet {
		if err := b.bulk.del(set, els); err != nil && !isNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// resetTally counts the bans the sets must hold afresh.
func (b *ipt) resetTally(bans []Ban, jails map[string]JailRules, now time.Time) {
	t := newBanTally()
	t.cut = now.Unix() + verifySlack
	_ = eachPrepared(bans, jails, now, func(bn Ban) { t.add(bn, 1) })
	b.tally, b.tallyStale = t, false
}

// watchSpec implements watchable: with iptables-nft, table filter of both
// families is nftables' and its changes are notified; ipset's are not.
func (b *ipt) watchSpec() (string, []nftTableID, bool) {
	var tables []nftTableID
	if b.mode == "nf_tables" {
		tables = []nftTableID{{unix.NFPROTO_IPV4, iptTable}, {unix.NFPROTO_IPV6, iptTable}}
	}
	return b.ns, tables, true
}

// quickCheck implements watchable: every ban set holding bans must exist
// and hold at least as many elements as the tally says, each whitelist
// set at least the whitelist's prefixes of its family (one netlink request
// per set, for its header); with iptables-legacy, table filter's header
// must be as the last Setup or Verify left it. The kernel walks a whole
// set to count it (10–40 ms for a million elements, under the daemon's
// lock), so with more than countEvery bans the counts are spaced: at most
// once per TickEvery for each countEvery bans (a million: once a second).
func (b *ipt) quickCheck(now time.Time) (bool, error) {
	if b.xt != nil {
		if changed, err := b.xt.changed(); changed || err != nil {
			return true, err
		}
	}
	type setWant struct {
		name string
		want int
	}
	var wants []setWant
	total := 0
	for _, s := range desiredSets(b.layout) {
		var want int
		if s.timeout {
			want = b.tally.want(s.name, now)
		} else {
			seen := map[netip.Prefix]bool{}
			for _, e := range whitelistElems(b.layout, s.v6) {
				seen[e.prefix] = true
			}
			want = len(seen)
		}
		if want > 0 {
			wants = append(wants, setWant{s.name, want})
			total += want
		}
	}
	if now.Before(b.countAt) {
		return false, nil
	}
	b.countAt = now.Add(time.Duration(total/countEvery) * TickEvery)
	for _, w := range wants {
		n, err := b.bulk.count(w.name)
		if err != nil || n < w.want {
			b.tallyStale = true
			if isNotFound(err) {
				err = nil
			}
			return true, err
		}
	}
	return false, nil
}

// countEvery is the number of bans per TickEvery between two counts of
// the ban sets by quickCheck.
const countEvery = 250_000

// List reads the ban sets of the current layout's jails (or, before Setup,
// of every jk- set in the kernel).
func (b *ipt) List() ([]Ban, error) {
	var names []string
	if len(b.layout.Jails) > 0 {
		for _, s := range desiredSets(b.layout) {
			if s.timeout {
				names = append(names, s.name)
			}
		}
	} else {
		all, err := b.h.listAll()
		if err != nil {
			return nil, fmt.Errorf("listing ipsets: %w", err)
		}
		for _, r := range all {
			if _, ok := parseBanSetName(r.SetName); ok {
				names = append(names, r.SetName)
			}
		}
	}
	now := b.now()
	var out []Ban
	for _, name := range names {
		jail, _ := parseBanSetName(name)
		r, err := b.h.list(name)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing ipset %s: %w", name, err)
		}
		for p, left := range setContents(r) {
			bn := Ban{Jail: jail, Prefix: p}
			if left > 0 {
				bn.Expires = now.Add(time.Duration(left) * time.Second)
			}
			out = append(out, bn)
		}
	}
	sortBans(out)
	return out, nil
}

// parseBanSetName returns the jail of a ban set name (jk-<jail>-4 …).
func parseBanSetName(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, setPrefix)
	if !ok {
		return "", false
	}
	for _, suf := range []string{"-n4", "-n6", "-4", "-6"} {
		if j, ok := strings.CutSuffix(rest, suf); ok && CheckJailName(j) == nil {
			return j, true
		}
	}
	return "", false
}

// verifySlack is how close to its expiry (in seconds) a ban may be and
// still be missing from the kernel without that counting as drift: the
// kernel and the daemon read different clocks.
const verifySlack = 2

// Verify checks sets, whitelist, bans, chain rules and the jump, and
// repairs what it finds. Ban sets are checked by their element count (the
// set header), so a watchdog period costs the same at a million bans as at
// ten: a set holding fewer elements than the ban table has bans for it
// (not counting bans within verifySlack seconds of expiring) gets every
// ban re-added in one batch, which refreshes present elements and restores
// missing ones. A set holding more is not drift: entries outlive their
// ban by up to a second (timeouts are rounded up).
func (b *ipt) Verify(l Layout, bans []Ban) ([]string, error) {
	if err := checkLayout(l); err != nil {
		return nil, fmt.Errorf("verifying iptables layout: %w", err)
	}
	now := b.now()
	jails := jailIndex(l)
	ids := newSetIDs(l)
	want := make([]int, ids.n()) // bans each set must hold for sure
	sure := now.Add(verifySlack * time.Second)
	err := eachPrepared(bans, jails, now, func(bn Ban) {
		if bn.Expires.IsZero() || bn.Expires.After(sure) {
			want[ids.id(bn)]++
		}
	})
	if err != nil {
		// Bans the kernel must not hold: logged, the rest verified.
		b.opts.logf("firewall iptables: bans left out of the sets: %v", err)
	}
	var found []string
	var short []string // ban sets to refill
	for _, s := range desiredSets(l) {
		if !s.timeout {
			f, err := b.verifyWhitelist(l, s)
			found = append(found, f...)
			if err != nil {
				return found, err
			}
			continue
		}
		jail, _ := parseBanSetName(s.name)
		w := want[ids.idOf(setKey{jail, s.v6, s.typ == "hash:net"})]
		n, err := b.bulk.count(s.name)
		switch {
		case isNotFound(err):
			found = append(found, fmt.Sprintf("ipset %s missing", s.name))
			if err := b.bulk.create(s, s.name, w, ipsetMaxElem); err != nil {
				return found, err
			}
		case err != nil:
			return found, err
		case n < w:
			found = append(found, fmt.Sprintf("ipset %s holds %d elements, the ban table %d bans for it", s.name, n, w))
		default:
			continue
		}
		if w > 0 {
			short = append(short, s.name)
		}
	}
	if len(short) > 0 {
		in, _ := prepare(bans, jails, now) // what it leaves out is logged above
		groups := ipsetGroups(in, now)
		for _, name := range short {
			if err := b.bulk.add(name, groups[name]); err != nil {
				return found, fmt.Errorf("repairing ipset %s: %w", name, err)
			}
			found = append(found, fmt.Sprintf("re-added %d bans to ipset %s", len(groups[name]), name))
		}
	}
	err = inNetNS(b.ns, func() error {
		f, err := b.fixRules(l)
		found = append(found, f...)
		return err
	})
	b.layout = l
	if len(found) > 0 || b.tallyStale {
		b.resetTally(bans, jails, now)
	}
	if b.xt != nil {
		b.xt.snapshot()
	}
	if err != nil {
		return found, fmt.Errorf("repairing iptables layout: %w", err)
	}
	return found, nil
}

// verifyWhitelist makes a whitelist set exist and hold exactly the
// whitelist of its family (it is small: read back in full).
func (b *ipt) verifyWhitelist(l Layout, s setSpec) ([]string, error) {
	var found []string
	have := map[netip.Prefix]uint32{}
	r, err := b.h.list(s.name)
	switch {
	case isNotFound(err):
		found = append(found, fmt.Sprintf("ipset %s missing", s.name))
		if err := b.bulk.create(s, s.name, 0, ipsetMaxElem); err != nil {
			return found, err
		}
	case err != nil:
		return found, fmt.Errorf("listing ipset %s: %w", s.name, err)
	default:
		have = setContents(r)
	}
	var want []netip.Prefix
	for _, e := range whitelistElems(l, s.v6) {
		want = append(want, e.prefix)
	}
	var missing []ipsetElem
	for _, p := range want {
		if _, ok := have[p]; !ok {
			missing = append(missing, ipsetElem{prefix: p})
		}
	}
	if len(missing) > 0 {
		var ps []netip.Prefix
		for _, e := range missing {
			ps = append(ps, e.prefix)
		}
		found = append(found, fmt.Sprintf("ipset %s lacks whitelisted %v", s.name, ps))
		if err := b.bulk.add(s.name, missing); err != nil {
			return found, err
		}
	}
	for p := range have {
		if !slices.Contains(want, p) {
			found = append(found, fmt.Sprintf("ipset %s holds %v, not whitelisted", s.name, p))
			e := entry(p, nil)
			e.CIDR = uint8(p.Bits())
			if err := b.h.del(s.name, e); err != nil && !isAbsentElement(err) {
				return found, fmt.Errorf("removing %v from ipset %s: %w", p, s.name, err)
			}
		}
	}
	return found, nil
}

// Close releases the netlink socket and leaves the layout in the kernel.
func (b *ipt) Close() error {
	if b.killer != nil {
		b.killer.close()
	}
	if b.xt != nil {
		b.xt.close()
	}
	b.h.close()
	b.bulk.close()
	return nil
}

// Teardown removes the jumps, the chains and every jk- set.
func (b *ipt) Teardown() error {
	err := inNetNS(b.ns, func() error {
		for _, f := range b.families() {
			for {
				err := f.ipt.Delete(iptTable, "INPUT", "-j", iptChain)
				if err == nil {
					continue
				}
				var ie *iptables.Error
				if errors.As(err, &ie) && (ie.IsNotExist() || ie.ExitStatus() == 1) {
					break
				}
				return fmt.Errorf("%s: deleting jump to %s: %w", f.cmd, iptChain, err)
			}
			ok, err := f.ipt.ChainExists(iptTable, iptChain)
			if err != nil {
				return fmt.Errorf("%s: checking chain %s: %w", f.cmd, iptChain, err)
			}
			if ok {
				if err := f.ipt.ClearAndDeleteChain(iptTable, iptChain); err != nil {
					return fmt.Errorf("%s: deleting chain %s: %w", f.cmd, iptChain, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tearing down iptables layout: %w", err)
	}
	all, err := b.h.listAll()
	if err != nil {
		return fmt.Errorf("tearing down iptables layout: listing ipsets: %w", err)
	}
	for _, r := range all {
		_, ban := parseBanSetName(strings.TrimSuffix(r.SetName, "-t"))
		if ban || r.SetName == wlSet4 || r.SetName == wlSet6 {
			if err := b.h.destroy(r.SetName); err != nil && !isNotFound(err) {
				return fmt.Errorf("tearing down iptables layout: destroying ipset %s: %w", r.SetName, err)
			}
		}
	}
	b.layout = Layout{}
	return nil
}
