// Package prefix is jailkeeper's one rule for reading, normalising and
// printing addresses and networks. Every ban and whitelist entry is a
// netip.Prefix in normal form (IPv4-mapped IPv6 unmapped, zone dropped,
// host bits masked; a single address is a /32 or /128), and prints the same
// way everywhere — D-Bus signals and replies, the journal, the CLI: a
// single address bare (198.51.100.7), a network in CIDR form
// (198.51.100.0/24).
package prefix

import (
	"fmt"
	"net/netip"
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
