package jails

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// DefaultMaxContexts is the number of processes whose context a
// ProcContexts keeps when it is given no cap.
const DefaultMaxContexts = 10_000

// Proc names the process that wrote a journal entry: its unit and its PID
// (the trusted _PID journald adds).
type Proc struct {
	Unit string
	PID  uint32
}

// procCtx is what a filter knows about one process.
type procCtx struct {
	addr      netip.Addr // from the process's last context line; invalid: none yet
	port      uint16
	pending   bool // a <CTXHOST> failure came before any address
	pendUser  string
	pendRegex int
}

// ProcContexts is the per-process memory of one filter with context
// regexes (see FilterDef): at most max processes, each forgotten maxAge
// after its last line, the least recently seen evicted first when full,
// and dropped when a context_end line ends its connection. It is not safe
// for concurrent use.
type ProcContexts struct {
	max    int
	maxAge time.Duration
	procs  *lru[Proc, procCtx]
}

// NewProcContexts returns an empty memory for up to max processes
// (max <= 0: DefaultMaxContexts), each kept maxAge after its last line
// (maxAge <= 0: DefaultFindTime).
func NewProcContexts(max int, maxAge time.Duration) *ProcContexts {
	if max <= 0 {
		max = DefaultMaxContexts
	}
	if maxAge <= 0 {
		maxAge = DefaultFindTime
	}
	return &ProcContexts{max: max, maxAge: maxAge, procs: newLRU[Proc, procCtx]()}
}

// Len returns the number of processes remembered.
func (c *ProcContexts) Len() int { return c.procs.len() }

// HasContext reports whether the filter has <CTXHOST> failregexes, i.e.
// whether MatchIn can find more than Match.
func (f *Filter) HasContext() bool { return f.hasCtx }

// MatchIn is Match for a line written by process p at time at, with the
// filter's per-process memory c: context lines record the process's
// address, <CTXHOST> failregexes take it from there (or wait for the
// process's next context line), context_end lines forget the process.
// With c nil, a filter without <CTXHOST> regexes, or p.PID 0, it is Match.
func (f *Filter) MatchIn(c *ProcContexts, p Proc, msg string, at time.Time) (Match, bool) {
	if c == nil || !f.hasCtx || p.PID == 0 {
		return f.Match(msg)
	}
	now := at.UnixNano()
	c.procs.pruneBefore(now-int64(c.maxAge), nil)
	m, ok := f.matchFail(msg, true)
	if ok && f.Ignored(msg) {
		ok = false
	}
	node := c.procs.get(p)
	if a, port, isCtx := f.matchContext(msg); isCtx {
		if node == nil {
			node = c.add(p, now)
		}
		st := &node.val
		if st.pending && !ok {
			m, ok = Match{Addr: a, Port: port, User: st.pendUser, Regex: st.pendRegex}, true
		}
		st.addr, st.port, st.pending = a, port, false
	}
	if ok && !m.Addr.IsValid() { // a <CTXHOST> failregex
		switch {
		case node != nil && node.val.addr.IsValid():
			m.Addr = node.val.addr
			if m.Port == 0 {
				m.Port = node.val.port
			}
		default:
			if node == nil {
				node = c.add(p, now)
			}
			node.val.pending, node.val.pendUser, node.val.pendRegex = true, strings.Clone(m.User), m.Regex // not the whole message
			ok = false
		}
	}
	if node != nil {
		if f.endsContext(msg) {
			c.procs.remove(node)
		} else {
			c.procs.touch(node, now)
		}
	}
	return m, ok
}

// add remembers a new process, evicting the least recently seen one when
// c is full.
func (c *ProcContexts) add(p Proc, now int64) *lruNode[Proc, procCtx] {
	for c.procs.len() >= c.max {
		c.procs.remove(c.procs.oldest())
	}
	return c.procs.add(p, now)
}

// matchContext reports whether msg is a context line, and the address
// (and port) it names.
func (f *Filter) matchContext(msg string) (netip.Addr, uint16, bool) {
	for i := range f.ctx {
		fr := &f.ctx[i]
		if !fr.prefiltered(msg) {
			continue
		}
		var buf [32]int
		var loc []int
		if fr.m.ncap <= len(buf) {
			loc = fr.m.find(msg, buf[:fr.m.ncap])
		} else {
			loc = fr.m.find(msg, make([]int, fr.m.ncap))
		}
		if loc == nil {
			continue
		}
		var addr netip.Addr
		for _, g := range fr.hosts {
			if loc[2*g] < 0 {
				continue
			}
			a, err := netip.ParseAddr(msg[loc[2*g]:loc[2*g+1]])
			if err == nil {
				addr = prefix.Addr(a)
			}
			break
		}
		if !addr.IsValid() {
			continue
		}
		var port uint16
		for _, g := range fr.ports {
			if loc[2*g] >= 0 {
				if v, err := strconv.ParseUint(msg[loc[2*g]:loc[2*g+1]], 10, 16); err == nil {
					port = uint16(v)
				}
				break
			}
		}
		return addr, port, true
	}
	return netip.Addr{}, 0, false
}

// endsContext reports whether msg ends its process's connection.
func (f *Filter) endsContext(msg string) bool {
	for i := range f.ctxEnd {
		if fr := &f.ctxEnd[i]; fr.prefiltered(msg) && fr.m.matchString(msg) {
			return true
		}
	}
	return false
}

// prefiltered reports whether msg starts with one of fr's literal
// prefixes (when it has any) and contains its required literals: only
// then can fr match.
func (fr *failRegex) prefiltered(msg string) bool {
	if len(fr.prefixes) > 0 {
		found := false
		for _, p := range fr.prefixes {
			if strings.HasPrefix(msg, p) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, r := range fr.required {
		if !strings.Contains(msg, r) {
			return false
		}
	}
	return true
}
