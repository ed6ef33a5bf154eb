package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Verdict is what a packet meets in the Fake's simulated kernel.
type Verdict string

// Verdicts of Fake.Verdict.
const (
	VerdictAccept Verdict = "accept"
	VerdictReject Verdict = "reject"
	VerdictDrop   Verdict = "drop"
)

// Drift is a change someone else makes to the kernel behind jailkeeper's
// back. The Fake simulates each so that Verify can be tested.
type Drift string

// Drifts the Fake simulates, named after what an administrator would type.
const (
	DriftFlushChain   Drift = "flush-chain"   // iptables -F JAILKEEPER
	DriftDeleteJump   Drift = "delete-jump"   // iptables -D INPUT 1
	DriftRuleAbove    Drift = "rule-above"    // iptables -I INPUT 1 -j ACCEPT
	DriftDestroySets  Drift = "destroy-sets"  // ipset destroy (after the chain was flushed)
	DriftFlushRuleset Drift = "flush-ruleset" // nft flush ruleset
	DriftLoseBans     Drift = "lose-bans"     // ipset flush: sets stay, elements go
)

// Fake is an in-memory Backend for unit tests. It records the layout and
// the bans, expires bans by its clock, simulates drift and answers which
// verdict a packet would meet. The zero value is ready to use; it is safe
// for concurrent use.
type Fake struct {
	// Now is the clock deciding expiry; nil means time.Now.
	Now func() time.Time
	// Fail, when set, is returned by every call that changes the kernel.
	Fail error

	mu       sync.Mutex
	up       bool // layout installed
	layout   Layout
	jump     Drift // "" = first in INPUT; DriftDeleteJump or DriftRuleAbove
	flushed  bool  // our chain lost its rules
	noSets   bool  // sets destroyed
	elements map[banKey]time.Time
	calls    []string
}

var _ Backend = (*Fake)(nil)

func (f *Fake) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Name returns "fake".
func (f *Fake) Name() string { return "fake" }

// Calls returns one line per call that changed the simulated kernel, in
// order ("setup 2 jails 3 bans", "add 1", "remove 1", "verify 2 found",
// "teardown").
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Layout returns the layout last set up, and false when none is installed.
func (f *Fake) Layout() (Layout, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.layout, f.up
}

// Setup installs the layout and replaces the bans with exactly bans.
func (f *Fake) Setup(l Layout, bans []Ban) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return f.Fail
	}
	if err := checkLayout(l); err != nil {
		return fmt.Errorf("setting up layout: %w", err)
	}
	in, perr := prepare(bans, jailIndex(l), f.now())
	f.up, f.layout, f.jump, f.flushed, f.noSets = true, l, "", false, false
	f.elements = make(map[banKey]time.Time, len(in))
	for _, b := range in {
		f.elements[keyOf(b)] = b.Expires
	}
	f.calls = append(f.calls, fmt.Sprintf("setup %d jails %d bans", len(l.Jails), len(in)))
	if perr != nil {
		// Like the real backends: logged, the layout stands.
		f.calls = append(f.calls, fmt.Sprintf("setup left out: %v", perr))
	}
	return nil
}

// Add bans prefixes; a present prefix gets the new expiry.
func (f *Fake) Add(bans []Ban) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return f.Fail
	}
	if !f.up {
		return fmt.Errorf("adding bans: layout not set up")
	}
	in, perr := prepare(bans, jailIndex(f.layout), f.now())
	if f.noSets {
		return fmt.Errorf("adding bans: sets do not exist")
	}
	for _, b := range in {
		f.elements[keyOf(b)] = b.Expires
	}
	f.calls = append(f.calls, fmt.Sprintf("add %d", len(in)))
	return perr
}

// Remove lifts bans; absent ones are ignored.
func (f *Fake) Remove(bans []Ban) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return f.Fail
	}
	for _, b := range bans {
		n, err := normalize(b)
		if err != nil {
			return err
		}
		delete(f.elements, keyOf(n))
	}
	f.calls = append(f.calls, fmt.Sprintf("remove %d", len(bans)))
	return nil
}

// List returns the unexpired bans, sorted by jail and prefix.
func (f *Fake) List() ([]Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expire()
	out := make([]Ban, 0, len(f.elements))
	for k, exp := range f.elements {
		out = append(out, Ban{Jail: k.jail, Prefix: k.prefix, Expires: exp})
	}
	sortBans(out)
	return out, nil
}

// expire drops elements whose time has come, as the kernel does.
func (f *Fake) expire() {
	now := f.now()
	for k, exp := range f.elements {
		if !exp.IsZero() && !exp.After(now) {
			delete(f.elements, k)
		}
	}
}

