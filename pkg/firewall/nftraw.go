package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sizes of the raw nftables batches.
const (
	// nftElemsMax is the most bytes of elements one NEWSETELEM message
	// carries: the element list's attribute length is a u16 (about 2300
	// IPv4 elements with timeouts).
	nftElemsMax = 60_000
	// nftSndBuf is the socket send buffer asked for (as root the
	// wmem_max limit does not apply); a transaction is sent in one
	// sendmsg and must fit in it.
	nftSndBuf = 8 << 20
	// nftGetMax is how many elements one GETSETELEM request asks for: the
	// kernel answers each with a message, all queued on the socket before
	// we read them.
	nftGetMax = 128
)

// nftRaw sends nftables set elements over a netlink socket of its own,
// encoded straight into one buffer, many elements per message and many
// messages per transaction (google/nftables builds several objects per
// element and sends 1000 per transaction: at a million bans that cost more
// than the kernel's work). It also asks the kernel whether given elements
// are present (GETSETELEM), which costs per element asked, unlike a set
// dump, which costs O(n²) over the whole set. It talks to table inet
// jailkeeper only.
type nftRaw struct {
	fd    int
	seq   uint32
	txMax int // bytes per transaction, below the socket's send buffer
	buf   []byte
	rbuf  []byte
	// hush, when set (a Watcher listens), stops the kernel's
	// notifications during a batch of at least nftHushMin elements.
	hush *notifyHush
	// lastGen is the generation of the last transaction add committed.
	lastGen uint32
}

// nftHushMin is the smallest batch during which notifications are
// stopped: the kernel builds one per element for a listener (adds were
// 2.4 times slower with the drift Watcher listening), while stopping and
// restarting them costs two generation reads.
const nftHushMin = 2048

// newNFTRaw opens the socket in namespace ns (netns.None() = current).
func newNFTRaw(ns netns.NsHandle) (*nftRaw, error) {
	s, err := openNetfilterSocket(ns)
	if err != nil {
		return nil, fmt.Errorf("opening netfilter netlink socket for nftables elements: %w", err)
	}
	// A blocking duplicate: the batch is processed inside sendmsg, the
	// answers are there when recvfrom runs.
	fd, err := unix.Dup(s.GetFd())
	s.Close()
	if err != nil {
		return nil, fmt.Errorf("duplicating netlink socket: %w", err)
	}
	unix.CloseOnExec(fd)
	r := &nftRaw{fd: fd, rbuf: make([]byte, 1<<16)}
	if err := unix.SetNonblock(fd, false); err != nil {
		r.close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(int64(10e9))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		r.close()
		return nil, fmt.Errorf("netlink socket: setting receive timeout: %w", err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, nftSndBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, nftSndBuf)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20)
	snd, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("netlink socket: reading send buffer size: %w", err)
	}
	// The kernel doubles the value asked for and charges skb overhead.
	r.txMax = min(snd/2-4096, 2<<20)
	if r.txMax < nftElemsMax+4096 {
		r.txMax = nftElemsMax + 4096
	}
	return r, nil
}

func (r *nftRaw) close() {
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// nftRawElem is one element to add: the start of an interval (or a plain
// key) with its timeout (0 = none), or the end of an interval.
type nftRawElem struct {
	addr    netip.Addr
	timeout uint64 // milliseconds
	end     bool
}

// appendNlmsg appends a netlink message header and nfgenmsg; endNlmsg
// fills in the length.
func (r *nftRaw) appendNlmsg(b []byte, typ uint16, flags uint16, family uint8, resID uint16) ([]byte, int) {
	off := len(b)
	r.seq++
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, r.seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, family, unix.NFNETLINK_V0)
	return binary.BigEndian.AppendUint16(b, resID), off
}

func endNlmsg(b []byte, off int) {
	binary.NativeEndian.PutUint32(b[off:], uint32(len(b)-off))
}

// appendSetElem appends one NFTA_LIST_ELEM.
func appendSetElem(b []byte, e nftRawElem) []byte {
	b, le := beginNest(b, unix.NFTA_LIST_ELEM)
	b, key := beginNest(b, unix.NFTA_SET_ELEM_KEY)
	if e.addr.Is4() {
		v := e.addr.As4()
		b = appendAttr(b, unix.NFTA_DATA_VALUE, v[:]...)
	} else {
		v := e.addr.As16()
		b = appendAttr(b, unix.NFTA_DATA_VALUE, v[:]...)
	}
	endNest(b, key)
	if e.end {
		b = binary.NativeEndian.AppendUint16(b, 8)
		b = binary.NativeEndian.AppendUint16(b, unix.NFTA_SET_ELEM_FLAGS)
		b = binary.BigEndian.AppendUint32(b, unix.NFT_SET_ELEM_INTERVAL_END)
	} else if e.timeout > 0 {
		b = binary.NativeEndian.AppendUint16(b, 12)
		b = binary.NativeEndian.AppendUint16(b, unix.NFTA_SET_ELEM_TIMEOUT)
		b = binary.BigEndian.AppendUint64(b, e.timeout)
	}
	endNest(b, le)
	return b
}

