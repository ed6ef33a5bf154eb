package testbed

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// Chain is the name of jailkeeper's own chain in the iptables backend.
const Chain = "JAILKEEPER"

// SetPrefix starts the name of every ipset set jailkeeper creates.
const SetPrefix = "jk-"

// KernelSet is one ipset set in the server namespace and its members.
type KernelSet struct {
	Name    string
	Type    string // "hash:ip", "hash:net", …
	Members []netip.Prefix
}

// Contains reports whether a member of s covers addr.
func (s KernelSet) Contains(addr netip.Addr) bool {
	for _, p := range s.Members {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// SrvSets lists the ipset sets named SetPrefix* in the server namespace.
func (h *Hosts) SrvSets(t testing.TB) []KernelSet {
	t.Helper()
	out, err := h.InSrv("ipset", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ipset list in %s: %v\n%s", h.Srv, err, out)
	}
	sets, err := parseIpsetList(string(out))
	if err != nil {
		t.Fatalf("ipset list in %s: %v", h.Srv, err)
	}
	var jk []KernelSet
	for _, s := range sets {
		if strings.HasPrefix(s.Name, SetPrefix) {
			jk = append(jk, s)
		}
	}
	return jk
}

// SrvBanned reports whether a jailkeeper set in the server namespace holds
// addr (as an address or inside a prefix), and names the set.
func (h *Hosts) SrvBanned(t testing.TB, addr string) (string, bool) {
	t.Helper()
	a := netip.MustParseAddr(addr)
	for _, s := range h.SrvSets(t) {
		if s.Contains(a) {
			return s.Name, true
		}
	}
	return "", false
}

// parseIpsetList parses the output of `ipset list`.
func parseIpsetList(out string) ([]KernelSet, error) {
	var sets []KernelSet
	inMembers := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			inMembers = false
		case strings.HasPrefix(line, "Name: "):
			sets = append(sets, KernelSet{Name: strings.TrimPrefix(line, "Name: ")})
			inMembers = false
		case len(sets) > 0 && strings.HasPrefix(line, "Type: "):
			sets[len(sets)-1].Type = strings.TrimPrefix(line, "Type: ")
		case line == "Members:":
			inMembers = true
		case inMembers && len(sets) > 0:
			f := strings.Fields(line)[0]
			p, err := netip.ParsePrefix(f)
			if err != nil {
				a, aerr := netip.ParseAddr(f)
				if aerr != nil {
					return nil, fmt.Errorf("set %s: member %q: %w", sets[len(sets)-1].Name, f, aerr)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			s := &sets[len(sets)-1]
			s.Members = append(s.Members, p)
		}
	}
	return sets, nil
}

// SrvRules returns `iptables -S CHAIN` (or ip6tables with v6) in the server
// namespace, one rule per line, or nil if the chain does not exist.
func (h *Hosts) SrvRules(v6 bool, chain string) []string {
	cmd := "iptables"
	if v6 {
		cmd = "ip6tables"
	}
	out, err := h.InSrv(cmd, "-w", "-S", chain).CombinedOutput()
	if err != nil {
		return nil
	}
	var rules []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			rules = append(rules, l)
		}
	}
	return rules
}

// SrvLayout reports whether the server namespace holds jailkeeper's layout
// for one family: the chain exists and the first rule of INPUT jumps to it.
// It returns a description of what is missing otherwise.
func (h *Hosts) SrvLayout(v6 bool) (bool, string) {
	fam := "iptables"
	if v6 {
		fam = "ip6tables"
	}
	if h.SrvRules(v6, Chain) == nil {
		return false, fam + ": no chain " + Chain
	}
	for _, r := range h.SrvRules(v6, "INPUT") {
		if strings.HasPrefix(r, "-A INPUT") {
			if strings.Contains(r+" ", " -j "+Chain+" ") {
				return true, ""
			}
			return false, fam + ": first INPUT rule is " + r
		}
	}
	return false, fam + ": INPUT has no rules"
}
