package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Drift between verifications.
//
// Verify repairs whatever it finds, but the daemon runs it once per
// watchdog period. A Watcher notices sooner that another program changed
// what a backend built, so that the caller verifies at once:
//
//   - nftables sends a multicast message (group NFNLGRP_NFTABLES) for every
//     object of every committed transaction, then one NEWGEN message naming
//     the process that committed it. The Watcher listens in the backend's
//     namespace and wakes the caller after a transaction that touched the
//     backend's tables and was not committed by this process. This covers
//     the nftables backend (table inet jailkeeper) and the iptables backend
//     when iptables is iptables-nft (table filter of ip and ip6): `nft
//     flush ruleset`, `iptables -F`, a rule inserted above ours.
//   - ipset sends nothing. For the iptables backend the Watcher also wakes
//     the caller every TickEvery, and Check compares each ban set's element
//     count (one netlink request for its header) with the bans the backend
//     knows the set must hold: what Setup and Verify loaded, plus Add, minus
//     Remove, minus the bans that expired since. `ipset flush` is found at
//     the next tick.
//   - iptables-legacy's rules (x_tables) notify nothing either: with it, the
//     same check compares table filter's header (its rule count, size and
//     chain offsets) with what the backend's last Setup or Verify left
//     (xtinfo.go).

// TickEvery is how often a Watcher wakes the caller for a backend whose
// drift is not notified by the kernel (ipset).
const TickEvery = 250 * time.Millisecond

// minGap is the least time between two drift alarms of a Watcher, so that
// another program rewriting its own nftables rules many times a second
// costs at most ten Verify calls a second; the gap is also costFactor
// times what the last Verify took (Verified), up to maxCostGap, so that
// slow repairs (many bans, a loaded machine) take at most about half a
// core while a drift still waits at most 300 ms for its turn. maxGap
// bounds the back-off after repeated cheap-check alarms (a ban the kernel
// keeps refusing).
const (
	minGap     = 100 * time.Millisecond
	maxGap     = 6400 * time.Millisecond
	costFactor = 2
	maxCostGap = 300 * time.Millisecond
)

// watchable is implemented by backends a Watcher can watch.
type watchable interface {
	// watchSpec returns the namespace (path, "" = current) and the
	// nftables tables whose changes matter, and whether Check must run
	// quickCheck on a timer.
	watchSpec() (ns string, tables []nftTableID, tick bool)
	// quickCheck reports, cheaply, whether the kernel may have lost
	// something the backend put there. Called serialised with the
	// backend's other calls.
	quickCheck(now time.Time) (bool, error)
}

// nftTableID names an nftables table: its family (NFPROTO_*) and name.
type nftTableID struct {
	family byte
	name   string
}

// Watcher tells its caller when the kernel may have drifted from what a
// backend built (see above). Its methods may be called on a nil Watcher,
// which never wakes anyone.
type Watcher struct {
	b    watchable
	wake chan struct{}
	quit chan struct{}
	wg   sync.WaitGroup
	// sockFile is the notification socket, in the runtime's poller (its
	// Close ends a pending read); nil without notifications.
	sockFile *os.File
	now      func() time.Time

	mu       sync.Mutex
	timer    *time.Timer // re-arms a wake held back by the gap
	notified bool        // a foreign change was notified since the last alarm
	lost     bool        // notifications were lost (ENOBUFS): assume a change
	// sets are the sets of the watched tables another program's
	// transactions touched since the last alarm; anySet says one touched
	// a set it did not name, or the table itself.
	sets   []string
	anySet bool
	last   time.Time
	alarms int           // consecutive alarms of the cheap check
	cost   time.Duration // what the last Verify after an alarm took
	// gen is the newest nftables generation whose transaction was heard
	// to its end (its NEWGEN read) or accounted for by a notifyHush.
	gen uint32
}

