package testbed

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Browser is a headless Chromium driven through the DevTools protocol over
// a pipe (--remote-debugging-pipe: JSON messages ended by a NUL byte on
// file descriptors 3 and 4), so no WebSocket client is needed. It has one
// page; it is stopped by PID at cleanup.
type Browser struct {
	cmd     *exec.Cmd
	in      *os.File // what Chromium reads
	session string

	mu      sync.Mutex
	next    int
	pending map[int]chan cdpReply
	dead    chan struct{}
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// BrowserCommands are the commands a Browser needs, for Require.
var BrowserCommands = []string{"chromium"}

// StartBrowser starts headless Chromium; argv0 runs before chromium (e.g.
// Hosts.SrvArgv(nil) to run it in the server namespace).
func StartBrowser(t testing.TB, prefix ...string) *Browser {
	t.Helper()
	Require(t, BrowserCommands...)
	toChrome, ourEnd, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromChrome, chromeEnd, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	argv := append(prefix, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--remote-debugging-pipe", "--user-data-dir="+t.TempDir(), "--window-size=1280,1000", "about:blank")
	cmd := exec.Command(argv[0], argv[1:]...)
	// Without a session bus address, Chromium's libdbus autolaunches a
	// session dbus-daemon that outlives the browser: give it an address
	// that connects nowhere.
	cmd.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS=disabled:")
	cmd.ExtraFiles = []*os.File{toChrome, chromeEnd} // fds 3 and 4
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	toChrome.Close()
	chromeEnd.Close()
	b := &Browser{cmd: cmd, in: ourEnd, pending: map[int]chan cdpReply{}, dead: make(chan struct{})}
	t.Cleanup(func() {
		ourEnd.Close()
		stopPID(cmd.Process.Pid, 3*time.Second)
		cmd.Wait()
	})
	go b.read(fromChrome)

	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	b.session = att.SessionID
	return b
}

func (b *Browser) read(r *os.File) {
	defer close(b.dead)
	br := bufio.NewReader(r)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m struct {
			ID int `json:"id"`
			cdpReply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue // an event
		}
		b.mu.Lock()
		ch := b.pending[m.ID]
		delete(b.pending, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
}

// call sends one DevTools command and stores its result in out.
func (b *Browser) call(session, method string, params any, out any) error {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpReply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	if _, err := b.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-b.dead:
		return fmt.Errorf("%s: chromium exited", method)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s: no answer in 30 s", method)
	}
}

// Navigate opens url in the page.
func (b *Browser) Navigate(url string) error {
	return b.call(b.session, "Page.navigate", map[string]any{"url": url}, nil)
}

// Eval evaluates a JavaScript expression in the page (awaiting a promise)
// and stores its JSON value in out (nil: drop it).
func (b *Browser) Eval(expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("evaluating %q: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		return json.Unmarshal(r.Result.Value, out)
	}
	return nil
}

// WaitFor evaluates expr (a boolean expression) until it is true or
// timeout passes, and returns how long it took.
func (b *Browser) WaitFor(expr string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var last error
	for time.Since(start) < timeout {
		var ok bool
		if last = b.Eval("!!("+expr+")", &ok); last == nil && ok {
			return time.Since(start), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last != nil {
		return 0, fmt.Errorf("waiting for %s: %w", expr, last)
	}
	return 0, fmt.Errorf("waiting for %s: still false after %v", expr, timeout)
}

// Screenshot saves a PNG of the page (the full page's height) to path.
func (b *Browser) Screenshot(path string) error {
	var r struct {
		Data string `json:"data"`
	}
	if err := b.call(b.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return fmt.Errorf("decoding screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}
