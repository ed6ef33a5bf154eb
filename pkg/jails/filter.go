package jails

import (
	"fmt"
	"net/netip"
	"regexp/syntax"
	"sort"
	"strconv"
	"strings"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// FilterDef is a filter as written by a person: the YAML shape of a filter
// inside a jail, under the top-level `filters: NAME:` key, or in a
// standalone filter file.
//
// Each failregex is a Go regexp (RE2 syntax), anchored at the start of the
// journal MESSAGE, in which these macros expand:
//
//	<HOST>  a strict IPv4 or IPv6 address (required in every failregex);
//	        "::ffff:a.b.c.d" is returned as IPv4 and a "%zone" suffix is dropped
//	<USER>  the account name, greedy (".*"), so that with a pattern ending in
//	        "$" the host found is always the last one in the line
//	<PORT>  the client's source port (1–5 digits); lines of one connection
//	        that carry the same port are counted once (see Tracker)
//
// Where a greedy user would be wrong, a regex may capture the user with a
// group of its own: (?P<user>[^"]*).
//
// A line that matches an ignoreregex (also anchored) is never a failure.
//
// Some services name the client's address once per connection and write
// later failure lines of the same process without it (sshd at LogLevel
// VERBOSE: "Connection from H port P on L port Q", later "Disconnecting:
// Too many authentication failures [preauth]"). For them a filter lists
// context regexes (anchored, each with <HOST>, optionally <PORT>): a line
// that matches one records that address for its process (unit and PID)
// and is never a failure by itself. A failregex written with <CTXHOST>
// instead of <HOST> (<CTXHOST> matches nothing in the line) is a failure
// of the address its process's context holds; the line itself never
// supplies one. When such a line comes before any context line of its
// process, the failure waits, and the next context line of the process
// counts it with that line's address. Context_end regexes (anchored) end
// a process's connection: its context is forgotten after the line (which
// may itself be a context line). Contexts live as long as findtime and
// are capped in number (see ProcContexts); entries without a PID have
// none, so <CTXHOST> regexes never match them.
type FilterDef struct {
	FailRegex   []string `yaml:"failregex"`
	IgnoreRegex []string `yaml:"ignoreregex"`
	Context     []string `yaml:"context"`
	ContextEnd  []string `yaml:"context_end"`
	Units       []string `yaml:"units"` // default units when a jail names this filter and sets none
	// Unitless are the senders whose entries without _SYSTEMD_UNIT a jail
	// with this filter reads as entries of its first unit (see
	// journal.Unitless). Built-in filters only.
	Unitless []UnitlessSender `yaml:"-"`
}

// UnitlessSender is a daemon whose short-lived processes may log before
// journald has read their cgroup: its SYSLOG_IDENTIFIER and the UID those
// processes run as (kernel-supplied _UID, which no other user can send).
type UnitlessSender struct {
	Identifier string
	UID        uint32
}

// Match is what a filter found in one message.
type Match struct {
	Addr  netip.Addr
	User  string // "" when the regex has no <USER>
	Port  uint16 // 0 when the regex has no <PORT>
	Regex int    // index of the failregex that matched
}

// Filter is a compiled FilterDef. It is safe for concurrent use.
type Filter struct {
	fail     []failRegex
	ignore   []*matcher
	ctx      []failRegex // context regexes (hosts, ports set)
	ctxEnd   []failRegex // context_end regexes (no macros needed)
	hasCtx   bool        // some failregex uses <CTXHOST>
	units    []string
	unitless []UnitlessSender

	// Literal prefilter: a failregex is tried only if the message starts
	// with one of its possible literal prefixes and contains the literals
	// every match contains (failRegex.required). byFirst indexes the
	// candidates by the first byte of the message; always lists regexes
	// without a usable prefix. The regexes then run on matcher, which
	// gives what package regexp gives, faster (filter_exec.go).
	byFirst [256][]int
	always  []int
}

type failRegex struct {
	m        *matcher
	src      string
	prefixes []string // empty: no prefilter
	required []string // literals every match contains (a second prefilter)
	hosts    []int    // submatch indexes of <HOST> groups
	ctxHost  bool     // written with <CTXHOST>: the address comes from the process's context
	users    []int
	ports    []int
}

// Patterns the macros expand to. hostPattern is deliberately strict about
// the characters it accepts; what it captures is then parsed with netip.
const (
	ipv4Pattern = `(?:[0-9]{1,3}\.){3}[0-9]{1,3}`
	ipv6Pattern = `[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?::?` + ipv4Pattern + `)?`
	zonePattern = `(?:%[0-9A-Za-z_.-]{1,32})?`
)

// Units returns the filter's default units (may be empty).
func (f *Filter) Units() []string { return append([]string(nil), f.units...) }

// Unitless returns the senders whose entries without _SYSTEMD_UNIT the
// filter's jails read (may be empty).
func (f *Filter) Unitless() []UnitlessSender { return append([]UnitlessSender(nil), f.unitless...) }

// NumRegex returns the number of failregexes.
func (f *Filter) NumRegex() int { return len(f.fail) }

// Regex returns the source text of failregex i as written.
func (f *Filter) Regex(i int) string { return f.fail[i].src }

// expand replaces the macros of one regex with uniquely named groups. It
// returns the expansion, the number of <HOST> and of <CTXHOST>.
func expand(src string) (string, int, int) {
	var b strings.Builder
	hosts, ctxHosts := 0, 0
	n := 0
	for {
		i := strings.IndexByte(src, '<')
		if i < 0 {
			b.WriteString(src)
			break
		}
		b.WriteString(src[:i])
		rest := src[i:]
		switch {
		case strings.HasPrefix(rest, "<HOST>"):
			fmt.Fprintf(&b, `(?P<jkhost%d>%s|%s)%s`, n, ipv4Pattern, ipv6Pattern, zonePattern)
			src = rest[len("<HOST>"):]
			hosts++
		case strings.HasPrefix(rest, "<CTXHOST>"):
			src = rest[len("<CTXHOST>"):]
			ctxHosts++
		case strings.HasPrefix(rest, "<USER>"):
			fmt.Fprintf(&b, `(?P<jkuser%d>.*)`, n)
			src = rest[len("<USER>"):]
		case strings.HasPrefix(rest, "<PORT>"):
			fmt.Fprintf(&b, `(?P<jkport%d>[0-9]{1,5})`, n)
			src = rest[len("<PORT>"):]
		default:
			b.WriteByte('<')
			src = rest[1:]
		}
		n++
	}
	return b.String(), hosts, ctxHosts
}

// Compile checks and compiles def. The error names the bad regex by its
// list and index and quotes it; a failregex without <HOST> is an error.
func Compile(def FilterDef) (*Filter, error) {
	if len(def.FailRegex) == 0 {
		return nil, fmt.Errorf("filter has no failregex")
	}
	f := &Filter{units: append([]string(nil), def.Units...), unitless: append([]UnitlessSender(nil), def.Unitless...)}
	for i, src := range def.FailRegex {
		fr, ctxHosts, err := compileFail(src)
		switch {
		case err != nil:
			return nil, fmt.Errorf("failregex[%d] %q: %w", i, src, err)
		case len(fr.hosts) > 0 && ctxHosts > 0:
			return nil, fmt.Errorf("failregex[%d] %q: both <HOST> and <CTXHOST>", i, src)
		case len(fr.hosts) == 0 && ctxHosts == 0:
			return nil, fmt.Errorf("failregex[%d] %q: no <HOST>", i, src)
		case ctxHosts > 0 && len(def.Context) == 0:
			return nil, fmt.Errorf("failregex[%d] %q: <CTXHOST> needs context regexes (context:)", i, src)
		}
		if ctxHosts > 0 {
			fr.ctxHost = true
			f.hasCtx = true
		}
		f.fail = append(f.fail, fr)
		if len(fr.prefixes) == 0 {
			f.always = append(f.always, i)
			continue
		}
		seen := map[byte]bool{}
		for _, p := range fr.prefixes {
			if !seen[p[0]] {
				seen[p[0]] = true
				f.byFirst[p[0]] = append(f.byFirst[p[0]], i)
			}
		}
	}
	for i, src := range def.IgnoreRegex {
		exp, _, _ := expand(src)
		m, err := newMatcher(`^(?:` + exp + `)`)
		if err != nil {
			return nil, fmt.Errorf("ignoreregex[%d] %q: %w", i, src, err)
		}
		f.ignore = append(f.ignore, m)
	}
	for i, src := range def.Context {
		fr, ctxHosts, err := compileFail(src)
		switch {
		case err != nil:
			return nil, fmt.Errorf("context[%d] %q: %w", i, src, err)
		case len(fr.hosts) == 0 || ctxHosts > 0:
			return nil, fmt.Errorf("context[%d] %q: needs <HOST> (and no <CTXHOST>)", i, src)
		}
		f.ctx = append(f.ctx, fr)
	}
	for i, src := range def.ContextEnd {
		fr, _, err := compileFail(src)
		if err != nil {
			return nil, fmt.Errorf("context_end[%d] %q: %w", i, src, err)
		}
		f.ctxEnd = append(f.ctxEnd, fr)
	}
	return f, nil
}

// compileFail compiles one failregex or context regex, and returns the
// number of <CTXHOST> in it.
func compileFail(src string) (failRegex, int, error) {
	exp, _, ctxHosts := expand(src)
	m, names, err := compileMatcher(`^(?:` + exp + `)`)
	if err != nil {
		return failRegex{}, 0, err
	}
	fr := failRegex{m: m, src: src, prefixes: literalPrefixes(`^(?:` + exp + `)`), required: requiredLiterals(`^(?:` + exp + `)`)}
	for j, name := range names {
		switch {
		case strings.HasPrefix(name, "jkhost"):
			fr.hosts = append(fr.hosts, j)
		case strings.HasPrefix(name, "jkuser"), name == "user":
			fr.users = append(fr.users, j)
		case strings.HasPrefix(name, "jkport"):
			fr.ports = append(fr.ports, j)
		}
	}
	return fr, ctxHosts, nil
}

// Match reports whether msg is a failure, and which address (and user,
// port) it names. Regexes are tried in order; the first whose <HOST>
// parses as an address wins. A message that matches any ignoreregex is
// never a failure.
func (f *Filter) Match(msg string) (Match, bool) {
	m, ok := f.matchFail(msg, false)
	if !ok {
		return Match{}, false
	}
	if f.Ignored(msg) {
		return Match{}, false
	}
	return m, true
}

// Failed reports whether a failregex matches msg, ignoreregexes aside
// (`jailkeeper test` counts lines that both match as "ignored").
func (f *Filter) Failed(msg string) bool {
	_, ok := f.matchFail(msg, false)
	return ok
}

// Ignored reports whether msg matches one of the filter's ignoreregexes.
func (f *Filter) Ignored(msg string) bool {
	for _, m := range f.ignore {
		if m.matchString(msg) {
			return true
		}
	}
	return false
}

// matchFail tries the failregexes in order. With ctx, a <CTXHOST> regex
// may match too, giving a Match without an address; without, those
// regexes are skipped.
func (f *Filter) matchFail(msg string, ctx bool) (Match, bool) {
	if msg == "" {
		return Match{}, false
	}
	cands := f.byFirst[msg[0]]
	if len(f.always) == 0 {
		for _, i := range cands {
			if m, ok := f.try(&f.fail[i], i, msg, true, ctx); ok {
				return m, true
			}
		}
		return Match{}, false
	}
	// Keep the order of the regexes when some have no prefix.
	a, c := 0, 0
	for a < len(f.always) || c < len(cands) {
		var i int
		check := false
		if c >= len(cands) || (a < len(f.always) && f.always[a] < cands[c]) {
			i = f.always[a]
			a++
		} else {
			i = cands[c]
			c++
			check = true
		}
		if m, ok := f.try(&f.fail[i], i, msg, check, ctx); ok {
			return m, true
		}
	}
	return Match{}, false
}

func (f *Filter) try(fr *failRegex, i int, msg string, check, ctx bool) (Match, bool) {
	if fr.ctxHost && !ctx {
		return Match{}, false
	}
	if check {
		found := false
		for _, p := range fr.prefixes {
			if strings.HasPrefix(msg, p) {
				found = true
				break
			}
		}
		if !found {
			return Match{}, false
		}
	}
	for _, r := range fr.required {
		if !strings.Contains(msg, r) {
			return Match{}, false
		}
	}
	var buf [32]int
	var loc []int
	if fr.m.ncap <= len(buf) {
		loc = fr.m.find(msg, buf[:fr.m.ncap])
	} else {
		loc = fr.m.find(msg, make([]int, fr.m.ncap))
	}
	if loc == nil {
		return Match{}, false
	}
	m := Match{Regex: i}
	for _, g := range fr.hosts {
		if loc[2*g] < 0 {
			continue
		}
		a, err := netip.ParseAddr(msg[loc[2*g]:loc[2*g+1]])
		if err != nil {
			return Match{}, false
		}
		m.Addr = prefix.Addr(a)
		break
	}
	if !m.Addr.IsValid() && !fr.ctxHost {
		return Match{}, false
	}
	for _, g := range fr.users {
		if loc[2*g] >= 0 {
			m.User = msg[loc[2*g]:loc[2*g+1]]
			break
		}
	}
	for _, g := range fr.ports {
		if loc[2*g] >= 0 {
			if p, err := strconv.ParseUint(msg[loc[2*g]:loc[2*g+1]], 10, 16); err == nil {
				m.Port = uint16(p)
			}
			break
		}
	}
	return m, true
}

// maxRequired bounds the number of required literals kept per regex, and
// minRequired is the shortest one worth a search.
const (
	maxRequired = 2
	minRequired = 4
)

// requiredLiterals returns up to maxRequired literal strings that every
// match of expr contains, longest first, leaving out the literal the
// match starts with (the prefix prefilter checks that one).
func requiredLiterals(expr string) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	var lits []string
	collectRequired(re.Simplify(), &lits, true)
	sort.SliceStable(lits, func(i, j int) bool { return len(lits[i]) > len(lits[j]) })
	var out []string
	for _, l := range lits {
		if len(l) >= minRequired && len(out) < maxRequired {
			out = append(out, l)
		}
	}
	return out
}

