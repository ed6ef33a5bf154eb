package firewall

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Skipping the refill at a restart.
//
// A restart finds the kernel's sets full (Close leaves them), and Setup
// fills them again: a million bans cost the nftables backend about 0.4
// CPU-seconds before READY=1. A Stamper can skip that when it can prove
// the sets still hold what it put there:
//
//   - at a clean stop, Stamp checks that every write since the last full
//     fill succeeded and that no other program's change to the table was
//     heard and left unrepaired (the drift Watcher listens to every
//     committed transaction of the namespace, and has heard them all up to
//     the generation read now), and returns a record of the boot, the
//     network namespace, that generation and the sets of the layout;
//   - at the next start SetupFrom compares the record with the kernel
//     now: the same boot and namespace, the same sets, and the same
//     generation, which the kernel counts up by one for every transaction
//     committed in the namespace by anyone (nft, iptables-nft, another
//     jailkeeper). Then nothing changed since the stop: the sets are left as
//     they are, and only the layout (chain, rules, whitelist) is built again
//     in one transaction. Anything else takes the full path.
//
// Bans that expired while the daemon was down went by their kernel
// timeouts. The caller must hand SetupFrom the same bans it held at the
// stop (minus those expired) and remove any it dropped since: the keeper
// keeps the stamp inside the ban table's file, which takes it out again
// when it is opened, so a stamp serves one start at most, and a crash
// (no Close) leaves none.

// Stamper is implemented by a backend that can skip refilling its sets at
// a restart (the nftables backend).
type Stamper interface {
	// Stamp returns the record of a clean stop, or an error saying why
	// the sets cannot be proven to hold exactly what the backend put
	// there. Call it last before Close, with no write in between, while
	// the backend's Watcher still runs.
	Stamp() ([]byte, error)
	// SetupFrom is Setup, given the record Stamp returned at the last
	// stop (nil: none): when it still holds, the sets are not filled
	// again and filled is "". Otherwise it runs Setup, and filled says
	// why.
	SetupFrom(l Layout, bans []Ban, stamp []byte) (filled string, err error)
}

var _ Stamper = (*nft)(nil)

// nftStampVersion is the first byte of an nftables stamp; a record of
// another version never holds.
const nftStampVersion = 1

// stampWait bounds how long Stamp waits for the Watcher to hear the
// transactions committed before it.
const stampWait = 500 * time.Millisecond

// kernelID names the running kernel and the backend's network namespace:
// the boot ID, the namespace's cookie (never reused while the system
// runs; 0 on a kernel without SO_NETNS_COOKIE) and its inode.
type kernelID struct {
	boot   [16]byte
	cookie uint64
	dev    uint64
	ino    uint64
}

// bootID reads the kernel's boot ID.
func bootID() ([16]byte, error) {
	var id [16]byte
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return id, fmt.Errorf("reading the boot ID: %w", err)
	}
	h := strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
	if n, err := hex.Decode(id[:], []byte(h)); err != nil || n != len(id) || len(h) != 2*len(id) {
		return id, fmt.Errorf("reading the boot ID: %q", b)
	}
	return id, nil
}

// kernelID reads the boot and the namespace of the backend's socket.
func (b *nft) kernelID() (kernelID, error) {
	var id kernelID
	var err error
	if id.boot, err = bootID(); err != nil {
		return id, err
	}
	if b.raw == nil {
		return id, errors.New("the backend is closed")
	}
	if c, err := unix.GetsockoptUint64(b.raw.fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE); err == nil {
		id.cookie = c
	}
	var st unix.Stat_t
	if b.ns.IsOpen() {
		err = unix.Fstat(int(b.ns), &st)
	} else {
		err = unix.Stat("/proc/self/ns/net", &st)
	}
	if err != nil {
		return id, fmt.Errorf("reading the network namespace's inode: %w", err)
	}
	id.dev, id.ino = st.Dev, st.Ino
	return id, nil
}

// setsKey names the ban sets of a layout (names and kinds), which decide
// where each ban goes; rules and whitelist are built again anyway.
func setsKey(l Layout) []byte {
	var b []byte
	for _, sp := range nftSets(l) {
		b = fmt.Appendf(b, "%s %t %t %t\n", sp.name, sp.v6, sp.interval, sp.timeout)
	}
	return b
}

// nftStamp is the record: version, kernel ID, generation, the sets.
type nftStamp struct {
	id   kernelID
	gen  uint32
	sets []byte
}

func (s nftStamp) encode() []byte {
	b := []byte{nftStampVersion}
	b = append(b, s.id.boot[:]...)
	b = binary.BigEndian.AppendUint64(b, s.id.cookie)
	b = binary.BigEndian.AppendUint64(b, s.id.dev)
	b = binary.BigEndian.AppendUint64(b, s.id.ino)
	b = binary.BigEndian.AppendUint32(b, s.gen)
	return append(b, s.sets...)
}

