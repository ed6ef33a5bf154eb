package testbed

import (
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netns"
)

// inNetns runs f on an OS thread switched into the named network
// namespace. Sockets f creates belong to that namespace.
func inNetns(name string, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("getting current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening netns %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", name, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it exits with this goroutine instead of
		// serving others from the wrong namespace.
		return fmt.Errorf("leaving netns %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// AtkDial opens a TCP connection from the attacker namespace to hostport.
func (h *Hosts) AtkDial(hostport string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(h.Atk, func() error {
		var err error
		c, err = net.DialTimeout("tcp", hostport, timeout)
		return err
	})
	return c, err
}

// AtkBanner connects from the attacker namespace to hostport and returns
// the first line the server sends (an SSH server's version banner).
func (h *Hosts) AtkBanner(hostport string, timeout time.Duration) (string, error) {
	c, err := h.AtkDial(hostport, timeout)
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