// collectRequired appends to lits literals that every match of re
// contains. atStart tells that re starts the expression, whose leading
// literal is not wanted.
func collectRequired(re *syntax.Regexp, lits *[]string, atStart bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase == 0 && !atStart {
			*lits = append(*lits, string(re.Rune))
		}
	case syntax.OpCapture, syntax.OpPlus:
		collectRequired(re.Sub[0], lits, atStart)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			collectRequired(re.Sub[0], lits, atStart)
		}
	case syntax.OpConcat:
		var run []rune
		for _, sub := range re.Sub {
			switch {
			case sub.Op == syntax.OpLiteral && sub.Flags&syntax.FoldCase == 0:
				run = append(run, sub.Rune...)
				continue
			case sub.Op == syntax.OpBeginText || sub.Op == syntax.OpBeginLine:
				continue
			}
			if len(run) > 0 {
				if !atStart {
					*lits = append(*lits, string(run))
				}
				run = nil
			}
			collectRequired(sub, lits, atStart && len(run) == 0 && sub.Op == syntax.OpCapture)
			atStart = false
		}
		if len(run) > 0 && !atStart {
			*lits = append(*lits, string(run))
		}
	}
}

// maxPrefixes bounds the number of literal prefixes kept per regex.
const maxPrefixes = 64

