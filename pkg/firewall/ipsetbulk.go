package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// ipsetADTMax is the most bytes of elements one bulk message carries: the
// IPSET_ATTR_ADT attribute's length is a u16 (about 2500 IPv4 or 1600
// IPv6 elements).
const ipsetADTMax = 65000

// ipsetFlagListHeader is IPSET_FLAG_LIST_HEADER: a list request with it
// returns each set's header (with its element count) and no elements.
const ipsetFlagListHeader = 1 << 2

// ipsetBulk talks to the kernel's ipset netlink interface directly for
// what vishvananda/netlink cannot do or does slowly: it creates sets with a
// hash size fitted to the number of elements (no rehashing while a million
// bans are loaded), adds many elements per message the way `ipset restore`
// does (one IPSET_CMD_ADD whose IPSET_ATTR_ADT nests one IPSET_ATTR_DATA
// per element, encoded straight into one buffer: vishvananda/netlink sends
// one message per element, 13 s for a million), and reads a set's element
// count from its header without listing its elements. It owns its own
// NETLINK_NETFILTER socket (the Handle's is unexported), opened in the
// backend's namespace.
type ipsetBulk struct {
	sock *nl.SocketHandle
	buf  []byte // reused message body
}

func newIpsetBulk(ns netns.NsHandle) (*ipsetBulk, error) {
	s, err := openNetfilterSocket(ns)
	if err != nil {
		return nil, fmt.Errorf("opening netfilter netlink socket for ipset bulk adds: %w", err)
	}
	return &ipsetBulk{sock: &nl.SocketHandle{Socket: s}}, nil
}

func (b *ipsetBulk) close() { b.sock.Close() }

// ipsetElem is one element to add: a prefix (a host address is added
// without a CIDR) and its timeout in seconds (with hasTimeout; 0 =
// permanent in a set with timeout support).
type ipsetElem struct {
	prefix     netip.Prefix
	timeout    uint32
	hasTimeout bool
}

// appendAttr appends a netlink attribute (4-byte header, padded data).
func appendAttr(b []byte, typ uint16, data ...byte) []byte {
	n := 4 + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for ; n%4 != 0; n++ {
		b = append(b, 0)
	}
	return b
}

// appendBE32 appends a u32 attribute in network byte order.
func appendBE32(b []byte, typ uint16, v uint32) []byte {
	b = binary.NativeEndian.AppendUint16(b, 8)
	b = binary.NativeEndian.AppendUint16(b, typ|nl.NLA_F_NET_BYTEORDER)
	return binary.BigEndian.AppendUint32(b, v)
}

// beginNest appends the header of a nested attribute whose length
// endNest fills in; it returns the header's offset.
func beginNest(b []byte, typ uint16) ([]byte, int) {
	off := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0)
	return binary.NativeEndian.AppendUint16(b, typ|nl.NLA_F_NESTED), off
}

func endNest(b []byte, off int) {
	binary.NativeEndian.PutUint16(b[off:], uint16(len(b)-off))
}

// appendElem appends one IPSET_ATTR_DATA element.
func appendElem(b []byte, e ipsetElem) []byte {
	b, data := beginNest(b, nl.IPSET_ATTR_DATA)
	if e.hasTimeout {
		b = appendBE32(b, nl.IPSET_ATTR_TIMEOUT, e.timeout)
	}
	b, ip := beginNest(b, nl.IPSET_ATTR_IP)
	a := e.prefix.Addr()
	if a.Is4() {
		v := a.As4()
		b = appendAttr(b, nl.IPSET_ATTR_IPADDR_IPV4|nl.NLA_F_NET_BYTEORDER, v[:]...)
	} else {
		v := a.As16()
		b = appendAttr(b, nl.IPSET_ATTR_IPADDR_IPV6|nl.NLA_F_NET_BYTEORDER, v[:]...)
	}
	endNest(b, ip)
	if !isHost(e.prefix) {
		b = appendAttr(b, nl.IPSET_ATTR_CIDR, uint8(e.prefix.Bits()))
	}
	endNest(b, data)
	return b
}

