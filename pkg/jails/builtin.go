package jails

import (
	"fmt"
	"sort"
	"strings"
)

// builtinFilter is a filter of the built-in library: the regexes of mode
// "normal", and per extra mode the regexes it adds.
type builtinFilter struct {
	def   FilterDef
	modes map[string][]string // mode → failregexes added to normal's
}

// Regex fragments shared by the sshd filter.
const (
	sshPort     = `(?: port <PORT>)?`
	sshPreauth  = `(?: \[preauth\])?`
	sshFailUser = `(?:invalid user |illegal user )?<USER>`
)

// builtins is the built-in filter library, with names as fail2ban users
// know them. Every regex that sees user-controlled text (a user name, a
// URL, an agent) before <HOST> ends in "$" after a fixed suffix, so the
// greedy <USER> makes the last address in the line — the one the service
// wrote — the one found.
var builtins = map[string]builtinFilter{
	"sshd": {
		def: FilterDef{
			Units: []string{"ssh.service", "sshd.service"},
			FailRegex: []string{
				`^(?:error: )?Failed (?:password|keyboard-interactive/pam|keyboard-interactive|none|hostbased|gssapi-with-mic) for ` + sshFailUser + ` from <HOST>` + sshPort + `(?: ssh2)?` + sshPreauth + `$`,
				`^(?:Invalid|Illegal) user <USER> from <HOST>` + sshPort + `$`,
				`^User <USER> from <HOST> not allowed because (?:not listed in AllowUsers|listed in DenyUsers|not in any group|a group is listed in DenyGroups|none of user's groups are listed in AllowGroups)$`,
				`^(?:error: )?maximum authentication attempts exceeded for ` + sshFailUser + ` from <HOST>` + sshPort + `(?: ssh2)?` + sshPreauth + `$`,
				`^(?:Connection (?:closed|reset) by|Disconnected from) (?:authenticating|invalid) user <USER> <HOST>` + sshPort + sshPreauth + `$`,
				`^Disconnecting (?:authenticating|invalid) user <USER> <HOST>` + sshPort + `: Too many authentication failures` + sshPreauth + `$`,
				`^(?:error: )?PAM: (?:Authentication failure|User not known to the underlying authentication module) for (?:illegal user )?<USER> from <HOST>$`,
				`^(?:error: )?Received disconnect from <HOST>` + sshPort + `:\s*3: \S+: Auth (?:fail|cancel)`,
				`^ROOT LOGIN REFUSED FROM <HOST>` + sshPort + `$`,
				`^refused connect from \S+ \(<HOST>\)$`,
			},
			IgnoreRegex: []string{},
		},
		modes: map[string][]string{
			"aggressive": {
				`^Did not receive identification string from <HOST>` + sshPort + `$`,
				`^Unable to negotiate with <HOST>` + sshPort + `: no matching [a-z ]+ found`,
				`^(?:error: )?banner exchange: Connection from <HOST>` + sshPort + `: (?:invalid format|could not read protocol version|Connection timed out|Connection reset by peer)`,
				`^(?:error: )?kex_exchange_identification: Connection from <HOST>` + sshPort + `: `,
				`^Bad protocol version identification '.*' from <HOST>` + sshPort + `$`,
				`^Connection (?:closed|reset) by <HOST>` + sshPort + sshPreauth + `$`,
				`^Received disconnect from <HOST>` + sshPort + `:\s*14: No (?:supported|more) authentication methods available` + sshPreauth + `$`,
				`^(?:fatal: )?Timeout before authentication for <HOST>` + sshPort + `$`,
				`^(?:error: )?ssh_dispatch_run_fatal: Connection from <HOST>` + sshPort + `: `,
				`^(?:error: )?Protocol major versions differ for <HOST>` + sshPort + `: `,
				`^Failed publickey for ` + sshFailUser + ` from <HOST>` + sshPort + ` ssh2(?:: [A-Z0-9-]+ (?:SHA256|MD5):\S+)?$`,
				`^reverse mapping checking getaddrinfo for \S+ \[<HOST>\] failed(?: - POSSIBLE BREAK-IN ATTEMPT!)?$`,
				`^Address <HOST> maps to \S+, but this does not map back to the address`,
			},
		},
	},
}

// BuiltinNames returns the names of the built-in filters, sorted.
func BuiltinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// BuiltinModes returns the modes of built-in filter name ("normal" first),
// or nil for an unknown name.
func BuiltinModes(name string) []string {
	b, ok := builtins[name]
	if !ok {
		return nil
	}
	modes := []string{"normal"}
	var extra []string
	for m := range b.modes {
		extra = append(extra, m)
	}
	sort.Strings(extra)
	return append(modes, extra...)
}

// Builtin returns the definition of built-in filter name in mode ("" means
// "normal"). An unknown name or mode is an error naming it and the
// choices.
func Builtin(name, mode string) (FilterDef, error) {
	b, ok := builtins[name]
	if !ok {
		return FilterDef{}, fmt.Errorf("unknown filter %q (built-in filters: %s)", name, strings.Join(BuiltinNames(), ", "))
	}
	def := FilterDef{
		FailRegex:   append([]string(nil), b.def.FailRegex...),
		IgnoreRegex: append([]string(nil), b.def.IgnoreRegex...),
		Units:       append([]string(nil), b.def.Units...),
	}
	if mode == "" || mode == "normal" {
		return def, nil
	}
	extra, ok := b.modes[mode]
	if !ok {
		return FilterDef{}, fmt.Errorf("filter %s has no mode %q (modes: %s)", name, mode, strings.Join(BuiltinModes(name), ", "))
	}
	def.FailRegex = append(def.FailRegex, extra...)
	return def, nil
}
