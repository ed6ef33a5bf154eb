package testbed

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Chain is the name of jailkeeper's own chain in the iptables backend.
const Chain = "JAILKEEPER"

// SetPrefix starts the name of every ipset set jailkeeper creates.
const SetPrefix = "jk-"

// WhitelistSetPrefix starts the names of jailkeeper's whitelist sets
// (jk-wl4, jk-wl6); every other jk- set holds bans (jk-JAIL-4, -n4, -6,
// -n6).
const WhitelistSetPrefix = "jk-wl"

// KernelSet is one ipset set in the server namespace and its members.
type KernelSet struct {
	Name    string
	Type    string // "hash:ip", "hash:net", …
	Members []netip.Prefix
}

// IsWhitelist reports whether s is one of jailkeeper's whitelist sets.
func (s KernelSet) IsWhitelist() bool { return strings.HasPrefix(s.Name, WhitelistSetPrefix) }

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
	sets, err := h.ListSrvSets()
	if err != nil {
		t.Fatal(err)
	}
	return sets
}

// ListSrvSets is SrvSets returning an error instead of failing a test.
func (h *Hosts) ListSrvSets() ([]KernelSet, error) {
	out, err := h.InSrv("ipset", "list").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ipset list in %s: %v\n%s", h.Srv, err, out)
	}
	sets, err := parseIpsetList(string(out))
	if err != nil {
		return nil, fmt.Errorf("ipset list in %s: %w", h.Srv, err)
	}
	var jk []KernelSet
	for _, s := range sets {
		if strings.HasPrefix(s.Name, SetPrefix) {
			jk = append(jk, s)
		}
	}
	return jk, nil
}

// SrvBanned reports whether a jailkeeper ban set (not a whitelist set) in
// the server namespace holds addr (as an address or inside a prefix), and
// names the set.
func (h *Hosts) SrvBanned(t testing.TB, addr string) (string, bool) {
	t.Helper()
	a := netip.MustParseAddr(addr)
	for _, s := range h.SrvSets(t) {
		if !s.IsWhitelist() && s.Contains(a) {
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

// HostFirewall returns a read-only snapshot of the host's own firewall
// (this process's network namespace): `nft list ruleset` (which shows the
// iptables-nft tables too), `ipset list -n`, and the legacy iptables
// tables loaded. A test takes one before and one after to prove it never
// touched the host. Nothing here creates or changes a table.
func HostFirewall() (string, error) {
	var b strings.Builder
	for _, argv := range [][]string{{"nft", "list", "ruleset"}, {"ipset", "list", "-n"}} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
		fmt.Fprintf(&b, "# %s\n%s", strings.Join(argv, " "), out)
	}
	for _, f := range []string{"/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"} {
		out, _ := os.ReadFile(f) // absent when the legacy modules are not loaded
		fmt.Fprintf(&b, "# %s\n%s", f, out)
	}
	return b.String(), nil
}

// RouteToAttacker makes the server reach prefix (an extra attacker network
// such as 2001:db8:0:1::/64, whose addresses are added to the attacker's
// veth with AddAttackerAddr) through the veth.
func (h *Hosts) RouteToAttacker(t testing.TB, prefix string) {
	t.Helper()
	fam := "-4"
	if strings.Contains(prefix, ":") {
		fam = "-6"
	}
	Run(t, "ip", "-n", h.Srv, fam, "route", "add", prefix, "dev", h.SrvLink)
}