// request sends one ipset command whose attributes (after the protocol
// attribute) are body and returns the kernel's answers.
func (b *ipsetBulk) request(cmd int, flags int, body []byte) ([][]byte, error) {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  uint16(cmd | unix.NFNL_SUBSYS_IPSET<<8),
			Flags: uint16(nl.GetIpsetFlags(cmd) | flags),
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: b.sock},
	}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_NETLINK), Version: nl.NFNETLINK_V0})
	req.AddRawData(appendAttr(nil, nl.IPSET_ATTR_PROTOCOL, nl.IPSET_PROTOCOL))
	req.AddRawData(body)
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && int(errno) >= nl.IPSET_ERR_PRIVATE {
			err = nl.IPSetError(uintptr(errno))
		}
	}
	return msgs, err
}

// create makes set (failing with EEXIST if it exists) with room for size
// elements without rehashing and at most maxElem, like `ipset create NAME
// TYPE family F hashsize H maxelem M [timeout 0]`.
func (b *ipsetBulk) create(s setSpec, name string, size int, maxElem uint32) error {
	rev, fam := uint8(1), uint8(unix.AF_INET) // the revisions vishvananda/netlink uses
	if s.typ == "hash:net" {
		rev = 0
	}
	if s.v6 {
		fam = unix.AF_INET6
	}
	body := appendAttr(nil, nl.IPSET_ATTR_SETNAME, append([]byte(name), 0)...)
	body = appendAttr(body, nl.IPSET_ATTR_TYPENAME, append([]byte(s.typ), 0)...)
	body = appendAttr(body, nl.IPSET_ATTR_REVISION, rev)
	body = appendAttr(body, nl.IPSET_ATTR_FAMILY, fam)
	body, data := beginNest(body, nl.IPSET_ATTR_DATA)
	body = appendBE32(body, nl.IPSET_ATTR_HASHSIZE, ipsetHashSize(size))
	body = appendBE32(body, nl.IPSET_ATTR_MAXELEM, maxElem)
	if s.timeout {
		body = appendBE32(body, nl.IPSET_ATTR_TIMEOUT, 0) // timeout support; each element carries its own
	}
	endNest(body, data)
	if _, err := b.request(nl.IPSET_CMD_CREATE, unix.NLM_F_EXCL, body); err != nil {
		return fmt.Errorf("creating ipset %s (%s): %w", name, s.typ, err)
	}
	return nil
}

// ipsetHashSize returns the hash size for a set about to hold n elements:
// the kernel keeps up to 12 elements per bucket before it grows the table
// (rehashing every element), so aim at about four per bucket. The kernel
// rounds it to a power of two; 1024 is its default and our minimum.
func ipsetHashSize(n int) uint32 {
	h := uint32(1024)
	for int(h)*4 < n && h < 1<<26 {
		h <<= 1
	}
	return h
}

// add adds elements to set, replacing present ones (like -exist), in as
// few messages as the attribute length allows.
func (b *ipsetBulk) add(set string, elems []ipsetElem) error {
	name := append([]byte(set), 0)
	for start := 0; start < len(elems); {
		body := appendAttr(b.buf[:0], nl.IPSET_ATTR_SETNAME, name...)
		// The kernel requires a top-level line number with IPSET_ATTR_ADT.
		body = appendBE32(body, nl.IPSET_ATTR_LINENO, uint32(start+1))
		body, adt := beginNest(body, nl.IPSET_ATTR_ADT)
		end := start
		for end < len(elems) && len(body)-adt < ipsetADTMax {
			body = appendElem(body, elems[end])
			end++
		}
		endNest(body, adt)
		b.buf = body
		if _, err := b.request(nl.IPSET_CMD_ADD, 0, body); err != nil {
			if end-start == 1 || errors.Is(err, errHashFull) {
				return fmt.Errorf("adding %d elements (first %v) to ipset %s: %w", end-start, elems[start].prefix, set, err)
			}
			// The kernel stops a message at the first element it
			// refuses: add them one by one so that one bad element
			// does not keep the rest out.
			if err := b.addEach(set, elems[start:end]); err != nil {
				return err
			}
		}
		start = end
	}
	return nil
}

