package firewall

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
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
// returns; its goroutine, with netlink sockets of its own, deletes them
// in one pass per family, at once when it was idle, else killGap after
// the last pass, and skips the pass when the namespace tracks no
// connection at all. Failures are logged, never fatal: the ban holds.
type connKiller struct {
	del    func(v4, v6 []netip.Prefix) // one pass; the real one or a test's
	gap    time.Duration
	mu     sync.Mutex
	todo   []netip.Prefix
	wake   chan struct{}
	quit   chan struct{}
	done   chan struct{}
	closeH func()            // closes the handle of the dumps (a method value: see ipsetOps)
	stats  *nl.NetlinkSocket // the counts
}

// newConnKiller opens a NETLINK_NETFILTER socket in ns (netns.None() =
// the current namespace) and starts the goroutine.
func newConnKiller(ns netns.NsHandle, opts Options) (*connKiller, error) {
	h, err := openHandle(ns)
	if err != nil {
		return nil, err
	}
	stats, err := openStatsSocket(ns)
	if err != nil {
		h.Close()
		return nil, err
	}
	k := startConnKiller(func(v4, v6 []netip.Prefix) {
		// A namespace that tracks no connection has nothing to delete:
		// the count is one small message, the dump walks the kernel's
		// whole hash table.
		if n, err := conntrackCount(stats); err == nil && n == 0 {
			return
		}
		deleteConntrack(h.ConntrackDeleteFilters, v4, v6, opts)
	}, killGap)
	k.closeH, k.stats = h.Close, stats
	return k, nil
}

// Netlink constants of ctnetlink's statistics (linux/netfilter/
// nfnetlink_conntrack.h), which vishvananda/netlink does not name.
const (
	ipctnlMsgCtGetStats   = 5 // IPCTNL_MSG_CT_GET_STATS
	ctaStatsGlobalEntries = 1 // CTA_STATS_GLOBAL_ENTRIES, u32 big-endian
)

// conntrackCount returns the number of connections tracked in the
// namespace of s (IPCTNL_MSG_CT_GET_STATS). The kernel answers with one
// message flagged NLM_F_MULTI and no NLMSG_DONE after it (as `conntrack -C`
// shows under strace), so this reads the answer itself instead of
// NetlinkRequest.Execute, which would wait for the end of a dump. s must
// have a receive timeout.
func conntrackCount(s *nl.NetlinkSocket) (uint32, error) {
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|ipctnlMsgCtGetStats, 0)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: nl.NFNETLINK_V0})
	req.Seq = statsSeq.Add(1)
	if err := s.Send(req); err != nil {
		return 0, err
	}
	for {
		msgs, _, err := s.Receive()
		if err != nil {
			return 0, err
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq {
				continue // a late answer to an earlier request
			}
			if m.Header.Type == unix.NLMSG_ERROR {
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return 0, syscall.Errno(-errno)
					}
				}
				return 0, errors.New("conntrack statistics: empty error message")
			}
			if len(m.Data) < nl.SizeofNfgenmsg {
				return 0, errors.New("conntrack statistics: short message")
			}
			attrs, err := nl.ParseRouteAttr(m.Data[nl.SizeofNfgenmsg:])
			if err != nil {
				return 0, err
			}
			for _, a := range attrs {
				if a.Attr.Type&nl.NLA_TYPE_MASK == ctaStatsGlobalEntries && len(a.Value) == 4 {
					return binary.BigEndian.Uint32(a.Value), nil
				}
			}
			return 0, errors.New("conntrack statistics without an entry count")
		}
	}
}

// statsSeq numbers the statistics requests.
var statsSeq atomic.Uint32

// openStatsSocket opens a NETLINK_NETFILTER socket in ns for
// conntrackCount, with a one-second receive timeout.
func openStatsSocket(ns netns.NsHandle) (*nl.NetlinkSocket, error) {
	s, err := openNetfilterSocket(ns)
	if err != nil {
		return nil, err
	}
	if err := s.SetReceiveTimeout(&unix.Timeval{Sec: 1}); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
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
	if k.closeH != nil {
		k.closeH()
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
func deleteConntrack(deleteFilters func(netlink.ConntrackTableType, netlink.InetFamily, ...netlink.CustomConntrackFilter) (uint, error), v4, v6 []netip.Prefix, opts Options) {
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
		n, err := deleteFilters(netlink.ConntrackTable, x.fam, fs...)
		if err != nil {
			opts.logf("firewall: deleting conntrack entries of %d banned prefixes: %v", len(fs), err)
		} else if n > 0 {
			opts.logf("firewall: deleted %d conntrack entries of banned sources", n)
		}
	}
}