// literalPrefixes returns literal strings one of which starts every match
// of the anchored expression expr, or nil when it cannot tell (the regex
// is then always tried).
func literalPrefixes(expr string) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	set, _ := prefixSet(re.Simplify())
	for _, s := range set {
		if s == "" {
			return nil
		}
	}
	// Keep only the shortest: "Failed " covers "Failed password ".
	sort.SliceStable(set, func(i, j int) bool { return len(set[i]) < len(set[j]) })
	var out []string
	for _, s := range set {
		covered := false
		for _, o := range out {
			if strings.HasPrefix(s, o) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, s)
		}
	}
	return out
}

// prefixSet returns a set of strings one of which starts every match of
// re; exact reports whether re matches exactly those strings (so that
// what follows may be appended).
func prefixSet(re *syntax.Regexp) (set []string, exact bool) {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginText, syntax.OpBeginLine:
		return []string{""}, true
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return []string{""}, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) >= 8 {
					return []string{""}, false
				}
				out = append(out, string(r))
			}
		}
		return out, true
	case syntax.OpCapture:
		return prefixSet(re.Sub[0])
	case syntax.OpQuest:
		s, ex := prefixSet(re.Sub[0])
		return append(s, ""), ex
	case syntax.OpPlus:
		s, _ := prefixSet(re.Sub[0])
		return s, false
	case syntax.OpRepeat:
		if re.Min == 0 {
			return []string{""}, false
		}
		s, ex := prefixSet(re.Sub[0])
		return s, ex && re.Min == 1 && re.Max == 1
	case syntax.OpAlternate:
		var out []string
		exact := true
		for _, sub := range re.Sub {
			s, ex := prefixSet(sub)
			out = append(out, s...)
			exact = exact && ex
			if len(out) > maxPrefixes {
				return []string{""}, false
			}
		}
		return out, exact
	case syntax.OpConcat:
		cur := []string{""}
		for _, sub := range re.Sub {
			s, ex := prefixSet(sub)
			if len(cur)*len(s) > maxPrefixes {
				return cur, false
			}
			next := make([]string, 0, len(cur)*len(s))
			for _, a := range cur {
				for _, b := range s {
					next = append(next, a+b)
				}
			}
			cur = next
			if !ex {
				return cur, false
			}
		}
		return cur, true
	}
	return []string{""}, false
}
