package jails

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// matcher runs one anchored filter regex. It gives exactly the submatch
// positions that regexp.FindStringSubmatchIndex gives (leftmost-first,
// Perl semantics), only faster on journal lines:
//
//   - it backtracks over the same syntax.Prog as package regexp does, but
//     without the visited bitmap that regexp clears on every call (its cost
//     grows with the program, and <HOST> makes programs large);
//   - a greedy (or lazy) ".*" followed by a literal byte, as <USER> is
//     followed by " from ", does not step rune by rune: it jumps straight
//     to the positions holding that byte, in the order the loop would
//     have tried them;
//   - a run of literal ASCII bytes is compared at once;
//   - an alternative whose first byte cannot be the next byte of the
//     message is not tried (nor saved for later): it could only fail;
//   - the old value of a capture is saved only while a choice is pending.
//
// Without the bitmap, backtracking is not linear in the worst case, so each
// run has a step budget; a line that exhausts it is matched by package
// regexp instead, so a crafted line costs at most budget steps more than it
// did before. Programs with a loop over an expression that can match the
// empty string (whose result depends on the bitmap pruning the loop)
// always use package regexp.
//
// Package regexp's compiled form is built on first use only (most filters
// never need it), and the matcher keeps none of the syntax.Prog it was
// built from: both would stay resident in the daemon for nothing.
type matcher struct {
	re    func() *regexp.Regexp // compiles on first call, once
	insts []vmInst              // nil: always use re
	runes []runeAux             // distinct when they accept ASCII bytes only
	lits  []litAux
	alts  []altAux
	sets  []byteSet // the distinct first-byte sets of alts
	start uint32
	ncap  int
}

// vmInst is one instruction of the program, small so that a program stays
// in the L1 cache; aux indexes runes (InstRune, InstRune1) or alts
// (InstAlt, InstAltMatch). In an InstRune1 that starts a chain of
// InstRune1 of ASCII bytes without case folding, arg is 1 + the index of
// the chain in lits (0: none).
type vmInst struct {
	out, arg uint32
	aux      uint16
	op       syntax.InstOp
}

type runeAux struct {
	tab [2]uint64 // the ASCII bytes accepted
	// inst is a copy of the instruction when it may accept a non-ASCII
	// rune (nil: it accepts none).
	inst *syntax.Inst
}

// litAux is a chain of InstRune1 of ASCII bytes without case folding: its
// bytes (2 or more) and the instruction after it.
type litAux struct {
	lit string
	out uint32
}

type altAux struct {
	// The bytes that can start the out and arg branches (bytes ≥ 0x80
	// stand for any non-ASCII rune), as indexes into matcher.sets (few
	// distinct sets serve thousands of alternatives), and whether a branch
	// can get past its first byte without consuming one (then it is always
	// tried).
	outFirst, argFirst uint16
	outNull, argNull   bool
	// skip is, for the InstAlt of a ".*" loop whose exit starts with
	// literal ASCII bytes, those bytes ("" otherwise); lazy tells ".*?".
	skip string
	lazy bool
}

// Frame kinds of the backtracking stack.
const (
	frameResume  = iota // continue at pc, pos
	frameRestore        // caps[pc] = pos
	frameSkipDn         // greedy .* loop from lo: exit at hi next, then at the previous occurrence of the skip literal
	frameSkipUp         // lazy .*? loop up to hi: exit at lo next, then at the next occurrence
)

type frame struct {
	pc     uint32
	lo, hi int32
	kind   uint8
	aux    uint16
}

// byteSet is a set of bytes.
type byteSet [4]uint64

func (b *byteSet) add(c byte)      { b[c>>6] |= 1 << (c & 63) }
func (b *byteSet) has(c byte) bool { return b[c>>6]&(1<<(c&63)) != 0 }
func (b *byteSet) union(o byteSet) {
	b[0], b[1], b[2], b[3] = b[0]|o[0], b[1]|o[1], b[2]|o[2], b[3]|o[3]
}
func (b *byteSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		b.add(byte(c))
	}
}