// nftStampFixed is the length of a stamp's fixed part.
const nftStampFixed = 1 + 16 + 8 + 8 + 8 + 4

func decodeNFTStamp(b []byte) (nftStamp, error) {
	var s nftStamp
	if len(b) < nftStampFixed || b[0] != nftStampVersion {
		return s, errors.New("a stamp of another format")
	}
	b = b[1:]
	copy(s.id.boot[:], b)
	b = b[16:]
	s.id.cookie = binary.BigEndian.Uint64(b)
	s.id.dev = binary.BigEndian.Uint64(b[8:])
	s.id.ino = binary.BigEndian.Uint64(b[16:])
	s.gen = binary.BigEndian.Uint32(b[24:])
	s.sets = b[28:]
	return s, nil
}

// Stamp implements Stamper.
func (b *nft) Stamp() ([]byte, error) {
	switch {
	case b.raw == nil:
		return nil, errors.New("the backend is closed")
	case !b.exact:
		return nil, errors.New("a write failed, or another program changed the table, since the sets were last filled")
	case b.changedAll || len(b.changed) > 0:
		return nil, errors.New("another program changed the table")
	case b.raw.hush == nil:
		return nil, errors.New("no drift watcher listens")
	}
	w := b.raw.hush.w
	g, err := b.raw.genID()
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(stampWait)
	for {
		w.mu.Lock()
		heard := int32(w.gen-g) >= 0
		foreign := w.notified || w.lost || w.anySet || len(w.sets) > 0
		w.mu.Unlock()
		if foreign {
			return nil, errors.New("another program changed the table, or notifications were lost")
		}
		if heard {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the drift watcher has not heard generation %d within %v", g, stampWait)
		}
		time.Sleep(time.Millisecond)
	}
	id, err := b.kernelID()
	if err != nil {
		return nil, err
	}
	return nftStamp{id: id, gen: g, sets: setsKey(b.layout)}.encode(), nil
}

// stampHolds returns nil when stamp proves that the kernel holds table
// inet jailkeeper with l's sets exactly as at the stop that wrote it.
func (b *nft) stampHolds(l Layout, stamp []byte) error {
	s, err := decodeNFTStamp(stamp)
	if err != nil {
		return err
	}
	id, err := b.kernelID()
	if err != nil {
		return err
	}
	switch {
	case id.boot != s.id.boot:
		return errors.New("the system was rebooted since the stop")
	case id.cookie != s.id.cookie || id.dev != s.id.dev || id.ino != s.id.ino:
		return errors.New("another network namespace")
	case !bytes.Equal(setsKey(l), s.sets):
		return errors.New("the configuration's jails changed")
	}
	g, err := b.raw.genID()
	if err != nil {
		return err
	}
	if g != s.gen {
		return fmt.Errorf("the ruleset changed since the stop (generation %d, %d at the stop)", g, s.gen)
	}
	if _, err := b.c.ListTableOfFamily(nftTable, nftables.TableFamilyINet); err != nil {
		return fmt.Errorf("table inet %s is missing: %w", nftTable, err)
	}
	return nil
}

// SetupFrom implements Stamper.
func (b *nft) SetupFrom(l Layout, bans []Ban, stamp []byte) (string, error) {
	if stamp == nil {
		return "no stamp of a clean stop", b.Setup(l, bans)
	}
	if why := b.stampHolds(l, stamp); why != nil {
		return why.Error(), b.Setup(l, bans)
	}
	b.exact = false
	if err := checkLayout(l); err != nil {
		return "", fmt.Errorf("setting up nftables layout: %w", err)
	}
	// The chain's rules and the whitelist (their configuration may have
	// changed) in one transaction, as Setup builds them; the ban sets
	// already exist and keep their elements.
	if err := b.queueLayout(l); err != nil {
		return "", fmt.Errorf("setting up nftables layout: %w", err)
	}
	if err := b.c.Flush(); err != nil {
		return "", fmt.Errorf("setting up nftables layout: %w", err)
	}
	b.layout = l
	// What add learns while it fills the interval sets: every prefix
	// length they hold.
	b.netLens = map[string]map[int]bool{}
	for _, bn := range bans {
		if isHost(bn.Prefix) {
			continue
		}
		n, err := normalize(bn)
		if err != nil || nftKindOf(n.Prefix) != nftNets {
			continue
		}
		name := nftSetFor(n)
		if b.netLens[name] == nil {
			b.netLens[name] = map[int]bool{}
		}
		b.netLens[name][n.Prefix.Bits()] = true
	}
	b.exact = true
	b.opts.logf("firewall nftables: layout set up for %d jails; the sets hold the %d bans of the last stop (no transaction since), not filled again", len(l.Jails), len(bans))
	return "", nil
}
