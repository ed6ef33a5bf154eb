package jails

import (
	"fmt"
	"math/rand"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// refFilter is the plain reference implementation of Filter.Match: every
// failregex tried in order with package regexp, no prefilter, no
// backtracker of our own. Whatever Filter does for speed must give exactly
// what this gives.
type refFilter struct {
	fail   []*regexp.Regexp
	ignore []*regexp.Regexp
}

func newRefFilter(t testing.TB, def FilterDef) *refFilter {
	t.Helper()
	r := &refFilter{}
	for _, src := range def.FailRegex {
		exp, _, _ := expand(src)
		r.fail = append(r.fail, regexp.MustCompile(`^(?:`+exp+`)`))
	}
	for _, src := range def.IgnoreRegex {
		exp, _, _ := expand(src)
		r.ignore = append(r.ignore, regexp.MustCompile(`^(?:`+exp+`)`))
	}
	return r
}

func (r *refFilter) match(msg string) (Match, bool) {
	for i, re := range r.fail {
		loc := re.FindStringSubmatchIndex(msg)
		if loc == nil {
			continue
		}
		m := Match{Regex: i}
		hostSeen, userSeen, portSeen := false, false, false
		for g, name := range re.SubexpNames() {
			if loc[2*g] < 0 {
				continue
			}
			text := msg[loc[2*g]:loc[2*g+1]]
			switch {
			case strings.HasPrefix(name, "jkhost") && !hostSeen:
				// The first <HOST> that took part decides.
				hostSeen = true
				if a, err := netip.ParseAddr(text); err == nil {
					m.Addr = a.Unmap().WithZone("")
				}
			case (strings.HasPrefix(name, "jkuser") || name == "user") && !userSeen:
				m.User, userSeen = text, true
			case strings.HasPrefix(name, "jkport") && !portSeen:
				portSeen = true
				if p, err := strconv.ParseUint(text, 10, 16); err == nil {
					m.Port = uint16(p)
				}
			}
		}
		if !m.Addr.IsValid() {
			continue
		}
		for _, ig := range r.ignore {
			if ig.MatchString(msg) {
				return Match{}, false
			}
		}
		return m, true
	}
	return Match{}, false
}

// builtinPair compiles built-in filter name in mode both ways.
func builtinPair(t testing.TB, name, mode string) (*Filter, *refFilter) {
	t.Helper()
	def, err := Builtin(name, mode)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	return f, newRefFilter(t, def)
}

func agree(t testing.TB, f *Filter, r *refFilter, what, msg string) {
	t.Helper()
	got, gok := f.Match(msg)
	want, wok := r.match(msg)
	if gok != wok || got != want {
		t.Errorf("%s: %q: Match = %+v %v, reference %+v %v", what, msg, got, gok, want, wok)
	}
}

// variants derives lines from a corpus line that probe the edges of the
// matcher: truncations, appended text, embedded newlines, non-ASCII and
// invalid UTF-8, doubled text, random byte edits.
func variants(msg string, rng *rand.Rand, other string) []string {
	out := []string{msg, msg + " ", msg + "\n", "\n" + msg, msg + msg, msg + " from " + other, other + " " + msg}
	for n := len(msg) - 1; n >= 0; n -= 1 + n/6 {
		out = append(out, msg[:n])
	}
	if i := strings.LastIndex(msg, " "); i > 0 {
		out = append(out, msg[:i]+"\n"+msg[i:], msg[:i]+"é"+msg[i:], msg[:i]+"\xff"+msg[i:], msg[:i]+" \xe2\x82"+msg[i:])
	}
	const alphabet = " .:0123456789abcdef%[]()<>\"'\\\nxé\xff"
	for k := 0; k < 12 && len(msg) > 0; k++ {
		b := []byte(msg)
		for e := 0; e <= k%3; e++ {
			p := rng.Intn(len(b))
			switch rng.Intn(3) {
			case 0:
				b[p] = alphabet[rng.Intn(len(alphabet))]
			case 1:
				b = append(b[:p], b[p+1:]...)
			default:
				b = append(b[:p], append([]byte{alphabet[rng.Intn(len(alphabet))]}, b[p:]...)...)
			}
			if len(b) == 0 {
				break
			}
		}
		out = append(out, string(b))
	}
	return out
}

// TestFilterAgreesWithReference runs every built-in filter, in every mode,
// over its corpus and variants of each line, and compares Filter.Match
// with the reference.
func TestFilterAgreesWithReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for path, nm := range corpusFiles(t) {
		cases, err := readCorpus(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, mode := range BuiltinModes(nm[0]) {
			f, r := builtinPair(t, nm[0], mode)
			n := 0
			for i, c := range cases {
				other := cases[(i+1)%len(cases)].msg
				for _, v := range variants(c.msg, rng, other) {
					agree(t, f, r, fmt.Sprintf("%s (mode %s)", path, mode), v)
					n++
				}
			}
			for _, l := range sshdMix() {
				agree(t, f, r, nm[0]+" on the sshd mix", l)
			}
			if nm[0] == "sshd" {
				for _, l := range hostileSSHD() {
					agree(t, f, r, "sshd hostile", l)
				}
			}
			if n < 100 {
				t.Errorf("%s: only %d lines compared", path, n)
			}
		}
	}
}

// matcherExprs exercise each path of the backtracker; vm tells whether it
// runs them (no fallback to regexp at compile time).
var matcherExprs = []struct {
	expr string
	vm   bool // the backtracker runs it (no fallback at compile time)
}{
	{`^(?:Invalid user (.*) from ([0-9.]+)(?: port ([0-9]+))?$)`, true},
	{`^(?:a(.*?)b(.*)c)`, true},
	{`^(?:(.*)\n(.*))`, true},
	{`^(?:(.*)x)`, true},
	{`^(?:(?s)(.*)x)`, true},
	{`^(?:(.*)é)`, true},
	{`^(?:(?i)(.*) FROM (\w+))`, true},
	{`^(?:(\w+)\b(.*?)\B(.)$)`, true},
	{`^(?:(a|ab)(c|bcd)(d*))`, true},
	{`^(?:(?m)(.*)$\n^(.*))`, true},
	{`^(?:[^\]]*\] (x+?)(x*))`, true},
	{`^(?:(a*)*b)`, false},
	{`^(?:(a|)+b)`, false},
	{`^(?:((a|a)*)*c)`, false},
	{`^(?:(a|a|aa)*c)`, true},
	{`^(?:(?:(a)x|ay))`, true},        // a capture of a failed branch is undone
	{`^(?:(a)?ab)`, true},             // ... of a skipped quest too
	{`^(?:(.*) (b)?(\w)(x)?$)`, true}, // ... after a .* loop
}

var matcherInputs = []string{
	"", "x", "Invalid user bob from 1.2.3.4 port 22", "Invalid user a from 1.2.3.4 from 5.6.7.8",
	"Invalid user \n from 1.2.3.4", "axxbyyc", "abbbcbc", "ab\ncd", "a\nb\nc", "xx\nx", "\xffx\xe2\x82x",
	"éaé", "hello FROM world", "Hello from World", "word, x", "abcd", "abcdd", "abbcd", "] xxx", "a] xx] x",
	"aaab", "b", "ab", "ay", "ax", "aab", "q b bx", "q c bx", "q bx", strings.Repeat("a", 60) + "c", strings.Repeat("a", 60) + "d", strings.Repeat("a", 30),
}

// TestMatcherAgreesWithRegexp checks the backtracker against package
// regexp on expressions that exercise each of its paths, including the
// fallbacks (nullable loops, an exhausted step budget).
func TestMatcherAgreesWithRegexp(t *testing.T) {
	exprs := matcherExprs
	inputs := matcherInputs
	for _, e := range exprs {
		m, err := newMatcher(e.expr)
		if err != nil {
			t.Fatal(err)
		}
		if (m.insts != nil) != e.vm {
			t.Errorf("%s: backtracker used = %v, want %v", e.expr, m.insts != nil, e.vm)
		}
		for _, in := range inputs {
			want := m.re().FindStringSubmatchIndex(in)
			got := m.find(in, make([]int, m.ncap))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s on %q: %v, regexp %v", e.expr, in, got, want)
			}
			if m.matchString(in) != (want != nil) {
				t.Errorf("%s on %q: matchString disagrees", e.expr, in)
			}
		}
	}
	// An exponential case runs out of budget and falls back.
	m, _ := newMatcher(`^(?:(a|a|aa)*c)`)
	in := strings.Repeat("a", 40) + "d"
	if _, done := m.exec(in, make([]int, m.ncap)); done {
		t.Errorf("budget not exhausted on %q", in)
	}
	if m.find(in, make([]int, m.ncap)) != nil {
		t.Error("fallback matched")
	}
}

