package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// TestSSHDContextVerbose runs Debian's sshd at LogLevel VERBOSE, where
// each connection's process first writes "Connection from H port P on L
// port Q". A client that connects and closes (or resets) without sending
// its identification makes that process write a failure that names no
// address ("error: kex_exchange_identification: Connection closed by
// remote host", "… read: Connection reset by peer"), then "Connection
// closed|reset by H port P" without [preauth], which alone never counts.
// The jail (mode ddos) takes the address from the process's own earlier
// line — the live reader gives each entry the _PID journald has from the
// kernel — so three such probes ban their source, not before the third,
// and another source that only logs in badly once is not banned.
func TestSSHDContextVerbose(t *testing.T) {
	testbed.Require(t, append(testbed.BedCommands, "ssh")...)
	t.Parallel()
	h := testbed.NewHosts(t)
	jd := testbed.StartJournald(t)
	bus := testbed.NewBus(t)
	testbed.StartDebianSSHD(t, h, jd, "LogLevel VERBOSE")
	// The probes come from an address of their own: the bed's readiness
	// checks (connect, read the banner, close) come from AtkAddr4.
	const prober = "198.51.100.5"
	h.AddAttackerAddr(t, prober+"/24")
	d := testbed.NewDaemon(t, h, bus, map[string]string{"10-sshd.yaml": "firewall: {backend: iptables}\njails:\n  sshd: {mode: ddos, maxretry: 3, bantime: 1h}\n"})
	d.Journald = jd
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := jd.Command("journalctl", "--no-pager", "-o", "json", "--output-fields=MESSAGE,_SYSTEMD_UNIT,_PID", "SYSLOG_IDENTIFIER=sshd").CombinedOutput()
			t.Logf("sshd's lines in the journal:\n%s", out)
		}
	})
	d.Start(t)
	d.WaitReady(t, readyTimeout)

	hp := net.JoinHostPort(testbed.SrvAddr4, "22")
	probe := func(i int, reset bool) {
		c, err := h.AtkDialFrom(prober, hp, 3*time.Second)
		if err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 256)); err != nil { // sshd's banner
			t.Fatalf("probe %d: reading the banner: %v", i, err)
		}
		if tc, ok := c.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0) // RST
		}
		_ = c.Close()
	}
	for i, reset := range []bool{false, true, false} {
		time.Sleep(300 * time.Millisecond) // the last probe's lines reach the daemon
		if set, ok := h.SrvBanned(t, prober); ok {
			t.Fatalf("%s in set %s before probe %d", prober, set, i+1)
		}
		probe(i+1, reset)
	}
	deadline := time.Now().Add(banTimeout)
	for {
		if _, ok := h.SrvBanned(t, prober); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not banned %v after its 3rd probe", prober, banTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := h.AtkDialFrom(prober, hp, 2*time.Second); err == nil {
		t.Errorf("%s can still connect after its ban", prober)
	}
	if set, ok := h.SrvBanned(t, testbed.AtkAddr4); ok {
		t.Errorf("%s, which only checked that sshd listens, is in set %s", testbed.AtkAddr4, set)
	}

	// The journal holds what the test relies on: sshd named the client
	// in a line of its own and the failures name none.
	if err := jd.Sync(); err != nil {
		t.Fatal(err)
	}
	out, err := jd.Command("journalctl", "--no-pager", "-o", "cat", "SYSLOG_IDENTIFIER=sshd").Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	for _, want := range []string{"Connection from " + prober + " port ", "kex_exchange_identification: Connection closed by remote host"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sshd wrote no %q line:\n%s", want, out)
		}
	}
}