// viable reports whether a branch with first bytes set (or that can get
// past them without consuming) can match at s[pos:].
func viable(set *byteSet, null bool, s string, pos int) bool {
	return null || pos < len(s) && set.has(s[pos])
}

// newMatcher compiles expr (already anchored with "^") for package regexp
// and, when it qualifies, for the filter's own backtracker.
func newMatcher(expr string) (*matcher, error) {
	m, _, err := compileMatcher(expr)
	return m, err
}

// compileMatcher is newMatcher that also returns the names of the
// submatches (as regexp.SubexpNames gives them).
func compileMatcher(expr string) (*matcher, []string, error) {
	// Same steps as regexp.Compile, with the same errors, so that the
	// program (and the group numbering) is the one package regexp runs.
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, nil, err
	}
	names := tree.CapNames()
	m := &matcher{ncap: 2 * (tree.MaxCap() + 1)}
	m.re = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
	tree = tree.Simplify()
	prog, err := syntax.Compile(tree)
	if err != nil {
		return nil, nil, err
	}
	if hasNullableLoop(tree) || prog.StartCond()&syntax.EmptyBeginText == 0 {
		return m, names, nil
	}
	if len(prog.Inst) > 1<<16 {
		return m, names, nil
	}
	m.start = uint32(prog.Start)
	insts := make([]vmInst, len(prog.Inst))
	nr, na := 0, 0
	for pc := range prog.Inst {
		switch prog.Inst[pc].Op {
		case syntax.InstRune, syntax.InstRune1:
			nr++
		case syntax.InstAlt, syntax.InstAltMatch:
			na++
		}
	}
	m.runes, m.alts = make([]runeAux, 0, nr), make([]altAux, 0, na)
	runeIdx := map[[2]uint64]uint16{}
	var last litAux // the chain of the previous InstRune1, whose suffixes follow
	lastNext := uint32(0)
	setIdx := map[byteSet]uint16{}
	intern := func(set byteSet) uint16 {
		i, ok := setIdx[set]
		if !ok {
			i = uint16(len(m.sets))
			setIdx[set] = i
			m.sets = append(m.sets, set)
		}
		return i
	}
	fs := firstSets{prog: prog, done: make([]bool, len(prog.Inst)), busy: make([]bool, len(prog.Inst)), sets: make([]byteSet, len(prog.Inst)), null: make([]bool, len(prog.Inst))}
	for pc := range prog.Inst {
		in := &prog.Inst[pc]
		v := vmInst{op: in.Op, out: in.Out, arg: in.Arg}
		switch in.Op {
		case syntax.InstRune, syntax.InstRune1:
			v.arg = 0
			ra := runeAux{}
			if syntax.Flags(in.Arg)&syntax.FoldCase != 0 || slices.ContainsFunc(in.Rune, func(r rune) bool { return r >= utf8.RuneSelf }) {
				ra.inst = &syntax.Inst{Op: in.Op, Arg: in.Arg, Rune: slices.Clone(in.Rune)}
			}
			for b := 0; b < utf8.RuneSelf; b++ {
				if in.MatchRune(rune(b)) {
					ra.tab[b>>6] |= 1 << (b & 63)
				}
			}
			la := litAux{}
			if len(last.lit) >= 3 && lastNext == uint32(pc) {
				la = litAux{last.lit[1:], last.out}
			} else {
				la.lit, la.out = literalRun(prog, uint32(pc))
			}
			last, lastNext = litAux{}, 0
			if len(la.lit) >= 2 {
				v.arg = uint32(len(m.lits)) + 1
				m.lits = append(m.lits, la)
				last, lastNext = la, in.Out
			}
			if i, ok := runeIdx[ra.tab]; ok && ra.inst == nil {
				v.aux = i
			} else {
				v.aux = uint16(len(m.runes))
				m.runes = append(m.runes, ra)
				if ra.inst == nil {
					runeIdx[ra.tab] = v.aux
				}
			}
		case syntax.InstAlt, syntax.InstAltMatch:
			var aa altAux
			aa.skip, aa.lazy = starSkip(prog, uint32(pc))
			var outSet, argSet byteSet
			outSet, aa.outNull = fs.first(in.Out)
			argSet, aa.argNull = fs.first(in.Arg)
			aa.outFirst, aa.argFirst = intern(outSet), intern(argSet)
			if len(m.sets) > 1<<16 {
				return m, names, nil
			}
			v.aux = uint16(len(m.alts))
			m.alts = append(m.alts, aa)
		}
		insts[pc] = v
	}
	if !fs.cyclic {
		m.insts = insts
		m.runes, m.lits, m.sets = slices.Clip(m.runes), slices.Clip(m.lits), slices.Clip(m.sets)
	} else {
		m.runes, m.lits, m.alts, m.sets = nil, nil, nil, nil
	}
	return m, names, nil
}

