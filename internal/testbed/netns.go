package testbed

import (
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strings"
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

// SrvListen listens on TCP address addr inside the server namespace and
// accepts (and closes at once) every connection until the listener is
// closed: a stand-in for a service on another host, for tests that only
// need to tell an accepted connection from a refused one.
func (h *Hosts) SrvListen(addr string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(h.Srv, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return l, nil
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

// SrvArgv returns the command line that runs argv inside the server
// namespace and, when jd is not nil, inside the private journald's mount
// namespace (so that /run/systemd/journal is jd's). Without jd it is
// `ip netns exec SRV argv…`; with jd it is `nsenter -t HOLDER -m
// --net=/run/netns/SRV -- argv…` (nsenter opens the netns file before it
// enters the mount namespace, whose /run hides /run/netns). Both exec in
// place: the PID of the started command is the PID of argv[0].
func (h *Hosts) SrvArgv(jd *Journald, argv ...string) []string {
	if jd == nil {
		return append([]string{"ip", "netns", "exec", h.Srv}, argv...)
	}
	return append([]string{"nsenter", "-t", jd.holderPID(), "-m", "--net=" + filepath.Join("/run/netns", h.Srv), "--"}, argv...)
}

// holderPID is the PID of the process holding jd's mount namespace.
func (j *Journald) holderPID() string {
	return strings.TrimSuffix(strings.TrimPrefix(j.Root(), "/proc/"), "/root")
}

// shellJoin quotes argv for sh.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// AtkDialFrom is AtkDial with the connection's source address src (one
// of the attacker namespace's, see AddAttackerAddr).
func (h *Hosts) AtkDialFrom(src, hostport string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(h.Atk, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		var err error
		c, err = d.Dial("tcp", hostport)
		return err
	})
	return c, err
}