// Watch starts watching b. It returns a nil Watcher for a backend with
// nothing to watch (none, Fake). When it cannot subscribe to nftables'
// notifications it says so in the error, and returns the Watcher of the
// cheap check alone if the backend has one (else nil). Close stops it.
// The nftables backend learns of the Watcher (notifyHush): call Watch and
// Close serialised with the backend's other calls.
func Watch(b Backend) (*Watcher, error) {
	wb, ok := b.(watchable)
	if !ok {
		return nil, nil
	}
	ns, tables, tick := wb.watchSpec()
	w := &Watcher{b: wb, wake: make(chan struct{}, 1), quit: make(chan struct{}), now: time.Now}
	var serr error
	if len(tables) > 0 {
		f, err := subscribeNFTables(ns)
		if err != nil && !tick {
			return nil, err
		}
		if err == nil {
			w.sockFile = f
			w.wg.Add(1)
			go w.listen(tables)
			if hb, ok := b.(hushable); ok {
				hb.setHush(&notifyHush{w: w})
			}
		}
		serr = err
	}
	if tick {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			t := time.NewTicker(TickEvery)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					w.poke()
				case <-w.quit:
					return
				}
			}
		}()
	}
	return w, serr
}

// Wake returns a channel that receives a value when the caller should call
// Check: at once after a notified change, and every TickEvery for a
// backend with a cheap check. Nil for a nil Watcher.
func (w *Watcher) Wake() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.wake
}

func (w *Watcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Check reports whether the caller should run Verify now: another program
// changed the backend's nftables tables, notifications were lost, or the
// cheap check found a ban set holding fewer elements than it must. Alarms
// come at most every 100 ms, or twice what the last Verify took up to
// 300 ms (a held-back one is delivered later), and repeated cheap-check
// alarms back off up to 6.4 s. Call it serialised with the backend's other
// calls.
func (w *Watcher) Check() bool {
	if w == nil {
		return false
	}
	now := w.now()
	w.mu.Lock()
	notified := w.notified || w.lost
	gap := max(minGap, min(costFactor*w.cost, maxCostGap))
	if w.alarms > 0 {
		gap = max(gap, min(minGap<<min(w.alarms, 8), maxGap))
	}
	if wait := w.last.Add(gap).Sub(now); wait > 0 && (notified || w.alarms > 0) {
		// Too soon after the last alarm: come back when it is time.
		if w.timer == nil {
			w.timer = time.AfterFunc(wait, func() {
				w.mu.Lock()
				w.timer = nil
				w.mu.Unlock()
				w.poke()
			})
		}
		w.mu.Unlock()
		return false
	}
	w.mu.Unlock()

	short, err := w.b.quickCheck(now)
	alarm := notified || short || err != nil
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case short || err != nil:
		w.alarms++
	default:
		w.alarms = 0
	}
	if alarm {
		if nb, ok := w.b.(driftNoter); ok && (w.lost || w.anySet || len(w.sets) > 0) {
			nb.noteDrift(w.sets, w.lost || w.anySet)
		}
		w.notified, w.lost, w.last = false, false, now
		w.sets, w.anySet = nil, false
	}
	return alarm
}

// driftNoter is implemented by a backend that wants to know which sets
// another program changed (all = it cannot be known: notifications were
// lost, or a change came during a hush, or named no set), for its next
// Verify to check them in full. Called by Check, serialised with the
// backend's other calls.
type driftNoter interface {
	noteDrift(sets []string, all bool)
}

// Verified tells the Watcher what the Verify run after its alarm took, to
// space the next alarms by it.
func (w *Watcher) Verified(took time.Duration) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.cost = took
	w.mu.Unlock()
}

// Close stops the Watcher.
func (w *Watcher) Close() {
	if w == nil {
		return
	}
	close(w.quit)
	if hb, ok := w.b.(hushable); ok && w.sockFile != nil {
		hb.setHush(nil)
	}
	if w.sockFile != nil {
		w.sockFile.Close() // ends the pending read
	}
	w.wg.Wait()
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
}

