package jails

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// loopback is always whitelisted: a ban service must never ban the
// machine itself.
var loopback = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
}

// Whitelist is a set of networks that are never counted nor banned.
// Loopback (127.0.0.0/8, ::1) is always in it. It is immutable and safe
// for concurrent use.
type Whitelist struct {
	prefixes []netip.Prefix
}

// NewWhitelist returns a Whitelist of p plus loopback. IPv4-mapped IPv6
// prefixes are stored as IPv4; every prefix is masked.
func NewWhitelist(p []netip.Prefix) *Whitelist {
	w := &Whitelist{}
	seen := map[netip.Prefix]bool{}
	for _, x := range append(append([]netip.Prefix(nil), loopback...), p...) {
		if !x.IsValid() {
			continue
		}
		x = prefix.Norm(x)
		if !seen[x] {
			seen[x] = true
			w.prefixes = append(w.prefixes, x)
		}
	}
	return w
}

// Contains reports whether a is whitelisted. A nil Whitelist still
// contains loopback.
func (w *Whitelist) Contains(a netip.Addr) bool {
	a = prefix.Addr(a)
	if a.IsLoopback() {
		return true
	}
	if w == nil {
		return false
	}
	for _, p := range w.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Overlaps reports whether p covers or lies in a whitelisted network, so
// that a manual ban of p would ban a whitelisted address.
func (w *Whitelist) Overlaps(p netip.Prefix) bool {
	p = prefix.Norm(p)
	ps := loopback
	if w != nil {
		ps = w.prefixes
	}
	for _, x := range ps {
		if x.Overlaps(p) {
			return true
		}
	}
	return false
}

// Prefixes returns the whitelisted networks, loopback first.
func (w *Whitelist) Prefixes() []netip.Prefix {
	if w == nil {
		return append([]netip.Prefix(nil), loopback...)
	}
	return append([]netip.Prefix(nil), w.prefixes...)
}

// resolveTimeout bounds the host name lookups of ResolveWhitelist.
const resolveTimeout = 10 * time.Second

// LookupNetIP resolves whitelist host names (net.DefaultResolver's; tests
// replace it).
var LookupNetIP = net.DefaultResolver.LookupNetIP

// UnresolvedError lists the whitelist host names that did not resolve;
// ResolveWhitelist returns it with the prefixes of every other entry.
type UnresolvedError struct {
	Names []string
	Errs  []error // Errs[i] is why Names[i] did not resolve
}

func (e *UnresolvedError) Error() string {
	msgs := make([]string, len(e.Names))
	for i, n := range e.Names {
		msgs[i] = fmt.Sprintf("%q: %v", n, e.Errs[i])
	}
	return "whitelist host names did not resolve: " + strings.Join(msgs, "; ")
}

// ResolveWhitelist turns whitelist entries — addresses, CIDRs and host
// names — into prefixes. Host names are resolved now (every address they
// have). Names that do not resolve (DNS not up yet at boot) do not stop
// the others: the error is then an *UnresolvedError naming them, returned
// with the prefixes of everything else. Any other error (an entry that is
// no address, network or host name) returns no prefixes. With ignoreSelf,
// the machine's own interface addresses are added (each as a single
// address, not its network).
func ResolveWhitelist(entries []string, ignoreSelf bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var unresolved *UnresolvedError
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if p, err := prefix.Parse(e); err == nil {
			out = append(out, p)
			continue
		}
		if strings.Contains(e, "/") || strings.ContainsAny(e, " \t") {
			return nil, fmt.Errorf("whitelist entry %q: not an address, network or host name", e)
		}
		ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
		addrs, err := LookupNetIP(ctx, "ip", e)
		cancel()
		if err != nil {
			if unresolved == nil {
				unresolved = &UnresolvedError{}
			}
			unresolved.Names = append(unresolved.Names, e)
			unresolved.Errs = append(unresolved.Errs, err)
			continue
		}
		for _, a := range addrs {
			out = append(out, prefix.Host(a))
		}
	}
	if ignoreSelf {
		self, err := SelfAddresses()
		if err != nil {
			return nil, err
		}
		out = append(out, self...)
	}
	if unresolved != nil {
		return out, unresolved
	}
	return out, nil
}

// SelfAddresses returns the addresses of this machine's interfaces, each
// as a single-address prefix.
func SelfAddresses() ([]netip.Prefix, error) {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the machine's own addresses: %w", err)
	}
	var out []netip.Prefix
	for _, ia := range ifaddrs {
		ipn, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		out = append(out, prefix.Host(a))
	}
	return out, nil
}