// Verify reports and repairs drift the same way the real backends do.
func (f *Fake) Verify(l Layout, bans []Ban) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, perr := prepare(bans, jailIndex(l), f.now())
	if perr != nil {
		// Like the real backends: logged, the rest verified.
		f.calls = append(f.calls, fmt.Sprintf("verify left out: %v", perr))
	}
	var found []string
	if !f.up {
		found = append(found, "layout not set up")
	}
	switch f.jump {
	case DriftDeleteJump:
		found = append(found, "jump to JAILKEEPER missing from INPUT")
	case DriftRuleAbove:
		found = append(found, "jump to JAILKEEPER is not the first rule of INPUT")
	}
	if f.flushed {
		found = append(found, "chain JAILKEEPER lost its rules")
	}
	if f.noSets {
		found = append(found, "ban sets missing")
	}
	if f.up && !layoutEqual(f.layout, l) {
		found = append(found, "layout differs from configuration")
	}
	f.expire()
	missing := 0
	for _, b := range in {
		if _, ok := f.elements[keyOf(b)]; !ok || f.noSets {
			missing++
		}
	}
	if missing > 0 {
		found = append(found, fmt.Sprintf("%d bans missing from the kernel", missing))
	}
	if len(found) == 0 {
		return nil, nil
	}
	if f.Fail != nil {
		return found, fmt.Errorf("repairing: %w", f.Fail)
	}
	if f.noSets {
		f.elements = map[banKey]time.Time{}
	}
	f.up, f.layout, f.jump, f.flushed, f.noSets = true, l, "", false, false
	for _, b := range in {
		f.elements[keyOf(b)] = b.Expires
	}
	f.calls = append(f.calls, fmt.Sprintf("verify %d found", len(found)))
	return found, nil
}

// Close does nothing: like the real backends, the layout stays in place.
func (f *Fake) Close() error { return nil }

// Teardown removes the layout and every ban.
func (f *Fake) Teardown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Fail != nil {
		return f.Fail
	}
	f.up, f.layout, f.jump, f.flushed, f.noSets = false, Layout{}, "", false, false
	f.elements = nil
	f.calls = append(f.calls, "teardown")
	return nil
}

// Drift simulates an outside change to the kernel.
func (f *Fake) Drift(d Drift) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch d {
	case DriftFlushChain:
		f.flushed = true
	case DriftDeleteJump, DriftRuleAbove:
		f.jump = d
	case DriftDestroySets:
		f.flushed, f.noSets = true, true
		f.elements = map[banKey]time.Time{}
	case DriftFlushRuleset:
		f.jump, f.flushed = DriftDeleteJump, true
	case DriftLoseBans:
		f.elements = map[banKey]time.Time{}
	}
}

// Verdict returns what a packet from src to port (of proto) meets in the
// simulated kernel: the whitelist first, then every jail in order.
func (f *Fake) Verdict(src netip.Addr, proto Protocol, port uint16) Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	src = src.Unmap()
	if !f.up || f.jump != "" || f.flushed || f.noSets {
		return VerdictAccept
	}
	for _, w := range f.layout.Whitelist {
		if w.Contains(src) {
			return VerdictAccept
		}
	}
	f.expire()
	for _, j := range f.layout.Jails {
		if !matchesTraffic(j, proto, port) {
			continue
		}
		for k := range f.elements {
			if k.jail == j.Name && k.prefix.Contains(src) {
				if j.action() == ActionDrop {
					return VerdictDrop
				}
				return VerdictReject
			}
		}
	}
	return VerdictAccept
}

// matchesTraffic reports whether a jail's rules cover a packet of proto to
// port.
func matchesTraffic(j JailRules, proto Protocol, port uint16) bool {
	if p := j.proto(); p != ProtoAll && p != proto {
		return false
	}
	if len(j.Ports) == 0 {
		return true
	}
	if proto != ProtoTCP && proto != ProtoUDP {
		return false
	}
	return slices.Contains(j.Ports, port)
}

// layoutEqual compares two layouts field by field.
func layoutEqual(a, b Layout) bool {
	if a.WhitelistAccept != b.WhitelistAccept || !slices.Equal(a.Whitelist, b.Whitelist) || len(a.Jails) != len(b.Jails) {
		return false
	}
	for i := range a.Jails {
		x, y := a.Jails[i], b.Jails[i]
		if x.Name != y.Name || x.proto() != y.proto() || x.action() != y.action() || !slices.Equal(x.Ports, y.Ports) {
			return false
		}
	}
	return true
}

// sortBans orders bans by jail, then prefix.
func sortBans(bs []Ban) {
	slices.SortFunc(bs, func(a, b Ban) int {
		if a.Jail != b.Jail {
			if a.Jail < b.Jail {
				return -1
			}
			return 1
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
}