// listen reads nftables notifications until Close. Its own changes make
// the kernel notify each element it adds: read them with one buffer and no
// allocation.
func (w *Watcher) listen(tables []nftTableID) {
	defer w.wg.Done()
	self := ownProcess()
	touched := false // the transaction being notified touched our tables
	// The sets of our tables the transaction touched, and whether it
	// touched the tables or a set it did not name.
	var txSets []string
	txAll := false
	buf := make([]byte, 1<<16)
	raw, err := w.sockFile.SyscallConn()
	if err != nil {
		return
	}
	for {
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			select {
			case <-w.quit:
				return
			default:
			}
			// Messages were dropped (ENOBUFS), or the socket failed: a
			// change may be among them.
			w.mu.Lock()
			w.lost = true
			w.mu.Unlock()
			w.poke()
			touched, txSets, txAll = false, txSets[:0], false
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			// Not a socket that will work again: the watchdog's Verify
			// and the cheap check are left.
			return
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			data := b[unix.NLMSG_HDRLEN:l]
			b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
			if typ>>8 != unix.NFNL_SUBSYS_NFTABLES || len(data) < 4 {
				continue
			}
			if typ&0xff == unix.NFT_MSG_NEWGEN {
				foreign := touched && !self.committed(data[4:])
				w.mu.Lock()
				if g, ok := genID(data[4:]); ok && int32(g-w.gen) > 0 {
					w.gen = g
				}
				w.notified = w.notified || foreign
				if foreign {
					for _, s := range txSets {
						if !slices.Contains(w.sets, s) {
							w.sets = append(w.sets, s)
						}
					}
					w.anySet = w.anySet || txAll
				}
				w.mu.Unlock()
				if foreign {
					w.poke()
				}
				touched, txSets, txAll = false, txSets[:0], false
				continue
			}
			if !touches(data, tables) {
				continue
			}
			touched = true
			switch typ & 0xff {
			case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM, unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET:
				// Attribute 2 names the set (NFTA_SET_NAME,
				// NFTA_SET_ELEM_LIST_SET).
				name, ok := attr(data[4:], 2)
				if n := len(name); n > 0 && name[n-1] == 0 {
					name = name[:n-1]
				}
				switch {
				case !ok:
					txAll = true
				case !slices.ContainsFunc(txSets, func(s string) bool { return s == string(name) }):
					txSets = append(txSets, string(name))
				}
			case unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE:
				txAll = true
			}
		}
	}
}

// subscribeNFTables opens a netlink socket in the namespace at ns ("" =
// current) subscribed to nftables' change notifications.
func subscribeNFTables(ns string) (*os.File, error) {
	var fd int
	err := inNetNS(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.NFNLGRP_NFTABLES - 1)}); err != nil {
			unix.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to nftables change notifications: %w", err)
	}
	// Room for a large transaction's notifications; beyond it the kernel
	// reports ENOBUFS, which counts as a change.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	return os.NewFile(uintptr(fd), "nftables-notifications"), nil
}

// touches reports whether an nftables object message (nfgenmsg, then
// attributes; attribute 1 of every object kind is its table's name) is
// about one of tables. A message it cannot read counts as touching.
func touches(data []byte, tables []nftTableID) bool {
	family := data[0]
	name, found := "", false
	eachAttr(data[4:], func(typ uint16, val []byte) {
		if typ == 1 && !found {
			found = true
			if n := len(val); n > 0 && val[n-1] == 0 {
				val = val[:n-1]
			}
			name = string(val)
		}
	})
	if !found {
		return true
	}
	for _, t := range tables {
		if t.family == family && t.name == name {
			return true
		}
	}
	return false
}

// attr returns the first attribute of type typ in attrs.
func attr(attrs []byte, typ uint16) (val []byte, ok bool) {
	eachAttr(attrs, func(t uint16, v []byte) {
		if t == typ && !ok {
			val, ok = v, true
		}
	})
	return val, ok
}

// genID returns NFTA_GEN_ID of a NEWGEN message's attributes.
func genID(attrs []byte) (id uint32, ok bool) {
	eachAttr(attrs, func(typ uint16, val []byte) {
		if typ == unix.NFTA_GEN_ID && len(val) == 4 {
			id, ok = binary.BigEndian.Uint32(val), true
		}
	})
	return id, ok
}

