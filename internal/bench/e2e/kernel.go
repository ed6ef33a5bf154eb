package main

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// kernelSets asks the kernel of the server namespace, over one netlink
// socket opened in it, whether jailkeeper's ipset sets of one jail hold an
// address (about 15 µs a question, cheap enough to poll every 100 µs).
type kernelSets struct {
	h    *netlink.Handle
	jail string
}

func openKernelSets(nsName, jail string) (*kernelSets, error) {
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", nsName, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", nsName, err)
	}
	return &kernelSets{h: h, jail: jail}, nil
}

func (k *kernelSets) close() { k.h.Close() }

// banned reports whether a ban set (host or prefix set of a's family)
// holds a. A set that does not exist yet holds nothing.
func (k *kernelSets) banned(a netip.Addr) bool {
	fam := "4"
	if a.Is6() {
		fam = "6"
	}
	e := &netlink.IPSetEntry{IP: net.IP(a.AsSlice())}
	for _, s := range []string{"jk-" + k.jail + "-" + fam, "jk-" + k.jail + "-n" + fam} {
		if ok, err := k.h.IpsetTest(s, e); err == nil && ok {
			return true
		}
	}
	return false
}

// waitBanned polls until a is banned and returns when it saw it, or an
// error after timeout. Between polls it sleeps every.
func (k *kernelSets) waitBanned(a netip.Addr, every, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if k.banned(a) {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s not in the kernel's ban sets after %s", a, timeout)
		}
		time.Sleep(every)
	}
}
