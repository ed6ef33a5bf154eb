package firewall

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// MaxJailName is the longest jail name. The name becomes part of kernel
// object names: ipset names are at most 31 bytes, and jk-<jail>-n4 plus
// the suffix of a set being swapped in must fit. This is the one limit:
// pkg/config checks configured names with CheckJailName.
const MaxJailName = 16

// jailName is the shape of a jail name (its length is checked apart).
var jailName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// CheckJailName says whether name can be a jail's name: 1 to MaxJailName
// lower-case letters, digits, - and _, starting with a letter or digit.
func CheckJailName(name string) error {
	if len(name) == 0 || len(name) > MaxJailName || !jailName.MatchString(name) {
		return fmt.Errorf("bad jail name %q: use 1 to %d lower-case letters, digits, - and _, starting with a letter or digit", name, MaxJailName)
	}
	return nil
}

// checkLayout rejects a layout the kernel objects cannot represent.
func checkLayout(l Layout) error {
	seen := map[string]bool{}
	for _, j := range l.Jails {
		if err := CheckJailName(j.Name); err != nil {
			return err
		}
		if seen[j.Name] {
			return fmt.Errorf("jail %q: named twice", j.Name)
		}
		seen[j.Name] = true
		switch j.Protocol {
		case "", ProtoTCP, ProtoUDP, ProtoAll:
		default:
			return fmt.Errorf("jail %q: unknown protocol %q", j.Name, j.Protocol)
		}
		switch j.Action {
		case "", ActionReject, ActionDrop:
		default:
			return fmt.Errorf("jail %q: unknown action %q", j.Name, j.Action)
		}
		for _, p := range j.Ports {
			if p == 0 {
				return fmt.Errorf("jail %q: port 0", j.Name)
			}
		}
	}
	for _, p := range l.Whitelist {
		if !p.IsValid() {
			return fmt.Errorf("whitelist: invalid prefix %v", p)
		}
	}
	if fam, all := prefix.CoversAll(l.Whitelist); all {
		return fmt.Errorf("whitelist: it covers every %s address and would exempt every source", fam)
	}
	return nil
}

// proto returns the jail's protocol with the default filled in.
func (j JailRules) proto() Protocol {
	if j.Protocol == "" {
		return ProtoTCP
	}
	return j.Protocol
}

// action returns the jail's action with the default filled in.
func (j JailRules) action() Action {
	if j.Action == "" {
		return ActionReject
	}
	return j.Action
}

// normalize returns the ban with its prefix masked and IPv4-mapped IPv6
// addresses unmapped, or an error for a prefix the kernel cannot hold.
func normalize(b Ban) (Ban, error) {
	if !b.Prefix.IsValid() {
		return b, fmt.Errorf("jail %s: invalid prefix %v", b.Jail, b.Prefix)
	}
	p := prefix.Norm(b.Prefix)
	if p.Bits() == 0 {
		return b, fmt.Errorf("jail %s: refusing to ban every source (%v)", b.Jail, p)
	}
	b.Prefix = p
	return b, nil
}

// isHost reports whether p names a single address.
func isHost(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

// timeoutSeconds returns the kernel timeout for a ban expiring at exp, in
// whole seconds rounded up (0 = permanent), and false when the ban has
// already expired. Timeouts are capped at max (the ipset limit is about
// 24 days; Verify re-adds a ban the kernel dropped early).
func timeoutSeconds(exp, now time.Time, max uint32) (uint32, bool) {
	if exp.IsZero() {
		return 0, true
	}
	d := exp.Sub(now)
	if d <= 0 {
		return 0, false
	}
	s := math.Ceil(d.Seconds())
	if s > float64(max) {
		return max, true
	}
	return uint32(s), true
}

// banKey identifies a ban regardless of its expiry.
type banKey struct {
	jail   string
	prefix netip.Prefix
}

func keyOf(b Ban) banKey { return banKey{b.Jail, b.Prefix} }

// jailIndex maps jail names to their rules.
func jailIndex(l Layout) map[string]JailRules {
	m := make(map[string]JailRules, len(l.Jails))
	for _, j := range l.Jails {
		m[j.Name] = j
	}
	return m
}

// prepare normalises bans, drops expired ones and leaves out bans it
// cannot take (eachPrepared): it returns the others even with an error.
func prepare(bans []Ban, jails map[string]JailRules, now time.Time) ([]Ban, error) {
	out := make([]Ban, 0, len(bans))
	err := eachPrepared(bans, jails, now, func(b Ban) { out = append(out, b) })
	return out, err
}

// eachPrepared calls fn with each ban normalised, skipping expired ones,
// without copying the list. A ban of an unknown jail, of an invalid
// prefix or of a prefix that must never be banned (prefix.Refuse: the
// kernel refuses 0.0.0.0, and would refuse the rest of its batch with it)
// is left out, and the error returned at the end names the first few: one
// bad ban never keeps the others out.
func eachPrepared(bans []Ban, jails map[string]JailRules, now time.Time, fn func(Ban)) error {
	known := "" // the last jail found in jails: bans come in runs of one jail
	var errs []error
	bad := 0
	for _, b := range bans {
		n, err := normalize(b)
		if err == nil {
			if rerr := prefix.Refuse(n.Prefix, nil); rerr != nil {
				err = fmt.Errorf("jail %s: %w", n.Jail, rerr)
			}
		}
		if err == nil && (n.Jail != known || known == "") {
			if _, ok := jails[n.Jail]; !ok {
				err = fmt.Errorf("banning %s: unknown jail %q", prefix.Format(n.Prefix), n.Jail)
			} else {
				known = n.Jail
			}
		}
		if err != nil {
			if bad++; bad <= 3 {
				errs = append(errs, err)
			}
			continue
		}
		if !n.Expires.IsZero() && !n.Expires.After(now) {
			continue
		}
		fn(n)
	}
	if bad > 3 {
		errs = append(errs, fmt.Errorf("and %d more bans left out", bad-3))
	}
	return errors.Join(errs...)
}

// setIDs numbers the ban sets of a layout 0…4·jails-1 (jail, family, host
// or prefix) so that per-set tallies over a million bans are slice
// indexing, not map lookups.
type setIDs struct {
	keys  []setKey
	jails map[string]int
	last  string
	lastI int
}

func newSetIDs(l Layout) *setIDs {
	x := &setIDs{jails: make(map[string]int, len(l.Jails)), lastI: -1}
	for i, j := range l.Jails {
		x.jails[j.Name] = i
		for _, v6 := range []bool{false, true} {
			for _, net := range []bool{false, true} {
				x.keys = append(x.keys, setKey{j.Name, v6, net})
			}
		}
	}
	return x
}

// n is the number of sets.
func (x *setIDs) n() int { return len(x.keys) }

// id returns the set of a prepared ban (its jail is in the layout).
func (x *setIDs) id(b Ban) int {
	if b.Jail != x.last || x.lastI < 0 {
		x.last, x.lastI = b.Jail, x.jails[b.Jail]
	}
	i := 4 * x.lastI
	if b.Prefix.Addr().Is6() {
		i += 2
	}
	if !isHost(b.Prefix) {
		i++
	}
	return i
}

// idOf returns the set of k.
func (x *setIDs) idOf(k setKey) int { return slices.Index(x.keys, k) }
