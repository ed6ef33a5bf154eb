package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestBackendSwitch: a drop-in that changes firewall.backend takes effect
// on `jailkeeper reload` (the bans move to the new backend, the old layout
// goes), and on a restart the daemon tears down the other backend's
// layout, so an address unbanned over D-Bus is really let in again — a
// permanent ban included.
func TestBackendSwitch(t *testing.T) {
	testbed.Require(t, "nft")
	bed, d := startDaemon(t, "")
	h := bed.Hosts
	const permanent = "18446744073709551615"
	attempt := func(when string, want testbed.Outcome) {
		t.Helper()
		if a := h.SSHAttempt(testbed.SrvAddr4, ""); a.Outcome != want {
			t.Fatalf("%s: %s, want %s; ssh said %q", when, a.Outcome, want, a.Output)
		}
	}
	layouts := func(when string, wantIPT, wantNFT bool) {
		t.Helper()
		rules, _ := h.InSrv("iptables", "-S").CombinedOutput()
		sets, _ := h.InSrv("ipset", "list", "-n").CombinedOutput()
		ipt := strings.Contains(string(rules), "JAILKEEPER") || strings.Contains(string(sets), "jk-")
		tables, _ := h.InSrv("nft", "list", "tables").CombinedOutput()
		nft := strings.Contains(string(tables), "inet jailkeeper")
		if ipt != wantIPT || nft != wantNFT {
			t.Fatalf("%s: iptables layout %v (want %v), nftables layout %v (want %v)\n%s%s%s", when, ipt, wantIPT, nft, wantNFT, rules, sets, tables)
		}
	}
	busCall := func(method, sig string, args ...string) {
		t.Helper()
		if out, err := bed.Bus.BusCall(method, sig, args...); err != nil {
			t.Fatalf("busctl %s: %v\n%s", method, err, out)
		}
	}
	setBackend := func(name string) {
		t.Helper()
		body := "firewall: {backend: " + name + "}\n"
		if err := os.WriteFile(filepath.Join(d.ConfigDir, "30-backend.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	busCall("Ban", "sst", "sshd", testbed.AtkAddr4, permanent)
	attempt("banned on iptables", testbed.Refused)
	layouts("on iptables", true, false)

	setBackend("nftables")
	if out, err := jk(d, "", "reload"); err != nil {
		t.Fatalf("reload onto nftables: %v\n%s", err, out)
	}
	layouts("reloaded onto nftables", false, true)
	attempt("banned after the switch", testbed.Refused)
	busCall("Unban", "s", testbed.AtkAddr4)
	attempt("unbanned on nftables", testbed.Denied)

	// A restart under a drop-in naming the other backend.
	busCall("Ban", "sst", "sshd", testbed.AtkAddr4, permanent)
	if err := d.Stop(t); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	layouts("stopped", false, true)
	setBackend("iptables")
	d.Start(t)
	d.WaitReady(t, readyTimeout)
	layouts("restarted on iptables", true, false)
	attempt("banned after the restart", testbed.Refused)
	busCall("Unban", "s", testbed.AtkAddr4)
	attempt("unbanned on iptables", testbed.Denied)
}
