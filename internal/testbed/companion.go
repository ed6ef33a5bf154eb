package testbed

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// companion is a service process a test runs beside it, run after run
// (the daemon, `jailkeeper actions`, `jailkeeper sync`): each run gets a
// fresh sd_notify listener, and the output of all runs is kept.
type companion struct {
	// Notify is the sd_notify listener of the current (or last) run; each
	// start makes a fresh one.
	Notify *Notify

	name    string        // the process in messages, "jailkeeper daemon"
	grace   time.Duration // how long Stop waits before SIGKILL
	started time.Time     // just before the current run's exec
	cmd     *exec.Cmd
	out     bytes.Buffer
	omu     sync.Mutex
	done    chan struct{}
	werr    error // the run's exit error, set before done is closed
	runs    int
}

// init names c and registers its cleanup: the process is stopped, a data
// race reported by a -race build fails the test, and the output of all
// runs is logged if the test failed.
func (c *companion) init(t testing.TB, name string, grace time.Duration) {
	c.name, c.grace = name, grace
	t.Cleanup(func() {
		if c.Running() {
			_ = c.stop(syscall.SIGTERM)
		}
		if strings.Contains(c.Output(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in %s", c.name)
		}
		if t.Failed() {
			t.Logf("%s output (%d runs):\n%s", c.name, c.runs, c.Output())
		}
	})
}

// start runs argv with env added to the test's environment and a fresh
// sd_notify listener (onMsg, if set, installed on it), and returns at
// once. It fails the test if the process runs already.
func (c *companion) start(t testing.TB, argv, env []string, onMsg func(NotifyMsg)) {
	t.Helper()
	if c.Running() {
		t.Fatalf("%s already running", c.name)
	}
	c.Notify = NewNotify(t)
	c.runs++
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+c.Notify.Path), env...)
	if onMsg != nil {
		c.Notify.OnMessage(onMsg)
	}
	w := &lockedWriter{mu: &c.omu, w: &c.out}
	fmt.Fprintf(w, "--- run %d ---\n", c.runs)
	cmd.Stdout, cmd.Stderr = w, w
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", c.name, err)
	}
	c.cmd = cmd
	done := make(chan struct{})
	c.done = done
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(w, "--- run exited: %v ---\n", err)
		c.werr = err
		close(done)
	}()
}

// waitReady waits for READY=1 and returns its message. It fails the test
// if the process exits first or the timeout passes.
func (c *companion) waitReady(t testing.TB, timeout time.Duration) NotifyMsg {
	t.Helper()
	type res struct {
		m   NotifyMsg
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, _, err := c.Notify.Wait("READY=1", timeout)
		ch <- res{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v\noutput:\n%s", c.name, r.err, c.Output())
		}
		return r.m
	case <-c.done:
		t.Fatalf("%s exited before READY=1:\n%s", c.name, c.Output())
	}
	return NotifyMsg{}
}

// PID returns the process ID (`ip netns exec` and nsenter exec in place,
// so this is the jailkeeper process itself), or 0 when it is not running.
func (c *companion) PID() int {
	if !c.Running() {
		return 0
	}
	return c.cmd.Process.Pid
}

// Running reports whether the process is alive.
func (c *companion) Running() bool {
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Done is closed when the current run exits.
func (c *companion) Done() <-chan struct{} { return c.done }

// Stop sends SIGTERM and waits for the exit (SIGKILL after the grace
// period: 10 s for the daemon, 20 s for the others). It returns the exit
// error (nil for a clean exit).
func (c *companion) Stop(t testing.TB) error {
	t.Helper()
	if !c.Running() {
		t.Fatalf("%s not running", c.name)
	}
	return c.stop(syscall.SIGTERM)
}

// Kill sends SIGKILL and waits for the exit.
func (c *companion) Kill(t testing.TB) {
	t.Helper()
	if !c.Running() {
		t.Fatalf("%s not running", c.name)
	}
	_ = c.stop(syscall.SIGKILL)
}

func (c *companion) stop(sig syscall.Signal) error {
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(c.grace):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s ignored %v for %v: killed", c.name, sig, c.grace)
	}
	return c.werr
}

// Output returns everything the process wrote to stdout and stderr, over
// all runs.
func (c *companion) Output() string {
	c.omu.Lock()
	defer c.omu.Unlock()
	return c.out.String()
}
