package firewall

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// killGap is the least time between two conntrack passes. A pass dumps the
// kernel's whole conntrack hash table (it is shared by every namespace,
// so the cost grows with its size, not with the namespace's flows): in
// make bench, one pass per ban batch was 40 % of the daemon's CPU. Bans
// that arrive within the gap share the next pass; the ban itself is in
// the set at once, only the cleanup of established sessions waits.
const killGap = 250 * time.Millisecond

// connKiller removes the conntrack entries of banned sources (Options.
// KillConnections) off the ban path: Add hands it the banned prefixes and
// returns; its goroutine, with a netlink socket of its own, deletes them
// in one pass per family, at once when it was idle, else killGap after
// the last pass. Failures are logged, never fatal: the ban holds.
type connKiller struct {
	del  func(v4, v6 []netip.Prefix) // one pass; the real one or a test's
	gap  time.Duration
	mu   sync.Mutex
	todo []netip.Prefix
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
	h    *netlink.Handle
}

// newConnKiller opens a NETLINK_NETFILTER socket in ns (netns.None() =
// the current namespace) and starts the goroutine.
func newConnKiller(ns netns.NsHandle, opts Options) (*connKiller, error) {
	var h *netlink.Handle
	var err error
	if ns == netns.None() {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
	} else {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return nil, err
	}
	k := startConnKiller(func(v4, v6 []netip.Prefix) { deleteConntrack(h, v4, v6, opts) }, killGap)
	k.h = h
	return k, nil
}

func startConnKiller(del func(v4, v6 []netip.Prefix), gap time.Duration) *connKiller {
	k := &connKiller{del: del, gap: gap, wake: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	go k.loop()
	return k
}

// kill queues the prefixes of bans for the next pass.
func (k *connKiller) kill(bans []Ban) {
	k.mu.Lock()
	for _, b := range bans {
		k.todo = append(k.todo, b.Prefix)
	}
	k.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// close runs a last pass for what is queued, stops the goroutine and
// closes the socket.
func (k *connKiller) close() {
	close(k.quit)
	<-k.done
	if k.h != nil {
		k.h.Close()
	}
}

func (k *connKiller) loop() {
	defer close(k.done)
	var last time.Time
	for {
		select {
		case <-k.wake:
		case <-k.quit:
			k.pass()
			return
		}
		if wait := k.gap - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-k.quit:
				k.pass()
				return
			}
		}
		last = time.Now()
		k.pass()
	}
}

// pass deletes the entries of everything queued so far.
func (k *connKiller) pass() {
	k.mu.Lock()
	todo := k.todo
	k.todo = nil
	k.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	var v4, v6 []netip.Prefix
	for _, p := range todo {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	k.del(v4, v6)
}

// deleteConntrack deletes the conntrack entries whose original source lies
// in one of the prefixes: one dump per family that has prefixes.
func deleteConntrack(h *netlink.Handle, v4, v6 []netip.Prefix, opts Options) {
	for _, x := range []struct {
		fam netlink.InetFamily
		ps  []netip.Prefix
	}{{unix.AF_INET, v4}, {unix.AF_INET6, v6}} {
		if len(x.ps) == 0 {
			continue
		}
		fs := make([]netlink.CustomConntrackFilter, 0, len(x.ps))
		for _, p := range x.ps {
			f := &netlink.ConntrackFilter{}
			ipn := &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
			if err := f.AddIPNet(netlink.ConntrackOrigSrcIP, ipn); err != nil {
				opts.logf("firewall: conntrack filter for %v: %v", p, err)
				continue
			}
			fs = append(fs, f)
		}
		n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, x.fam, fs...)
		if err != nil {
			opts.logf("firewall: deleting conntrack entries of %d banned prefixes: %v", len(fs), err)
		} else if n > 0 {
			opts.logf("firewall: deleted %d conntrack entries of banned sources", n)
		}
	}
}
