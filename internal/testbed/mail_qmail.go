package testbed

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RBLSMTPD is ucspi-tcp's tcpserver and rblsmtpd, the RBL front end qmail
// sites run before qmail-smtpd (Debian 12 ships no qmail, but ships
// ucspi-tcp), on 198.51.100.1:25 in the server namespace, inside the
// cgroup of qmail-smtpd.service, its stderr sent to the journal as a
// unit's output is (systemd-cat in the cgroup). tcprules lists which
// clients are blocked, the way qmail sites list them without DNS
// ($RBLSMTPD); the others reach a stand-in for qmail-smtpd that greets
// with "220".
type RBLSMTPD struct {
	Proc *UnitProcess
}

// StartRBLSMTPD starts tcpserver with rblsmtpd, blocking the addresses in
// blocked with a permanent (553) refusal, and returns once port 25
// greets a connection from probeFrom (an attacker address not blocked, so
// that the probe leaves no failure line).
func StartRBLSMTPD(t testing.TB, h *Hosts, jd *Journald, probeFrom string, blocked ...string) *RBLSMTPD {
	t.Helper()
	Require(t, "tcpserver", "tcprules", "rblsmtpd", "systemd-cat")
	dir := t.TempDir()
	var rules strings.Builder
	for _, a := range blocked {
		rules.WriteString(a + `:allow,RBLSMTPD="-Your address is listed at example.org"` + "\n")
	}
	rules.WriteString(`:allow,RBLSMTPD=""` + "\n") // set and empty: not blocked, no DNS lookup
	cdb := filepath.Join(dir, "rules.cdb")
	cmd := exec.Command("tcprules", cdb, filepath.Join(dir, "rules.tmp"))
	cmd.Stdin = strings.NewReader(rules.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tcprules: %v: %s", err, out)
	}
	smtpd := filepath.Join(dir, "smtpd")
	if err := os.WriteFile(smtpd, []byte("#!/bin/sh\nprintf '220 mail.example.com ESMTP\\r\\n'\n"), 0o755); err != nil {
		t.Fatalf("writing the qmail-smtpd stand-in: %v", err)
	}
	inner := "exec tcpserver -x " + cdb + " -R -H -l mail.example.com " + SrvAddr4 + " 25 rblsmtpd " + smtpd + " 2>&1 | systemd-cat -t rblsmtpd"
	r := &RBLSMTPD{Proc: StartInUnit(t, "qmail-smtpd.service", shellJoin(h.SrvArgv(jd, "sh", "-c", inner)))}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, err := h.AtkBannerFrom(net.JoinHostPort(SrvAddr4, "25"), probeFrom, time.Second)
		if err == nil && strings.HasPrefix(g, "220 mail.example.com") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpserver on port 25 did not greet %s: %q %v; its output:\n%s", probeFrom, g, err, r.Proc.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// AtkBannerFrom is AtkBanner from source address src of the attacker's
// veth.
func (h *Hosts) AtkBannerFrom(hostport, src string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNetns(h.Atk, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		var err error
		c, err = d.Dial("tcp", hostport)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if n > 0 {
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("reading banner from %s: %w", hostport, err)
}