// literalRun returns the ASCII bytes of the chain of case-sensitive
// InstRune1 starting at pc, and the instruction after the chain.
func literalRun(prog *syntax.Prog, pc uint32) (string, uint32) {
	var b []byte
	for n := 0; n < len(prog.Inst); n++ {
		in := &prog.Inst[pc]
		if in.Op != syntax.InstRune1 || in.Rune[0] >= utf8.RuneSelf || syntax.Flags(in.Arg)&syntax.FoldCase != 0 {
			break
		}
		b = append(b, byte(in.Rune[0]))
		pc = in.Out
	}
	return string(b), pc
}

// firstSets computes, per instruction, the bytes that can start what
// follows it, and whether it can get there without consuming a byte.
type firstSets struct {
	prog       *syntax.Prog
	done, busy []bool
	sets       []byteSet
	null       []bool
	cyclic     bool
}

func (f *firstSets) first(pc uint32) (byteSet, bool) {
	if f.done[pc] {
		return f.sets[pc], f.null[pc]
	}
	if f.busy[pc] {
		// A loop that consumes nothing (hasNullableLoop excludes them):
		// the sets would be incomplete, newMatcher gives up.
		f.cyclic = true
		return byteSet{}, false
	}
	f.busy[pc] = true
	var set byteSet
	null := false
	in := &f.prog.Inst[pc]
	switch in.Op {
	case syntax.InstRune, syntax.InstRune1:
		for c := 0; c < utf8.RuneSelf; c++ {
			if in.MatchRune(rune(c)) {
				set.add(byte(c))
			}
		}
		set.addRange(utf8.RuneSelf, 0xff) // any non-ASCII rune: decided when run
	case syntax.InstRuneAny:
		set.addRange(0, 0xff)
	case syntax.InstRuneAnyNotNL:
		set.addRange(0, 0xff)
		set[0] &^= 1 << '\n'
	case syntax.InstCapture, syntax.InstNop:
		set, null = f.first(in.Out)
	case syntax.InstAlt, syntax.InstAltMatch:
		s1, n1 := f.first(in.Out)
		s2, n2 := f.first(in.Arg)
		set, null = s1, n1 || n2
		set.union(s2)
	case syntax.InstFail:
	default: // InstMatch, InstEmptyWidth: always tried
		null = true
	}
	f.busy[pc] = false
	f.done[pc], f.sets[pc], f.null[pc] = true, set, null
	return set, null
}

// starSkip recognizes the InstAlt at pc as the loop of ".*" (or ".*?")
// whose exit starts, past captures and no-ops, with literal ASCII bytes,
// and returns those bytes ("" if not).
func starSkip(prog *syntax.Prog, pc uint32) (string, bool) {
	in := &prog.Inst[pc]
	body, exit, lazy := in.Out, in.Arg, false
	if b := &prog.Inst[body]; b.Op != syntax.InstRuneAnyNotNL || b.Out != pc {
		body, exit, lazy = in.Arg, in.Out, true
		if b := &prog.Inst[body]; b.Op != syntax.InstRuneAnyNotNL || b.Out != pc {
			return "", false
		}
	}
	for n := 0; n < len(prog.Inst); n++ {
		if x := &prog.Inst[exit]; x.Op == syntax.InstCapture || x.Op == syntax.InstNop {
			exit = x.Out
			continue
		}
		break
	}
	lit, _ := literalRun(prog, exit)
	return lit, lazy
}

