package keeper

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/firewall"
)

// listenIn opens a TCP listener inside the network namespace ns that
// accepts and closes every connection, until the test ends.
func listenIn(t *testing.T, ns, addr string) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := netns.Set(orig); err != nil {
		t.Fatalf("returning to the test's namespace: %v", err)
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// refused says whether the attacker's connection to the server's port
// 2222 is refused (by the firewall's reset), and fails on anything but
// refused or connected.
func refused(t *testing.T, h *testbed.Hosts) bool {
	t.Helper()
	c, err := h.AtkDial("198.51.100.1:2222", 2*time.Second)
	if err == nil {
		c.Close()
		return false
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial from the attacker: %v", err)
	}
	return true
}

// kernelLayouts reports which backends' layouts exist in the server
// namespace: the JAILKEEPER chain or jk-* ipsets for iptables, the table
// inet jailkeeper for nftables.
func kernelLayouts(t *testing.T, h *testbed.Hosts) (ipt, nft bool) {
	t.Helper()
	out, _ := h.InSrv("iptables", "-S").CombinedOutput()
	sets, _ := h.InSrv("ipset", "list", "-n").CombinedOutput()
	ipt = strings.Contains(string(out), "JAILKEEPER") || strings.Contains(string(sets), "jk-")
	tables, err := h.InSrv("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, tables)
	}
	nft = strings.Contains(string(tables), "inet jailkeeper")
	return ipt, nft
}

// TestBackendSwitchInKernel: a reload from iptables to nftables moves the
// bans into the nftables layout and tears the iptables layout down, so
// that an unban really lets the address in again (before, the old chains
// and sets stayed and kept refusing it, a permanent ban for ever); a start
// on iptables tears down an nftables layout left behind.
func TestBackendSwitchInKernel(t *testing.T) {
	testbed.Require(t, "ip", "iptables", "ipset", "nft")
	h := testbed.NewHosts(t)
	listenIn(t, h.Srv, "198.51.100.1:2222")
	attacker := []netip.Prefix{pfx("198.51.100.2")}
	rtOn := func(backend string) *config.Runtime {
		rt := testRuntime(t, backend, "sshd")
		rt.Layout.Jails[0].Ports = []uint16{2222}
		return rt
	}
	start := func(table *bans.Table, backend string) *Keeper {
		t.Helper()
		k, err := Start(rtOn(backend), table, Options{Log: &Logger{out: &bytes.Buffer{}}, NetNS: h.Srv})
		if err != nil {
			t.Fatalf("start on %s: %v", backend, err)
		}
		return k
	}
	table := bans.NewMemory()

	k := start(table, "iptables")
	t.Cleanup(func() {
		for _, name := range kernelBackends {
			if b, err := firewall.New(name, firewall.Options{NetNS: h.Srv}); err == nil {
				b.Teardown()
				b.Close()
			}
		}
	})
	if refused(t, h) {
		t.Fatal("refused before any ban")
	}
	if _, err := k.Ban("sshd", attacker, -1); err != nil {
		t.Fatal(err)
	}
	if !refused(t, h) {
		t.Fatal("iptables: the permanent ban does not refuse the attacker")
	}

	next, err := k.Prepare(rtOn("nftables"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Swap(next); err != nil {
		t.Fatalf("switching to nftables: %v", err)
	}
	if got := k.Backend(); got != "nftables" {
		t.Fatalf("backend after the reload: %s", got)
	}
	if ipt, nft := kernelLayouts(t, h); ipt || !nft {
		t.Fatalf("after the switch: iptables layout %v (want gone), nftables layout %v", ipt, nft)
	}
	if !refused(t, h) {
		t.Fatal("nftables: the ban did not move with the switch")
	}
	if n, err := k.Unban("", attacker[0]); err != nil || n != 1 {
		t.Fatalf("Unban = %d, %v", n, err)
	}
	if refused(t, h) {
		t.Fatal("unbanned over the keeper, the attacker is still refused")
	}

	// A restart under a configuration that names the other backend.
	if _, err := k.Ban("sshd", attacker, -1); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	k = start(table, "iptables")
	defer k.Close()
	if ipt, nft := kernelLayouts(t, h); !ipt || nft {
		t.Fatalf("after a start on iptables: iptables layout %v, nftables layout %v (want gone)", ipt, nft)
	}
	if !refused(t, h) {
		t.Fatal("iptables after restart: the ban was not restored")
	}
	if _, err := k.Unban("", attacker[0]); err != nil {
		t.Fatal(err)
	}
	if refused(t, h) {
		t.Fatal("after restart and unban, the attacker is still refused")
	}
}

// TestStampedRestart: on nftables, a restart after a clean stop keeps the
// kernel's sets as they are (the stamp holds) and every ban stays; after a
// crash (no Close: the stamp the crashed start took is gone) or another
// program's commit between stop and start, the sets are filled again, and
// every ban is in place either way.
func TestStampedRestart(t *testing.T) {
	testbed.Require(t, "ip", "nft")
	h := testbed.NewHosts(t)
	listenIn(t, h.Srv, "198.51.100.1:2222")
	path := filepath.Join(t.TempDir(), bans.FileName)
	rt := testRuntime(t, "nftables", "sshd")
	rt.Layout.Jails[0].Ports = []uint16{2222}
	var log bytes.Buffer
	start := func() (*Keeper, *bans.Table) {
		t.Helper()
		table, err := bans.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		log.Reset()
		k, err := Start(rt, table, Options{Log: &Logger{out: &log}, NetNS: h.Srv})
		if err != nil {
			t.Fatal(err)
		}
		return k, table
	}
	stop := func(k *Keeper, table *bans.Table) {
		t.Helper()
		if err := k.Close(); err != nil {
			t.Fatal(err)
		}
		if err := table.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if b, err := firewall.New("nftables", firewall.Options{NetNS: h.Srv}); err == nil {
			b.Teardown()
			b.Close()
		}
	})
	const kept, filled = "not filled again", "sets filled again"
	k, table := start()
	ps := importList(3000)
	if _, err := k.Ban("sshd", ps, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Ban("sshd", []netip.Prefix{pfx("198.51.100.2")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if !refused(t, h) {
		t.Fatal("the ban does not refuse the attacker")
	}
	stop(k, table)

	k, table = start()
	if !strings.Contains(log.String(), kept) || k.Restored() != len(ps)+1 {
		t.Fatalf("after a clean stop: %d bans restored, log:\n%s", k.Restored(), log.String())
	}
	if !refused(t, h) {
		t.Fatal("after a restart that kept the sets, the attacker gets through")
	}
	// A crash: the keeper's handles go, Close never runs.
	if _, err := k.Unban("", pfx("198.51.100.2")); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Ban("sshd", []netip.Prefix{pfx("198.51.100.2")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	k.drift.Close()
	k.fw.Close()
	table.Close()

	k, table = start()
	if !strings.Contains(log.String(), filled) || !refused(t, h) {
		t.Fatalf("after a crash: refused %v, log:\n%s", refused(t, h), log.String())
	}
	stop(k, table)
	// Another program's commit in between, anywhere in the ruleset.
	if out, err := h.InSrv("nft", "add", "table", "ip", "other").CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	// The attacker's element removed behind the daemon's back.
	if out, err := h.InSrv("nft", "delete", "element", "inet", "jailkeeper", "sshd-4", "{ 198.51.100.2 }").CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	k, table = start()
	defer stop(k, table)
	if !strings.Contains(log.String(), filled) || k.Restored() != len(ps)+1 || !refused(t, h) {
		t.Fatalf("after another program's commits: %d restored, refused %v, log:\n%s", k.Restored(), refused(t, h), log.String())
	}
}
