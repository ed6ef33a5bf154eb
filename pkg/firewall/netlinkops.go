package firewall

import (
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ipsetOps are the ipset verbs of one vishvananda/netlink handle, held as
// method values. No type the backends keep names *netlink.Handle: the
// backends are used through the Backend interface, and godbus calls
// methods by reflection, so the linker would keep all ~260 exported
// methods of a Handle reachable from them (links, routes, xfrm, tc …),
// about 1 MB of a binary whose pages count in the daemon's RSS.
type ipsetOps struct {
	destroy func(name string) error
	swap    func(from, to string) error
	del     func(name string, e *netlink.IPSetEntry) error
	list    func(name string) (*netlink.IPSetResult, error)
	listAll func() ([]netlink.IPSetResult, error)
	close   func()
}

// openHandle opens a NETLINK_NETFILTER handle in ns (netns.None() = the
// current namespace).
func openHandle(ns netns.NsHandle) (*netlink.Handle, error) {
	if ns == netns.None() {
		return netlink.NewHandle(unix.NETLINK_NETFILTER)
	}
	return netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
}

func openIpsetOps(ns netns.NsHandle) (ipsetOps, error) {
	h, err := openHandle(ns)
	if err != nil {
		return ipsetOps{}, err
	}
	return ipsetOps{
		destroy: h.IpsetDestroy,
		swap:    h.IpsetSwap,
		del:     h.IpsetDel,
		list:    h.IpsetList,
		listAll: h.IpsetListAll,
		close:   h.Close,
	}, nil
}

// openNetfilterSocket opens a NETLINK_NETFILTER socket in ns (netns.None()
// = the current namespace) for the messages this package encodes itself.
func openNetfilterSocket(ns netns.NsHandle) (*nl.NetlinkSocket, error) {
	return nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_NETFILTER)
}