// hasNullableLoop reports whether re has a * or + over an expression that
// can match the empty string.
func hasNullableLoop(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus:
		if nullable(re.Sub[0]) {
			return true
		}
	case syntax.OpRepeat:
		if re.Max != re.Min && nullable(re.Sub[0]) {
			return true
		}
	}
	for _, s := range re.Sub {
		if hasNullableLoop(s) {
			return true
		}
	}
	return false
}

func nullable(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune) == 0
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL, syntax.OpNoMatch:
		return false
	case syntax.OpCapture, syntax.OpPlus:
		return nullable(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min == 0 || nullable(re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !nullable(s) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if nullable(s) {
				return true
			}
		}
		return false
	}
	// Empty-width assertions, EmptyMatch, Star, Quest.
	return true
}

// maxExecLen is the longest message the backtracker takes (positions are
// int32 in its stack).
const maxExecLen = 1 << 30

// stepBudget bounds the backtracking steps for a message of n bytes.
func stepBudget(n int) int { return 1024 + 16*n }

// find returns the submatch positions of m's regex in s, like
// regexp.FindStringSubmatchIndex, in dst (of length ncap), or nil.
func (m *matcher) find(s string, dst []int) []int {
	if m.insts != nil && len(s) <= maxExecLen {
		if ok, done := m.exec(s, dst); done {
			if ok {
				return dst
			}
			return nil
		}
	}
	return m.re().FindStringSubmatchIndex(s)
}

// matchString reports whether m's regex matches s.
func (m *matcher) matchString(s string) bool {
	if m.insts != nil && m.ncap <= 32 && len(s) <= maxExecLen {
		var buf [32]int
		if ok, done := m.exec(s, buf[:m.ncap]); done {
			return ok
		}
	}
	return m.re().MatchString(s)
}

