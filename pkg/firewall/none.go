package firewall

import (
	"fmt"
	"log"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// None is the dry-run backend: it changes nothing in the kernel and logs
// what it would do, one line per call.
type None struct {
	// Logf receives the lines; nil uses the standard logger.
	Logf func(format string, args ...any)
	// bans remembers what was "added", so List answers consistently.
	bans map[banKey]Ban
}

var _ Backend = (*None)(nil)

func (n *None) logf(format string, args ...any) {
	if n.Logf != nil {
		n.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Name returns "none".
func (n *None) Name() string { return "none" }

// Setup logs the layout and the number of bans it would load.
func (n *None) Setup(l Layout, bans []Ban) error {
	if err := checkLayout(l); err != nil {
		return fmt.Errorf("setting up layout: %w", err)
	}
	n.bans = map[banKey]Ban{}
	for _, j := range l.Jails {
		n.logf("firewall none: would set up jail %s: protocol %s, ports %v, action %s", j.Name, j.proto(), j.Ports, j.action())
	}
	mode := "return"
	if l.WhitelistAccept {
		mode = "accept"
	}
	n.logf("firewall none: would whitelist %v (%s)", l.Whitelist, mode)
	for _, b := range bans {
		n.bans[keyOf(b)] = b
	}
	n.logf("firewall none: would load %d bans", len(bans))
	return nil
}

// Add logs each ban it would add.
func (n *None) Add(bans []Ban) error {
	if n.bans == nil {
		n.bans = map[banKey]Ban{}
	}
	for _, b := range bans {
		until := "permanently"
		if !b.Expires.IsZero() {
			until = "until " + b.Expires.Format("2006-01-02 15:04:05")
		}
		n.logf("firewall none: would ban %s in jail %s %s", prefix.Format(b.Prefix), b.Jail, until)
		n.bans[keyOf(b)] = b
	}
	return nil
}

// Remove logs each ban it would lift.
func (n *None) Remove(bans []Ban) error {
	for _, b := range bans {
		n.logf("firewall none: would unban %s in jail %s", prefix.Format(b.Prefix), b.Jail)
		delete(n.bans, keyOf(b))
	}
	return nil
}

// List returns what was added and not removed (nothing is in the kernel).
func (n *None) List() ([]Ban, error) {
	out := make([]Ban, 0, len(n.bans))
	for _, b := range n.bans {
		out = append(out, b)
	}
	sortBans(out)
	return out, nil
}

// Verify finds nothing: there is no kernel state to drift.
func (n *None) Verify(Layout, []Ban) ([]string, error) { return nil, nil }

// Close does nothing.
func (n *None) Close() error { return nil }

// Teardown logs that it would remove the layout.
func (n *None) Teardown() error {
	n.logf("firewall none: would remove the layout")
	n.bans = nil
	return nil
}
