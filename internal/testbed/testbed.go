// Package testbed builds the real test bed of shared/TESTBED.md for
// jailkeeper's root-only tests: network namespaces joined by veth, a
// standalone journald, a private system bus, a real sshd logging as
// sshd.service. Every name is unique to the run and everything started is
// stopped by PID in t.Cleanup. Nothing here touches the host's own firewall.
package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Require fails (when CI is set) or skips the test unless it runs as root
// and every named command is on PATH. Root-only tests call it first, so a
// missing prerequisite is never silently skipped in CI.
func Require(t testing.TB, commands ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "missing prerequisites: " + strings.Join(missing, ", ")
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set: failing instead of skipping)")
	}
	t.Skip(msg)
}

// Suffix returns a short random suffix for names unique to this run.
func Suffix() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Run runs a command and returns its combined output, failing the test on
// error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Hosts is a server and an attacker namespace joined by a veth pair.
// Server: 198.51.100.1/24, 2001:db8::1/64. Attacker: 198.51.100.2/24,
// 2001:db8::2/64.
type Hosts struct {
	Srv, Atk string // namespace names
	SrvLink  string // veth name inside Srv
	AtkLink  string // veth name inside Atk
}

// NewHosts creates the two namespaces and removes them in t.Cleanup.
func NewHosts(t testing.TB) *Hosts {
	t.Helper()
	Require(t, "ip")
	s := Suffix()
	h := &Hosts{Srv: "jk-srv-" + s, Atk: "jk-atk-" + s, SrvLink: "jk0" + s, AtkLink: "jk1" + s}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", h.Srv).Run()
		_ = exec.Command("ip", "netns", "del", h.Atk).Run()
	})
	Run(t, "ip", "netns", "add", h.Srv)
	Run(t, "ip", "netns", "add", h.Atk)
	Run(t, "ip", "link", "add", h.SrvLink, "type", "veth", "peer", "name", h.AtkLink)
	Run(t, "ip", "link", "set", h.SrvLink, "netns", h.Srv)
	Run(t, "ip", "link", "set", h.AtkLink, "netns", h.Atk)
	Run(t, "ip", "-n", h.Srv, "addr", "add", "198.51.100.1/24", "dev", h.SrvLink)
	Run(t, "ip", "-n", h.Atk, "addr", "add", "198.51.100.2/24", "dev", h.AtkLink)
	Run(t, "ip", "-n", h.Srv, "addr", "add", "2001:db8::1/64", "dev", h.SrvLink, "nodad")
	Run(t, "ip", "-n", h.Atk, "addr", "add", "2001:db8::2/64", "dev", h.AtkLink, "nodad")
	for _, n := range []string{h.Srv, h.Atk} {
		Run(t, "ip", "-n", n, "link", "set", "lo", "up")
	}
	Run(t, "ip", "-n", h.Srv, "link", "set", h.SrvLink, "up")
	Run(t, "ip", "-n", h.Atk, "link", "set", h.AtkLink, "up")
	return h
}

// AddAttackerAddr adds another address (e.g. "198.51.100.3/24" or
// "2001:db8::5/64") to the attacker's veth.
func (h *Hosts) AddAttackerAddr(t testing.TB, cidr string) {
	t.Helper()
	args := []string{"-n", h.Atk, "addr", "add", cidr, "dev", h.AtkLink}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	Run(t, "ip", args...)
}

// InSrv returns a command that runs inside the server namespace.
func (h *Hosts) InSrv(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.Srv, name}, args...)...)
}

// InAtk returns a command that runs inside the attacker namespace.
func (h *Hosts) InAtk(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.Atk, name}, args...)...)
}

// String names the pair for log lines.
func (h *Hosts) String() string { return fmt.Sprintf("srv=%s atk=%s", h.Srv, h.Atk) }