// hushable is implemented by a backend that stops a Watcher's nftables
// notifications during its own large batches (nftables): setHush(h)
// starts that, setHush(nil) ends it. Called serialised with the
// backend's other calls.
type hushable interface {
	setHush(h *notifyHush)
}

// notifyHush stops a Watcher's nftables notifications while the backend
// sends a large batch of its own, and makes up for what the Watcher did
// not hear. With a listener, the kernel builds a notification for each
// element a transaction adds (a million adds took 2.4 times as long),
// and the Watcher reads them only to learn that the transaction was its
// own.
//
// The guarantee: every transaction another process commits in the
// namespace while the Watcher is not listening raises a drift alarm, as a
// notified foreign change does. The kernel numbers committed
// transactions (the generation, one up per commit; a transaction that
// changes nothing is not committed and does not count): begin reads it
// (g0), then leaves the notification group; the backend counts the
// commits of its own batch by the NEWGEN message the kernel echoes to it
// for each; end joins the group again and reads the generation (g1). Any
// other commit between the two reads makes g1-g0 exceed the backend's own
// count, and a batch that failed (its count may be short) alarms anyway.
// A transaction committed at or before g0 whose notifications were still
// on their way when the Watcher left the group (the kernel counts the
// generation up before it sends them) is found because by the end the
// Watcher has not heard that generation's NEWGEN, which the kernel sends
// last: that alarms too, unless g0 is the backend's own last commit
// (transactions commit one at a time, so every earlier one's
// notifications were queued before it). The alarm leads to a Verify,
// which repairs whatever another program changed; a false alarm (the
// Watcher's reader too far behind) costs one Verify.
type notifyHush struct {
	w  *Watcher
	g0 uint32
	// own: g0 is the generation of the backend's own last transaction
	// (echoed to it), whose notifications need not be heard.
	own bool
}

// membership joins (true) or leaves the nftables notification group.
func (w *Watcher) membership(join bool) error {
	raw, err := w.sockFile.SyscallConn()
	if err != nil {
		return err
	}
	opt := unix.NETLINK_DROP_MEMBERSHIP
	if join {
		opt = unix.NETLINK_ADD_MEMBERSHIP
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, opt, unix.NFNLGRP_NFTABLES)
	}); err != nil {
		return err
	}
	return serr
}

// begin reads the generation and leaves the group; lastOwn is the
// generation of the backend's last transaction it knows committed (0 =
// none). On an error nothing is stopped.
func (h *notifyHush) begin(gen func() (uint32, error), lastOwn uint32) error {
	g, err := gen()
	if err != nil {
		return err
	}
	if err := h.w.membership(false); err != nil {
		return fmt.Errorf("leaving the nftables notification group: %w", err)
	}
	h.g0, h.own = g, g == lastOwn
	return nil
}

// end joins the group again, reads the generation, and alarms unless
// exactly the backend's commits (the NEWGEN echoes it counted) happened
// since begin, or the batch failed (ok=false).
func (h *notifyHush) end(gen func() (uint32, error), commits int, ok bool) {
	w := h.w
	jerr := w.membership(true)
	g1, gerr := gen()
	w.mu.Lock()
	heard := h.own || int32(w.gen-h.g0) >= 0
	alarm := !ok || jerr != nil || gerr != nil || g1-h.g0 != uint32(commits) || !heard
	if gerr == nil && int32(g1-w.gen) > 0 {
		w.gen = g1
	}
	if alarm {
		w.lost = true
	}
	w.mu.Unlock()
	if alarm {
		w.poke()
	}
}

// genInfo returns NFTA_GEN_PROC_PID and NFTA_GEN_PROC_NAME of a NEWGEN
// message's attributes (0 and "" when absent).
func genInfo(attrs []byte) (pid int, comm string) {
	eachAttr(attrs, func(typ uint16, val []byte) {
		switch {
		case typ == unix.NFTA_GEN_PROC_PID && len(val) == 4:
			pid = int(binary.BigEndian.Uint32(val))
		case typ == unix.NFTA_GEN_PROC_NAME:
			comm = strings.TrimRight(string(val), "\x00")
		}
	})
	return pid, comm
}