// del removes elements from set, many per message, like `ipset -exist
// del`: an element the set does not hold is no error (the request carries
// no NLM_F_EXCL, so the kernel applies IPSET_FLAG_EXIST). A missing set is
// an error wrapping ENOENT.
func (b *ipsetBulk) del(set string, elems []ipsetElem) error {
	name := append([]byte(set), 0)
	for start := 0; start < len(elems); {
		body := appendAttr(b.buf[:0], nl.IPSET_ATTR_SETNAME, name...)
		body = appendBE32(body, nl.IPSET_ATTR_LINENO, uint32(start+1))
		body, adt := beginNest(body, nl.IPSET_ATTR_ADT)
		end := start
		for end < len(elems) && len(body)-adt < ipsetADTMax {
			body = appendElem(body, ipsetElem{prefix: elems[end].prefix})
			end++
		}
		endNest(body, adt)
		b.buf = body
		if _, err := b.request(nl.IPSET_CMD_DEL, 0, body); err != nil {
			return fmt.Errorf("removing %d elements (first %v) from ipset %s: %w", end-start, elems[start].prefix, set, err)
		}
		start = end
	}
	return nil
}

// errHashFull is ipset's "hash is full" (IPSET_ERR_HASH_FULL, the first
// hash-type error): a set at maxelem refuses every further element, so
// adding the rest one by one is pointless.
var errHashFull = nl.IPSetError(nl.IPSET_ERR_TYPE_SPECIFIC)

// errRefused marks an error of elements the kernel refused one by one,
// every other element of the same call being in.
var errRefused = errors.New("refused")

// addEach adds elements one message each, after a message of several
// failed; it adds every element the kernel accepts and returns an error
// naming those it refused.
func (b *ipsetBulk) addEach(set string, elems []ipsetElem) error {
	name := append([]byte(set), 0)
	var refused []string
	var first error
	for i, e := range elems {
		body := appendAttr(b.buf[:0], nl.IPSET_ATTR_SETNAME, name...)
		body = appendBE32(body, nl.IPSET_ATTR_LINENO, 1)
		body, adt := beginNest(body, nl.IPSET_ATTR_ADT)
		body = appendElem(body, e)
		endNest(body, adt)
		b.buf = body
		_, err := b.request(nl.IPSET_CMD_ADD, 0, body)
		if err == nil {
			continue
		}
		if errors.Is(err, errHashFull) {
			return fmt.Errorf("adding %v to ipset %s (it and the %d after it not added): %w", e.prefix, set, len(elems)-i-1, err)
		}
		if first == nil {
			first = err
		}
		if len(refused) < 8 {
			refused = append(refused, prefix.Format(e.prefix))
		}
	}
	if first != nil {
		return fmt.Errorf("ipset %s %w %s (the other elements were added): %w", set, errRefused, strings.Join(refused, ", "), first)
	}
	return nil
}

// count returns the number of elements set holds, from its header (the
// kernel does not count entries that have timed out but are not yet
// garbage-collected). A missing set is an error wrapping ENOENT.
func (b *ipsetBulk) count(set string) (int, error) {
	body := appendAttr(nil, nl.IPSET_ATTR_SETNAME, append([]byte(set), 0)...)
	body = appendBE32(body, nl.IPSET_ATTR_FLAGS, ipsetFlagListHeader)
	msgs, err := b.request(nl.IPSET_CMD_LIST, 0, body)
	if err != nil {
		return 0, fmt.Errorf("reading the header of ipset %s: %w", set, err)
	}
	for _, m := range msgs {
		if len(m) < 4 {
			continue
		}
		n := -1
		eachAttr(m[4:], func(typ uint16, val []byte) {
			if typ == nl.IPSET_ATTR_DATA {
				eachAttr(val, func(typ uint16, val []byte) {
					if typ == nl.IPSET_ATTR_ELEMENTS && len(val) == 4 {
						n = int(binary.BigEndian.Uint32(val))
					}
				})
			}
		})
		if n >= 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("reading the header of ipset %s: no element count in the answer", set)
}

// eachAttr calls fn with the type (without flags) and value of every
// netlink attribute in b.
func eachAttr(b []byte, fn func(typ uint16, val []byte)) {
	for len(b) >= 4 {
		n := int(binary.NativeEndian.Uint16(b))
		if n < 4 || n > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[2:])&nl.NLA_TYPE_MASK, b[4:n])
		b = b[min((n+3)&^3, len(b)):]
	}
}