// appendElemsHeader appends the table and set attributes of an element
// message and opens the element list.
func appendElemsHeader(b []byte, set string) ([]byte, int) {
	b = appendAttr(b, unix.NFTA_SET_ELEM_LIST_TABLE, append([]byte(nftTable), 0)...)
	b = appendAttr(b, unix.NFTA_SET_ELEM_LIST_SET, append([]byte(set), 0)...)
	return beginNest(b, unix.NFTA_SET_ELEM_LIST_ELEMENTS)
}

// add adds n elements to set (elem(i) returns the i-th), replacing present
// ones, in transactions of up to txMax bytes. An interval's start and end
// must be consecutive; they are never split across transactions.
func (r *nftRaw) add(set string, n int, elem func(i int) nftRawElem) error {
	return r.batch(unix.NFT_MSG_NEWSETELEM, set, n, elem)
}

// nftMsgDestroySetElem is NFT_MSG_DESTROYSETELEM (Linux 6.3): a delete
// that ignores elements not in the set.
const nftMsgDestroySetElem = 30

// destroy removes n elements from set as add adds them (timeouts are not
// sent); elements the set does not hold are skipped. A kernel older than
// 6.3 refuses the message type with EINVAL.
func (r *nftRaw) destroy(set string, n int, elem func(i int) nftRawElem) error {
	return r.batch(nftMsgDestroySetElem, set, n, elem)
}

// batch sends element messages of type typ, with the Watcher's
// notifications stopped for a large one.
func (r *nftRaw) batch(typ uint16, set string, n int, elem func(i int) nftRawElem) (err error) {
	if r.hush != nil && n >= nftHushMin {
		commits := 0
		h := r.hush
		if herr := h.begin(r.genID, r.lastGen); herr == nil {
			r.hush = nil // no nesting
			defer func() {
				r.hush = h
				h.end(r.genID, commits, err == nil)
			}()
			return r.batchTx(typ, set, n, elem, &commits)
		}
	}
	return r.batchTx(typ, set, n, elem, new(int))
}

// batchTx is batch; commits counts the transactions the kernel committed
// (an empty one, which changes nothing, is not committed).
func (r *nftRaw) batchTx(typ uint16, set string, n int, elem func(i int) nftRawElem, commits *int) error {
	flags := uint16(unix.NLM_F_REQUEST)
	if typ == unix.NFT_MSG_NEWSETELEM {
		flags |= unix.NLM_F_CREATE
	}
	for i := 0; i < n; {
		b := r.buf[:0]
		b, begin := r.appendNlmsg(b, unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)
		endNlmsg(b, begin)
		firstSeq := r.seq
		// The first message names the table without changing it, with
		// NLM_F_ECHO: the kernel answers a transaction it commits with a
		// NEWGEN message (it takes the flag from the first message after
		// the batch's begin), and one that changes nothing (every element
		// present already, with the same timeout) with none. The element
		// messages carry no NLM_F_ECHO: with it, the kernel would build
		// and echo a message per element. Should the table be gone, the
		// batch fails on its set and creates nothing.
		var msg int
		b, msg = r.appendNlmsg(b, unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWTABLE,
			unix.NLM_F_REQUEST|unix.NLM_F_ECHO, unix.NFPROTO_INET, 0)
		b = appendAttr(b, unix.NFTA_TABLE_NAME, append([]byte(nftTable), 0)...)
		endNlmsg(b, msg)
		first := i
		var lastMsg int
		for i < n && len(b) < r.txMax-nftElemsMax-1024 {
			var msg, list int
			b, msg = r.appendNlmsg(b, unix.NFNL_SUBSYS_NFTABLES<<8|typ, flags, unix.NFPROTO_INET, 0)
			b, list = appendElemsHeader(b, set)
			for i < n && len(b)-list < nftElemsMax {
				e := elem(i)
				b = appendSetElem(b, e)
				i++
				if !e.end && i < n && elem(i).end { // keep an interval together
					b = appendSetElem(b, elem(i))
					i++
				}
			}
			endNest(b, list)
			endNlmsg(b, msg)
			lastMsg = msg
		}
		// Only the last message asks for an acknowledgement: errors come
		// anyway, and the ack says the batch has been processed.
		flags := binary.NativeEndian.Uint16(b[lastMsg+6:])
		binary.NativeEndian.PutUint16(b[lastMsg+6:], flags|unix.NLM_F_ACK)
		lastSeq := r.seq
		b, end := r.appendNlmsg(b, unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)
		endNlmsg(b, end)
		r.buf = b
		err := r.exchangeData(b, firstSeq, lastSeq, func(typ uint16, data []byte) {
			if typ == unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN && len(data) >= 4 {
				*commits++
				if g, ok := genID(data[4:]); ok {
					r.lastGen = g
				}
			}
		})
		if err != nil {
			verb := "adding"
			if typ != unix.NFT_MSG_NEWSETELEM {
				verb = "removing"
			}
			return fmt.Errorf("%s %d elements (first %v) of set %s: %w", verb, i-first, elem(first).addr, set, err)
		}
	}
	return nil
}

