package testbed

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// NotifyMsg is one sd_notify datagram as received.
type NotifyMsg struct {
	At    time.Time
	Lines []string // "READY=1", "STATUS=…", …
}

// Notify is an sd_notify listener standing in for systemd: a unix datagram
// socket whose path goes into NOTIFY_SOCKET, collecting every message with
// the time it arrived.
type Notify struct {
	Path string

	conn    *net.UnixConn
	mu      sync.Mutex
	msgs    []NotifyMsg
	changed chan struct{} // closed and replaced on every message
	hook    func(NotifyMsg)
}

// NewNotify listens on a fresh socket in a temporary directory; it is
// closed at cleanup.
func NewNotify(t testing.TB) *Notify {
	t.Helper()
	dir, err := os.MkdirTemp("", "jk-notify-")
	if err != nil {
		t.Fatalf("creating notify dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	n := &Notify{Path: filepath.Join(dir, "notify"), changed: make(chan struct{})}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.Path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listening on %s: %v", n.Path, err)
	}
	t.Cleanup(func() { _ = n.conn.Close() })
	go n.read()
	return n
}

// OnMessage sets a function called (in the reader goroutine, before the
// message is visible to WaitFor) for each message. The e2e test uses it to
// look at the firewall the moment READY=1 arrives.
func (n *Notify) OnMessage(f func(NotifyMsg)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hook = f
}

func (n *Notify) read() {
	buf := make([]byte, 64<<10)
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m := NotifyMsg{At: time.Now(), Lines: strings.Split(strings.TrimRight(string(buf[:k]), "\n"), "\n")}
		n.mu.Lock()
		hook := n.hook
		n.mu.Unlock()
		if hook != nil {
			hook(m)
		}
		n.mu.Lock()
		n.msgs = append(n.msgs, m)
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
}

// Messages returns every message received so far.
func (n *Notify) Messages() []NotifyMsg {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]NotifyMsg(nil), n.msgs...)
}

// matchLine reports whether line is want, or starts with want when want
// ends in "=" ("STATUS=" matches any status).
func matchLine(line, want string) bool {
	if strings.HasSuffix(want, "=") {
		return strings.HasPrefix(line, want)
	}
	return line == want
}

// Find returns the first message holding a line matching want (see
// WaitFor), and the matching line.
func (n *Notify) Find(want string) (NotifyMsg, string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return find(n.msgs, want)
}

func find(msgs []NotifyMsg, want string) (NotifyMsg, string, bool) {
	for _, m := range msgs {
		for _, l := range m.Lines {
			if matchLine(l, want) {
				return m, l, true
			}
		}
	}
	return NotifyMsg{}, "", false
}

// Count returns how many lines matching want have arrived.
func (n *Notify) Count(want string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		for _, l := range m.Lines {
			if matchLine(l, want) {
				c++
			}
		}
	}
	return c
}

// WaitFor waits up to timeout for a message with a line equal to want (or,
// if want ends with "=", starting with it) and returns that message and
// line. It fails the test on timeout, listing what did arrive.
func (n *Notify) WaitFor(t testing.TB, want string, timeout time.Duration) (NotifyMsg, string) {
	t.Helper()
	m, l, err := n.Wait(want, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return m, l
}

// Wait is WaitFor returning an error instead of failing a test.
func (n *Notify) Wait(want string, timeout time.Duration) (NotifyMsg, string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		n.mu.Lock()
		m, l, ok := find(n.msgs, want)
		ch := n.changed
		var got []string
		for _, m := range n.msgs {
			got = append(got, strings.Join(m.Lines, "|"))
		}
		n.mu.Unlock()
		if ok {
			return m, l, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return NotifyMsg{}, "", errors.New("sd_notify: no " + want + " within " + timeout.String() + "; received: [" + strings.Join(got, ", ") + "]")
		}
	}
}