// exec runs the backtracker. done is false when the step budget ran out
// (the result is then unknown).
func (m *matcher) exec(s string, caps []int) (ok, done bool) {
	for i := range caps {
		caps[i] = -1
	}
	var stackBuf [32]frame
	stack := stackBuf[:0]
	choices := 0 // frames on the stack that resume a branch
	budget := stepBudget(len(s))
	insts := m.insts
	pc, pos := m.start, 0
	caps[0] = 0
	for {
		budget--
		if budget < 0 {
			return false, false
		}
		in := &insts[pc]
		switch in.op {
		case syntax.InstMatch:
			caps[1] = pos
			return true, true
		case syntax.InstRune1, syntax.InstRune:
			if in.arg != 0 {
				la := &m.lits[in.arg-1]
				if !strings.HasPrefix(s[pos:], la.lit) {
					goto fail
				}
				pos += len(la.lit)
				pc = la.out
				continue
			}
			ra := &m.runes[in.aux]
			if pos >= len(s) {
				goto fail
			}
			if c := s[pos]; c < utf8.RuneSelf {
				if ra.tab[c>>6]&(1<<(c&63)) == 0 {
					goto fail
				}
				pos++
			} else {
				r, w := utf8.DecodeRuneInString(s[pos:])
				if ra.inst == nil || !ra.inst.MatchRune(r) {
					goto fail
				}
				pos += w
			}
			pc = in.out
		case syntax.InstRuneAnyNotNL:
			if pos >= len(s) || s[pos] == '\n' {
				goto fail
			}
			pos += runeWidth(s, pos)
			pc = in.out
		case syntax.InstRuneAny:
			if pos >= len(s) {
				goto fail
			}
			pos += runeWidth(s, pos)
			pc = in.out
		case syntax.InstAlt, syntax.InstAltMatch:
			aa := &m.alts[in.aux]
			if aa.skip != "" {
				// The loop may exit at any position up to the first
				// '\n' (included); only where the literal starts can
				// the exit go on.
				end := len(s)
				if e := strings.IndexByte(s[pos:], '\n'); e >= 0 {
					end = pos + e + 1
				}
				f := frame{kind: frameSkipDn, pc: in.arg, aux: in.aux}
				var q int
				if aa.lazy {
					f.kind, f.pc = frameSkipUp, in.out
					q = skipUp(s, pos, end, aa.skip)
				} else {
					q = skipDn(s, pos, end, aa.skip)
				}
				if q < 0 {
					goto fail
				}
				// Find the next exit now, so that no frame stays when
				// there is none (and captures need no saving then).
				if aa.lazy {
					f.lo, f.hi = int32(skipUp(s, q+1, end, aa.skip)), int32(end)
					if f.lo >= 0 {
						stack = append(stack, f)
						choices++
					}
				} else {
					f.lo, f.hi = int32(pos), int32(skipDn(s, pos, q, aa.skip))
					if f.hi >= 0 {
						stack = append(stack, f)
						choices++
					}
				}
				pc, pos = f.pc, q
				continue
			}
			outOK := viable(&m.sets[aa.outFirst], aa.outNull, s, pos)
			argOK := viable(&m.sets[aa.argFirst], aa.argNull, s, pos)
			switch {
			case outOK && argOK:
				stack = append(stack, frame{kind: frameResume, pc: in.arg, lo: int32(pos)})
				choices++
				pc = in.out
			case outOK:
				pc = in.out
			case argOK:
				pc = in.arg
			default:
				goto fail
			}
		case syntax.InstCapture:
			if int(in.arg) < len(caps) {
				if choices > 0 {
					stack = append(stack, frame{kind: frameRestore, pc: in.arg, lo: int32(caps[in.arg])})
				}
				caps[in.arg] = pos
			}
			pc = in.out
		case syntax.InstEmptyWidth:
			r1, r2 := rune(-1), rune(-1)
			if pos > 0 {
				r1, _ = utf8.DecodeLastRuneInString(s[:pos])
			}
			if pos < len(s) {
				r2, _ = utf8.DecodeRuneInString(s[pos:])
			}
			op := syntax.EmptyOp(in.arg)
			if syntax.EmptyOpContext(r1, r2)&op != op {
				goto fail
			}
			pc = in.out
		case syntax.InstNop:
			pc = in.out
		default: // InstFail
			goto fail
		}
		continue
	fail:
		for {
			if len(stack) == 0 {
				return false, true
			}
			budget--
			f := &stack[len(stack)-1]
			switch f.kind {
			case frameResume:
				pc, pos = f.pc, int(f.lo)
				stack = stack[:len(stack)-1]
				choices--
			case frameRestore:
				caps[f.pc] = int(f.lo)
				stack = stack[:len(stack)-1]
				continue
			case frameSkipDn:
				pc, pos = f.pc, int(f.hi)
				if f.hi = int32(skipDn(s, int(f.lo), pos, m.alts[f.aux].skip)); f.hi < 0 {
					stack = stack[:len(stack)-1]
					choices--
				}
			case frameSkipUp:
				pc, pos = f.pc, int(f.lo)
				if f.lo = int32(skipUp(s, pos+1, int(f.hi), m.alts[f.aux].skip)); f.lo < 0 {
					stack = stack[:len(stack)-1]
					choices--
				}
			}
			break
		}
	}
}

// skipDn returns the last position q in [lo, hi) where lit starts in s,
// or -1.
func skipDn(s string, lo, hi int, lit string) int {
	if hi <= lo {
		return -1
	}
	end := min(len(s), hi-1+len(lit))
	if j := strings.LastIndex(s[lo:end], lit); j >= 0 {
		return lo + j
	}
	return -1
}

// skipUp returns the first position q in [lo, hi) where lit starts in s,
// or -1.
func skipUp(s string, lo, hi int, lit string) int {
	if hi <= lo {
		return -1
	}
	end := min(len(s), hi-1+len(lit))
	if j := strings.Index(s[lo:end], lit); j >= 0 {
		return lo + j
	}
	return -1
}

// runeWidth is the width of the rune at s[pos] as package regexp steps.
func runeWidth(s string, pos int) int {
	if s[pos] < utf8.RuneSelf {
		return 1
	}
	_, w := utf8.DecodeRuneInString(s[pos:])
	return w
}
