package config

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// filterNameRE is the shape of a filter's name.
var filterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// JailNames returns the enabled jails' names, sorted.
func (c *Config) JailNames() []string {
	var names []string
	for name, j := range c.Jails {
		if j.Enabled != nil && !*j.Enabled {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Effective returns jail name with every unset field taken from defaults.
// A jail that names no filter and no failregex uses the filter of its own
// name (a filter of the configuration, else a built-in one), so that
// `jails: {postfix: {}}` is a whole jail. A jail of a built-in filter that
// sets no ports bans the ports of that service (jails.BuiltinPorts), not
// defaults.ports. An API-only jail has no filter, whatever its name.
func (c *Config) Effective(name string) Jail {
	j := c.Jails[name]
	d := c.Defaults
	if !j.APIOnly && j.Filter == "" && len(j.FailRegex) == 0 && c.hasFilter(name) {
		j.Filter = name
	}
	if j.Ports == nil && j.Filter != "" {
		if _, custom := c.Filters[j.Filter]; !custom {
			for _, p := range jails.BuiltinPorts(j.Filter) {
				j.Ports = append(j.Ports, Port(p))
			}
		}
	}
	if j.MaxRetry == nil {
		j.MaxRetry = d.MaxRetry
	}
	if j.FindTime == nil {
		j.FindTime = d.FindTime
	}
	if j.BanTime == nil {
		j.BanTime = d.BanTime
	}
	if j.Ports == nil {
		j.Ports = d.Ports
	}
	if j.Protocol == "" {
		j.Protocol = d.Protocol
	}
	if j.Action == "" {
		j.Action = d.Action
	}
	if j.IPv6Prefix == nil {
		j.IPv6Prefix = d.IPv6Prefix
	}
	if j.BanTimeIncrement == nil {
		j.BanTimeIncrement = d.BanTimeIncrement
	}
	if j.Distributed == nil {
		j.Distributed = d.Distributed
	}
	if j.SubnetEscalation == nil {
		j.SubnetEscalation = d.SubnetEscalation
	}
	if j.MaxTracked == nil {
		j.MaxTracked = d.MaxTracked
	}
	if j.Mode == "" {
		j.Mode = d.Mode
	}
	return j
}

// hasFilter reports whether name is a filter of the configuration or a
// built-in one.
func (c *Config) hasFilter(name string) bool {
	if _, ok := c.Filters[name]; ok {
		return true
	}
	_, err := jails.Builtin(name, "")
	return err == nil
}

func (c *Config) validate() error {
	switch c.Firewall.Backend {
	case "auto", "iptables", "nftables", "none":
	default:
		return c.errAt("firewall.backend", "bad firewall backend %q: want auto, iptables, nftables or none", c.Firewall.Backend)
	}
	switch c.Firewall.WhitelistAction {
	case "return", "accept":
	default:
		return c.errAt("firewall.whitelist_action", "bad whitelist_action %q: want return or accept", c.Firewall.WhitelistAction)
	}
	for name := range c.Filters {
		if !filterNameRE.MatchString(name) {
			return c.errAt("filters."+name, "bad filter name %q: use lower-case letters, digits, - and _", name)
		}
	}
	if c.Defaults.APIOnly {
		return c.errAt("defaults.api_only", "api_only is a jail's own setting, not a default")
	}
	for _, name := range c.JailNames() {
		if err := c.validateJail(name); err != nil {
			return err
		}
	}
	if err := c.validateActions(); err != nil {
		return err
	}
	return c.validateSync()
}

func (c *Config) validateJail(name string) error {
	at := "jails." + name
	// The firewall's rule, since the name becomes part of kernel object
	// names: a name it refuses must fail here, not at the daemon's start.
	if err := firewall.CheckJailName(name); err != nil {
		return c.errAt(at, "%v", err)
	}
	j := c.Effective(name)
	if j.APIOnly {
		// What reads the journal has no meaning here: an API-only jail
		// with a filter is a mistake to report, not to ignore.
		raw := c.Jails[name]
		for _, f := range []struct {
			key string
			set bool
		}{{"filter", raw.Filter != ""}, {"failregex", raw.FailRegex != nil}, {"ignoreregex", raw.IgnoreRegex != nil},
			{"units", raw.Units != nil}, {"identifiers", raw.Identifiers != nil}, {"mode", raw.Mode != ""}} {
			if f.set {
				return c.errAt(at+"."+f.key, "jail %s: api_only takes bans only from the API and reads no journal: remove %s", name, f.key)
			}
		}
	} else if j.Filter != "" && len(j.FailRegex) > 0 {
		return c.errAt(at+".failregex", "jail %s: set either filter or failregex, not both", name)
	} else if j.Filter == "" && len(j.FailRegex) == 0 {
		return c.errAt(at, "jail %s: no filter and no failregex (a jail fed only by the API, such as the fleet's, sets api_only: true)", name)
	}
	if j.Filter != "" && !j.APIOnly {
		if _, ok := c.Filters[j.Filter]; !ok {
			if _, err := jails.Builtin(j.Filter, j.Mode); err != nil {
				return c.errAt(at+".filter", "jail %s: unknown filter %q (built-in: %s)", name, j.Filter, strings.Join(jails.BuiltinNames(), ", "))
			}
		}
	}
	if j.MaxRetry == nil || *j.MaxRetry < 1 {
		return c.errAt(at+".maxretry", "jail %s: maxretry must be at least 1", name)
	}
	if j.FindTime == nil || *j.FindTime <= 0 {
		return c.errAt(at+".findtime", "jail %s: findtime must be positive", name)
	}
	if j.BanTime == nil || (*j.BanTime <= 0 && *j.BanTime != Permanent) {
		return c.errAt(at+".bantime", "jail %s: bantime must be positive, -1 or permanent", name)
	}
	switch j.Protocol {
	case "tcp", "udp", "all":
	default:
		return c.errAt(at+".protocol", "jail %s: bad protocol %q: want tcp, udp or all", name, j.Protocol)
	}
	switch j.Action {
	case "reject", "drop":
	default:
		return c.errAt(at+".action", "jail %s: bad action %q: want reject or drop", name, j.Action)
	}
	if j.IPv6Prefix != nil && (*j.IPv6Prefix < jails.MinIPv6Prefix || *j.IPv6Prefix > jails.MaxIPv6Prefix) {
		return c.errAt(at+".ipv6_prefix", "jail %s: ipv6_prefix must be %d..%d", name, jails.MinIPv6Prefix, jails.MaxIPv6Prefix)
	}
	for _, u := range append(append([]string{}, j.Units...), j.Identifiers...) {
		if u == "" || strings.ContainsAny(u, " \t\n=") {
			return c.errAt(at, "jail %s: bad unit or identifier %q", name, u)
		}
	}
	return nil
}

// Runtime is the configuration in the form the daemon wires: compiled
// jails, the firewall layout and the resolved whitelist.
type Runtime struct {
	Jails           []jails.Jail
	Layout          firewall.Layout
	Whitelist       *jails.Whitelist
	Backend         string
	KillConnections bool
	// Sources names each jail's filter and mode as configured (the D-Bus
	// object model shows them).
	Sources map[string]JailSource
	// Warnings are things to log at start (e.g. identifier matching, which
	// any local user can forge).
	Warnings []string
	// Unresolved are whitelist host names that did not resolve: the
	// whitelist holds everything else, and the daemon retries them.
	Unresolved []string
}

// JailSource is where a jail's filter comes from: a filter's name ("" for
// the jail's own failregex) and a built-in filter's mode.
type JailSource struct {
	Filter, Mode string
}

// Resolve compiles filters, resolves whitelist host names and builds the
// firewall layout.
func (c *Config) Resolve() (*Runtime, error) {
	rt := &Runtime{
		Backend:         c.Firewall.Backend,
		KillConnections: c.Firewall.KillConnections == nil || *c.Firewall.KillConnections,
		Sources:         map[string]JailSource{},
	}
	entries := make([]string, len(c.Whitelist))
	for i, a := range c.Whitelist {
		entries[i] = string(a)
	}
	wl, err := jails.ResolveWhitelist(entries, c.IgnoreSelf == nil || *c.IgnoreSelf)
	var unresolved *jails.UnresolvedError
	if errors.As(err, &unresolved) {
		// Start with what resolved; the daemon retries the rest.
		rt.Unresolved = unresolved.Names
		rt.Warnings = append(rt.Warnings, fmt.Sprintf("%v; running with the rest of the whitelist, retrying in the background", err))
	} else if err != nil {
		return nil, c.errAt("whitelist", "resolving whitelist: %v", err)
	}
	if fam, all := prefix.CoversAll(wl); all {
		return nil, c.errAt("whitelist", "whitelist covers every %s address: it would exempt every source (like 0.0.0.0/0 or ::/0)", fam)
	}
	rt.Whitelist = jails.NewWhitelist(wl)
	rt.Layout.Whitelist = rt.Whitelist.Prefixes()
	rt.Layout.WhitelistAccept = c.Firewall.WhitelistAction == "accept"
	for _, name := range c.JailNames() {
		j := c.Effective(name)
		at := "jails." + name
		if j.APIOnly {
			rt.Sources[name] = JailSource{}
			rt.Jails = append(rt.Jails, c.jail(name, j, nil, nil))
			rt.Layout.Jails = append(rt.Layout.Jails, layoutJail(name, j))
			continue
		}
		rt.Sources[name] = JailSource{Filter: j.Filter, Mode: j.Mode}
		def := jails.FilterDef{FailRegex: j.FailRegex, IgnoreRegex: j.IgnoreRegex}
		if j.Filter != "" {
			if f, ok := c.Filters[j.Filter]; ok {
				def = jails.FilterDef{FailRegex: f.FailRegex, IgnoreRegex: f.IgnoreRegex, Context: f.Context, ContextEnd: f.ContextEnd, Units: f.Units}
			} else if def, err = jails.Builtin(j.Filter, j.Mode); err != nil {
				return nil, c.errAt(at+".filter", "jail %s: %v", name, err)
			}
			def.IgnoreRegex = append(def.IgnoreRegex, j.IgnoreRegex...)
		}
		f, err := jails.Compile(def)
		if err != nil {
			key := at + ".failregex"
			if j.Filter != "" {
				key = "filters." + j.Filter
			}
			return nil, c.errAt(key, "jail %s: %v", name, err)
		}
		units := j.Units
		if units == nil {
			units = def.Units
		}
		if len(units) == 0 && len(j.Identifiers) == 0 {
			return nil, c.errAt(at, "jail %s: no units to read (set units:)", name)
		}
		if len(j.Identifiers) > 0 {
			rt.Warnings = append(rt.Warnings, fmt.Sprintf(
				"jail %s matches SYSLOG_IDENTIFIER %s: any local user can forge such entries; prefer units:",
				name, strings.Join(j.Identifiers, ", ")))
		}
		rt.Jails = append(rt.Jails, c.jail(name, j, f, units))
		rt.Layout.Jails = append(rt.Layout.Jails, layoutJail(name, j))
	}
	return rt, nil
}

// jail is the engine's form of jail name, whose effective settings are j.
func (c *Config) jail(name string, j Jail, f *jails.Filter, units []string) jails.Jail {
	jj := jails.Jail{
		Name:        name,
		Filter:      f,
		Units:       units,
		Identifiers: j.Identifiers,
		MaxRetry:    *j.MaxRetry,
		FindTime:    j.FindTime.Std(),
		BanTime:     j.BanTime.Std(),
		APIOnly:     j.APIOnly,
	}
	if *j.BanTime == Permanent {
		jj.BanTime = jails.Permanent
	}
	if j.IPv6Prefix != nil {
		jj.IPv6Prefix = *j.IPv6Prefix
	}
	if j.MaxTracked != nil {
		jj.MaxTracked = *j.MaxTracked
	}
	if inc := j.BanTimeIncrement; inc != nil {
		// An unset factor or window is the engine's default.
		jj.Increment = jails.Increment{Enabled: inc.Enabled, Factor: inc.Factor, Max: inc.Max.Std(), Window: inc.Window.Std()}
	}
	if d := j.Distributed; d != nil {
		jj.Distributed = jails.Distributed{Window: d.Window.Std(), MinAddresses: d.MinAddresses, MaxRetry: d.MaxRetry}
	}
	if s := j.SubnetEscalation; s != nil {
		jj.SubnetEscalation = jails.SubnetEscalation{Prefix4: s.Prefix4, Prefix6: s.Prefix6, Threshold: s.Threshold}
	}
	return jj
}

// layoutJail is the firewall's rules of jail name, whose effective
// settings are j.
func layoutJail(name string, j Jail) firewall.JailRules {
	ports := make([]uint16, len(j.Ports))
	for i, p := range j.Ports {
		ports[i] = uint16(p)
	}
	return firewall.JailRules{
		Name:     name,
		Ports:    ports,
		Protocol: firewall.Protocol(j.Protocol),
		Action:   firewall.Action(j.Action),
	}
}
