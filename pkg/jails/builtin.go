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

// builtins is the built-in filter library, with names as fail2ban users
// know them. Every regex that sees user-controlled text (a user name, a
// URL, an agent) before <HOST> ends in "$" after a fixed suffix, so the
// greedy <USER> makes the last address in the line — the one the service
// wrote — the one found.
var builtins = map[string]builtinFilter{}

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
		Unitless:    append([]UnitlessSender(nil), b.def.Unitless...),
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
