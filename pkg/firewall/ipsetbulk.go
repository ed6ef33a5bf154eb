package firewall

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ipsetBulkChunk is how many elements one bulk message carries; the ADT
// attribute's u16 length bounds it (~40 bytes per IPv6 element).
const ipsetBulkChunk = 1000

// ipsetBulk adds many elements to an ipset in few netlink messages, the way
// `ipset restore` does: one IPSET_CMD_ADD per chunk whose IPSET_ATTR_ADT
// nests one IPSET_ATTR_DATA per element. vishvananda/netlink sends one
// message per element (13 µs each, 13 s for a million), so the restore path
// uses this instead. It owns its own NETLINK_NETFILTER socket (the Handle's
// is unexported), opened in the backend's namespace.
type ipsetBulk struct {
	sock *nl.SocketHandle
}

func newIpsetBulk(ns netns.NsHandle) (*ipsetBulk, error) {
	var s *nl.NetlinkSocket
	var err error
	if ns == netns.None() {
		s, err = nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_NETFILTER)
	} else {
		s, err = nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return nil, fmt.Errorf("opening netfilter netlink socket for ipset bulk adds: %w", err)
	}
	return &ipsetBulk{sock: &nl.SocketHandle{Socket: s}}, nil
}

func (b *ipsetBulk) close() { b.sock.Close() }

// add adds entries to set, replacing present ones (like -exist).
func (b *ipsetBulk) add(set string, entries []*netlink.IPSetEntry) error {
	for start := 0; start < len(entries); start += ipsetBulkChunk {
		chunk := entries[start:min(start+ipsetBulkChunk, len(entries))]
		req := &nl.NetlinkRequest{
			NlMsghdr: unix.NlMsghdr{
				Len:   uint32(unix.SizeofNlMsghdr),
				Type:  uint16(nl.IPSET_CMD_ADD | unix.NFNL_SUBSYS_IPSET<<8),
				Flags: uint16(nl.GetIpsetFlags(nl.IPSET_CMD_ADD)),
			},
			Sockets: map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: b.sock},
		}
		req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_NETLINK), Version: nl.NFNETLINK_V0})
		req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
		req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(set)))
		// The kernel requires a top-level line number with IPSET_ATTR_ADT.
		req.AddData(&nl.Uint32Attribute{Type: nl.IPSET_ATTR_LINENO | nl.NLA_F_NET_BYTEORDER, Value: uint32(start + 1)})
		adt := nl.NewRtAttr(nl.IPSET_ATTR_ADT|int(nl.NLA_F_NESTED), nil)
		for i, e := range chunk {
			data := nl.NewRtAttr(nl.IPSET_ATTR_DATA|int(nl.NLA_F_NESTED), nil)
			if e.Timeout != nil {
				data.AddChild(&nl.Uint32Attribute{Type: nl.IPSET_ATTR_TIMEOUT | nl.NLA_F_NET_BYTEORDER, Value: *e.Timeout})
			}
			typ := int(nl.NLA_F_NET_BYTEORDER)
			ip := e.IP
			if ip4 := ip.To4(); ip4 != nil {
				typ |= nl.IPSET_ATTR_IPADDR_IPV4
				ip = ip4
			} else {
				typ |= nl.IPSET_ATTR_IPADDR_IPV6
			}
			data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_IP|int(nl.NLA_F_NESTED), nl.NewRtAttr(typ, ip).Serialize()))
			if e.CIDR != 0 {
				data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_CIDR, nl.Uint8Attr(e.CIDR)))
			}
			data.AddChild(&nl.Uint32Attribute{Type: nl.IPSET_ATTR_LINENO | nl.NLA_F_NET_BYTEORDER, Value: uint32(start + i + 1)})
			adt.AddChild(data)
		}
		req.AddData(adt)
		if _, err := req.Execute(unix.NETLINK_NETFILTER, 0); err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) && int(errno) >= nl.IPSET_ERR_PRIVATE {
				err = nl.IPSetError(uintptr(errno))
			}
			return fmt.Errorf("adding %d elements to ipset %s: %w", len(chunk), set, err)
		}
	}
	return nil
}
