// Package prefix is jailkeeper's one rule for reading, normalising and
// printing addresses and networks. Every ban and whitelist entry is a
// netip.Prefix in normal form (IPv4-mapped IPv6 unmapped, zone dropped,
// host bits masked; a single address is a /32 or /128), and prints the same
// way everywhere — D-Bus signals and replies, the journal, the CLI: a
// single address bare (198.51.100.7), a network in CIDR form
// (198.51.100.0/24).
package prefix

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Parse reads an address or a CIDR network and returns it in normal form.
// A bare address becomes a /32 or /128.
func Parse(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return Norm(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4/IPv6 address or CIDR network", s)
	}
	return Host(a), nil
}

// Host returns the single-address prefix of a, in normal form.
func Host(a netip.Addr) netip.Prefix {
	a = Addr(a)
	return netip.PrefixFrom(a, a.BitLen())
}

// Addr returns a without zone, IPv4-mapped IPv6 unmapped.
func Addr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// Norm returns p in normal form: zone dropped, an IPv4-mapped IPv6 prefix
// of at least /96 turned into the IPv4 prefix it covers (a shorter one
// covers more than IPv4 and stays IPv6), host bits masked. An invalid p
// stays invalid.
func Norm(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked()
}

// Format prints p as jailkeeper shows every address: a single address
// without its /32 or /128, a network in CIDR form. Parse reads both back.
func Format(p netip.Prefix) string {
	if p.IsValid() && p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// ErrNotBannable marks a prefix that must never be banned (Refuse).
var ErrNotBannable = errors.New("not bannable")

// special are the networks no remote host can send from, or whose ban
// would cut the machine off from itself: a ban overlapping one of them is
// refused. The kernel's sets reject some of them outright (ipset refuses
// 0.0.0.0), which would abort every other element of the same batch.
var special = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "the unspecified address (this network, 0.0.0.0/8)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (169.254.0.0/16)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast (224.0.0.0/4)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address (255.255.255.255)"},
	{netip.MustParsePrefix("::/128"), "the unspecified address (::)"},
	{netip.MustParsePrefix("::1/128"), "loopback (::1)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local (fe80::/10)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast (ff00::/8)"},
}

// Refuse is the one rule for what may be banned: it returns an error
// wrapping ErrNotBannable when p (normalised) is invalid, overlaps
// unspecified, loopback, link-local, multicast or broadcast addresses
// (so 0.0.0.0/0 and ::/0 are refused too), or is one of own — the
// machine's own addresses (nil when the caller does not know them). A
// network that merely contains an own address is allowed: the whitelist
// (ignoreself) keeps the machine's own addresses out of every ban.
func Refuse(p netip.Prefix, own []netip.Addr) error {
	if !p.IsValid() {
		return fmt.Errorf("%w: invalid prefix", ErrNotBannable)
	}
	p = Norm(p)
	for _, s := range special {
		if s.p.Overlaps(p) {
			if s.p.Contains(p.Addr()) && s.p.Bits() <= p.Bits() {
				return fmt.Errorf("%w: %s is %s", ErrNotBannable, Format(p), s.what)
			}
			return fmt.Errorf("%w: %s covers %s", ErrNotBannable, Format(p), s.what)
		}
	}
	if p.Bits() == p.Addr().BitLen() {
		for _, a := range own {
			if Addr(a) == p.Addr() {
				return fmt.Errorf("%w: %s is an address of this machine", ErrNotBannable, Format(p))
			}
		}
	}
	return nil
}

// CoversAll reports whether ps together cover every IPv4 address or every
// IPv6 address (0.0.0.0/1 with 128.0.0.0/1 as much as 0.0.0.0/0), and
// names the family. A whitelist that does exempts every source of that
// family.
func CoversAll(ps []netip.Prefix) (family string, ok bool) {
	for _, v6 := range []bool{false, true} {
		var fam []netip.Prefix
		for _, p := range ps {
			if p = Norm(p); p.IsValid() && p.Addr().Is6() == v6 {
				fam = append(fam, p)
			}
		}
		slices.SortFunc(fam, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		next := netip.IPv4Unspecified() // the first address not covered yet
		if v6 {
			next = netip.IPv6Unspecified()
		}
		for _, p := range fam {
			if next.Less(p.Addr()) {
				break // a gap
			}
			last := lastAddr(p)
			if !last.Next().IsValid() {
				// p reaches the family's last address.
				if v6 {
					return "IPv6", true
				}
				return "IPv4", true
			}
			if next.Less(last.Next()) {
				next = last.Next()
			}
		}
	}
	return "", false
}

// lastAddr is the last address of p (p masked).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 1 << (7 - i%8)
		}
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom16(b)
}
