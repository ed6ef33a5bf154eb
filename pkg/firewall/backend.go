package firewall

import (
	"fmt"
)

// Options tune a backend made by New.
type Options struct {
	// NetNS is the network namespace the backend acts in: a name under
	// /run/netns or a path. Empty means the caller's own namespace, the
	// normal case for the daemon (tests run it under `ip netns exec` or set
	// this to a namespace they created).
	NetNS string
	// KillConnections removes the conntrack entries of a banned source
	// after it is added, so an established session ends too.
	KillConnections bool
	// Logf receives one line per notable event (choice of backend, layout
	// set up, dry-run actions). Nil discards them. Verify does not log what
	// it repairs: it returns it, and the caller logs it once.
	Logf func(format string, args ...any)
}

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// New returns the backend called name: "iptables", "nftables", "none" or
// "auto". Auto picks nftables when native nftables tables are in use in
// the namespace (or nft is the only thing available), else iptables; the
// returned backend's Name tells which, and the choice is logged.
func New(name string, opts Options) (Backend, error) {
	switch name {
	case "iptables":
		return newIPTables(opts)
	case "nftables":
		return newNFTables(opts)
	case "none":
		return &None{Logf: opts.Logf}, nil
	case "auto", "":
		choice, why := Detect(opts.NetNS)
		opts.logf("firewall backend auto: chose %s (%s)", choice, why)
		return New(choice, opts)
	default:
		return nil, fmt.Errorf("unknown firewall backend %q (want iptables, nftables, none or auto)", name)
	}
}