// initPIDNS is the inode of the initial PID namespace (the kernel's
// PROC_PID_INIT_INO).
const initPIDNS = "pid:[4026531836]"

// process is what tells the daemon's own nftables commits from others'.
type process struct {
	pid int
	// nested: in a PID namespace of its own (a container), where the
	// kernel's NEWGEN names the committing thread by its ID in the initial
	// namespace, which the process cannot see; comm is then compared.
	nested bool
	comm   string
}

func ownProcess() process {
	p := process{pid: os.Getpid()}
	if ns, err := os.Readlink("/proc/self/ns/pid"); err == nil && ns != initPIDNS {
		p.nested = true
		if b, err := os.ReadFile("/proc/self/comm"); err == nil {
			p.comm = strings.TrimSpace(string(b))
		}
	}
	return p
}

// committed reports whether the NEWGEN message with attributes attrs is of
// a transaction this process committed: the kernel names the committing
// thread, and Go runs on many. In a nested PID namespace the thread's name
// is compared instead (a process there with the same name goes unnoticed
// until the watchdog's Verify).
func (p process) committed(attrs []byte) bool {
	tid, comm := genInfo(attrs)
	if p.nested {
		return p.comm != "" && comm == p.comm
	}
	return ownThread(p.pid, tid)
}

// ownThread reports whether tid is a thread of process pid.
func ownThread(pid, tid int) bool {
	if tid <= 0 {
		return false
	}
	return unix.Tgkill(pid, tid, syscall.Signal(0)) == nil
}

// banTally counts, per ban set, the bans the kernel must hold for sure:
// permanent ones, and timed ones until verifySlack seconds before they
// expire. Setup and Verify reset it from the ban table; Add and Remove move
// it. A ban added again (refreshed or extended) counts twice until the
// next reset: the count errs high, which costs a Verify that finds nothing
// and resets it, never a missed drift.
type banTally struct {
	perm map[string]int
	exp  map[string]map[int64]int // set → expiry (unix second, rounded up) → bans
	sum  map[string]int           // set → bans in exp
	cut  int64                    // expiries up to this second no longer count
}

func newBanTally() *banTally {
	return &banTally{perm: map[string]int{}, exp: map[string]map[int64]int{}, sum: map[string]int{}}
}

// reset counts exactly bans (prepared), as of now.
func (t *banTally) reset(bans []Ban, now time.Time) {
	*t = *newBanTally()
	t.cut = now.Unix() + verifySlack
	for _, b := range bans {
		t.add(b, 1)
	}
}

func expirySecond(exp time.Time) int64 {
	s := exp.Unix()
	if exp.Nanosecond() > 0 {
		s++
	}
	return s
}

// add counts a prepared ban (delta 1) or uncounts it (-1).
func (t *banTally) add(b Ban, delta int) {
	set := ipsetFor(b)
	if b.Expires.IsZero() {
		t.perm[set] = max(t.perm[set]+delta, 0)
		return
	}
	s := expirySecond(b.Expires)
	if s <= t.cut {
		return
	}
	m := t.exp[set]
	if m == nil {
		m = map[int64]int{}
		t.exp[set] = m
	}
	if delta < 0 && m[s] == 0 {
		return
	}
	m[s] += delta
	t.sum[set] += delta
	if m[s] == 0 {
		delete(m, s)
	}
}

// want returns the bans set must hold at now.
func (t *banTally) want(set string, now time.Time) int {
	t.age(now)
	return t.perm[set] + t.sum[set]
}

// age drops the bans expiring within verifySlack seconds of now.
func (t *banTally) age(now time.Time) {
	c := now.Unix() + verifySlack
	if c <= t.cut {
		return
	}
	if c-t.cut > 3600 {
		for set, m := range t.exp {
			for s, n := range m {
				if s <= c {
					t.sum[set] -= n
					delete(m, s)
				}
			}
		}
	} else {
		for s := t.cut + 1; s <= c; s++ {
			for set, m := range t.exp {
				if n, ok := m[s]; ok {
					t.sum[set] -= n
					delete(m, s)
				}
			}
		}
	}
	t.cut = c
}
