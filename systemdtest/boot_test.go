package systemdtest

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// recreateSrvNetns replaces the server's network namespace, whose
// container has powered off, by a fresh one wired to the attacker as
// before: a host's network comes back empty after a reboot, without the
// kernel sets and rules a kept namespace would still hold (and which would
// hide any window at boot). The attacker's new end gets its addresses
// from testbed.NewHosts and atkAddrs.
func recreateSrvNetns(t *testing.T, h *testbed.Hosts, atkAddrs ...string) {
	t.Helper()
	testbed.Run(t, "ip", "netns", "del", h.Srv)
	// The old veth pair goes when the kernel frees the namespace.
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("ip", "-n", h.Atk, "link", "show", h.AtkLink).Run() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s still in %s 10 s after deleting %s", h.AtkLink, h.Atk, h.Srv)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := testbed.Suffix()
	h.SrvLink, h.AtkLink = "jk0"+s, "jk1"+s
	testbed.Run(t, "ip", "netns", "add", h.Srv)
	testbed.Run(t, "ip", "link", "add", h.SrvLink, "type", "veth", "peer", "name", h.AtkLink)
	testbed.Run(t, "ip", "link", "set", h.SrvLink, "netns", h.Srv)
	testbed.Run(t, "ip", "link", "set", h.AtkLink, "netns", h.Atk)
	testbed.Run(t, "ip", "-n", h.Srv, "addr", "add", "198.51.100.1/24", "dev", h.SrvLink)
	testbed.Run(t, "ip", "-n", h.Srv, "addr", "add", "2001:db8::1/64", "dev", h.SrvLink, "nodad")
	for _, a := range append([]string{"198.51.100.2/24", "2001:db8::2/64"}, atkAddrs...) {
		h.AddAttackerAddr(t, a)
	}
	testbed.Run(t, "ip", "-n", h.Srv, "link", "set", "lo", "up")
	testbed.Run(t, "ip", "-n", h.Srv, "link", "set", h.SrvLink, "up")
	testbed.Run(t, "ip", "-n", h.Atk, "link", "set", h.AtkLink, "up")
}

// probe is what a prober saw: connection attempts from one source address.
type probe struct {
	src     string
	tries   int
	refused int         // connection refused: nothing listening, or a tcp-reset ban
	reached []time.Time // connections accepted by the server
	other   []error     // anything else (timeouts, unreachable), first few
}

func (p *probe) String() string {
	return fmt.Sprintf("%s: %d attempts, %d refused, %d reached the server, %d other errors %v",
		p.src, p.tries, p.refused, len(p.reached), len(p.other), p.other)
}

// startProbe connects from src in the attacker's namespace to dst every
// interval until stop is closed, and then sends what it saw on the
// returned channel.
func startProbe(h *testbed.Hosts, src, dst string, interval time.Duration, stop <-chan struct{}) <-chan *probe {
	res := make(chan *probe, 1)
	go func() {
		p := &probe{src: src}
		err := inNetns(h.Atk, func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 200 * time.Millisecond}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return nil
				case <-tick.C:
				}
				p.tries++
				conn, err := d.Dial("tcp", dst)
				switch {
				case err == nil:
					p.reached = append(p.reached, time.Now())
					conn.Close()
				case errors.Is(err, syscall.ECONNREFUSED):
					p.refused++
				case len(p.other) < 5:
					p.other = append(p.other, err)
				}
			}
		})
		if err != nil {
			p.other = append(p.other, err)
		}
		res <- p
	}()
	return res
}

// monotonic returns a unit's timestamp property (e.g.
// ActiveEnterTimestampMonotonic) in microseconds since boot.
func monotonic(t *testing.T, c *container, unit, prop string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(c.Show(t, unit, prop), 10, 64)
	if err != nil {
		t.Fatalf("%s %s: %v", unit, prop, err)
	}
	return v
}

// waitActive polls until every unit is active, for at most d.
func waitActive(t *testing.T, c *container, d time.Duration, units ...string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, u := range units {
		for {
			out, _ := c.Run("systemctl", "is-active", u)
			if strings.TrimSpace(out) == "active" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not active %v after boot: %q", u, d, strings.TrimSpace(out))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// bannerFrom connects from src in the attacker's namespace to the
// container's sshd and returns the first line it sends.
func bannerFrom(h *testbed.Hosts, src string) (string, error) {
	var banner string
	err := inNetns(h.Atk, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		conn, err := d.Dial("tcp", "198.51.100.1:22")
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		banner = string(buf[:n])
		if n == 0 {
			return fmt.Errorf("reading sshd's banner: %w", err)
		}
		return nil
	})
	return banner, err
}