// FuzzSSHD compares the sshd filter (both modes) with the reference on
// arbitrary lines. Plain `go test` runs the seed corpus: the sshd corpora
// and the benchmark mix.
func FuzzSSHD(f *testing.F) {
	for _, p := range []string{"testdata/sshd.txt", "testdata/sshd.aggressive.txt"} {
		cases, err := readCorpus(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range cases {
			f.Add(c.msg)
		}
	}
	for _, l := range sshdMix()[:20] {
		f.Add(l)
	}
	for _, l := range hostileSSHD() {
		f.Add(l)
	}
	nf, nr := builtinPair(f, "sshd", "")
	af, ar := builtinPair(f, "sshd", "aggressive")
	f.Fuzz(func(t *testing.T, msg string) {
		agree(t, nf, nr, "sshd", msg)
		agree(t, af, ar, "sshd aggressive", msg)
	})
}

// FuzzBuiltin does the same for every built-in filter, the first byte of
// the input choosing the filter.
func FuzzBuiltin(f *testing.F) {
	names := BuiltinNames()
	for i, n := range names {
		cases, err := readCorpus("testdata/" + n + ".txt")
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range cases {
			f.Add(byte(i), c.msg)
		}
	}
	fs := make([]*Filter, len(names))
	rs := make([]*refFilter, len(names))
	for i, n := range names {
		fs[i], rs[i] = builtinPair(f, n, "")
	}
	f.Fuzz(func(t *testing.T, which byte, msg string) {
		i := int(which) % len(names)
		agree(t, fs[i], rs[i], names[i], msg)
	})
}

// FuzzMatcher compares the backtracker with package regexp on arbitrary
// expressions (users write their own failregexes) and inputs.
func FuzzMatcher(f *testing.F) {
	for i, e := range matcherExprs {
		f.Add(e.expr, matcherInputs[i%len(matcherInputs)])
	}
	for _, src := range builtins["sshd"].def.FailRegex {
		exp, _, _ := expand(src)
		f.Add(`^(?:`+exp+`)`, "Failed password for root from 203.0.113.1 port 22 ssh2")
	}
	f.Fuzz(func(t *testing.T, expr, in string) {
		if len(expr) > 200 || len(in) > 1000 {
			return
		}
		m, err := newMatcher(`^(?:` + expr + `)`)
		if err != nil {
			return
		}
		want := m.re().FindStringSubmatchIndex(in)
		got := m.find(in, make([]int, m.ncap))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s on %q: %v, regexp %v", expr, in, got, want)
		}
	})
}