// genID returns the ruleset's generation: the kernel counts it up by one
// for each committed transaction of the namespace.
func (r *nftRaw) genID() (uint32, error) {
	b, msg := r.appendNlmsg(r.buf[:0], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN,
		unix.NLM_F_REQUEST|unix.NLM_F_ACK, unix.AF_UNSPEC, 0)
	endNlmsg(b, msg)
	r.buf = b
	var id uint32
	found := false
	err := r.exchangeData(b, r.seq, r.seq, func(typ uint16, data []byte) {
		if typ != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN || len(data) < 4 {
			return
		}
		eachAttr(data[4:], func(at uint16, val []byte) {
			if at == unix.NFTA_GEN_ID && len(val) == 4 {
				id, found = binary.BigEndian.Uint32(val), true
			}
		})
	})
	if err == nil && !found {
		err = errors.New("no generation in the answer")
	}
	if err != nil {
		return 0, fmt.Errorf("reading the nftables generation: %w", err)
	}
	return id, nil
}

// present asks the kernel whether each address is in set (for an interval
// set: inside one of its intervals) and returns the first one that is not
// (ok=false), or ok=true when all are.
func (r *nftRaw) present(set string, addrs []netip.Addr) (missing netip.Addr, ok bool, err error) {
	for start := 0; start < len(addrs); start += nftGetMax {
		chunk := addrs[start:min(start+nftGetMax, len(addrs))]
		b, msg := r.appendNlmsg(r.buf[:0], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETSETELEM,
			unix.NLM_F_REQUEST|unix.NLM_F_ACK, unix.NFPROTO_INET, 0)
		b, list := appendElemsHeader(b, set)
		for _, a := range chunk {
			b = appendSetElem(b, nftRawElem{addr: a})
		}
		endNest(b, list)
		endNlmsg(b, msg)
		r.buf = b
		found := 0
		err := r.exchange(b, r.seq, r.seq, func() { found++ })
		switch {
		case errors.Is(err, unix.ENOENT) && found < len(chunk):
			// The kernel answers in order and stops at the first
			// element it does not hold.
			return chunk[found], false, nil
		case err != nil:
			return netip.Addr{}, false, fmt.Errorf("looking up %d elements of set %s: %w", len(chunk), set, err)
		}
	}
	return netip.Addr{}, true, nil
}

// exchange sends b and reads answers until the acknowledgement (or error)
// of message lastSeq or an error for firstSeq (a batch the kernel refused
// as a whole). It returns the first error the kernel reported for a
// message of [firstSeq, lastSeq]; data calls back once per other answer.
func (r *nftRaw) exchange(b []byte, firstSeq, lastSeq uint32, data func()) error {
	var fn func(uint16, []byte)
	if data != nil {
		fn = func(uint16, []byte) { data() }
	}
	return r.exchangeData(b, firstSeq, lastSeq, fn)
}

// exchangeData is exchange, handing data each other answer's type and
// payload (valid during the call).
func (r *nftRaw) exchangeData(b []byte, firstSeq, lastSeq uint32, data func(typ uint16, payload []byte)) error {
	if err := unix.Sendto(r.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sendmsg of %d bytes: %w", len(b), err)
	}
	var first error
	for {
		n, _, err := unix.Recvfrom(r.fd, r.rbuf, 0)
		if err != nil {
			return fmt.Errorf("receiving netlink answers: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(r.rbuf[:n])
		if err != nil {
			return fmt.Errorf("parsing netlink answers: %w", err)
		}
		for _, m := range msgs {
			seq := m.Header.Seq
			if seq < firstSeq || seq > lastSeq {
				continue // an answer to an earlier request
			}
			if m.Header.Type != unix.NLMSG_ERROR {
				if data != nil {
					data(m.Header.Type, m.Data)
				}
				continue
			}
			if len(m.Data) < 4 {
				return fmt.Errorf("short netlink error message")
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 && first == nil {
				first = syscall.Errno(-code)
			}
			if seq == lastSeq || seq == firstSeq {
				return first
			}
		}
	}
}
