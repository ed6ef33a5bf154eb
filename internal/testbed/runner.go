package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Runner lets a main program (the `make demo` program, a benchmark command)
// use the testbed helpers, which take a testing.TB. Fatal and FailNow end
// the function given to Run, and Run then calls every cleanup in reverse
// order, as the testing package does. SIGINT and SIGTERM also end the run
// with its cleanups, so an interrupted demo leaves no namespace behind.
//
// Unlike testing.T, Helper is not a no-op: between an interrupt and the
// cleanups it unwinds the calling goroutine, which is how the run stops
// at its next testbed call.
type Runner struct {
	// testing.TB is embedded only to satisfy the interface's unexported
	// method; it is nil, and every exported method is implemented below.
	testing.TB

	name string
	log  io.Writer

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	skipped  bool
	// interrupted is set on SIGINT/SIGTERM: the run's goroutine unwinds at
	// its next Helper call.
	interrupted bool
	msgs        []string
	ctx         context.Context
	cancel      context.CancelFunc
}

// runnerExit is the panic value FailNow and SkipNow use to unwind the run.
type runnerExit struct{}

// NewRunner returns a Runner named name that writes Log output to log.
func NewRunner(name string, log io.Writer) *Runner {
	ctx, cancel := context.WithCancel(context.Background())
	return &Runner{name: name, log: log, ctx: ctx, cancel: cancel}
}

// Run calls f with r as its testing.TB, then every registered cleanup in
// reverse order. It returns an error carrying the failure messages if f
// failed (Error, Fatal…), or nil.
func (r *Runner) Run(f func(tb testing.TB)) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil {
				if _, ok := v.(runnerExit); !ok {
					r.Errorf("panic: %v", v)
				}
			}
		}()
		f(r)
	}()
	select {
	case <-done:
	case s := <-sigs:
		// Stop f at its next testbed call (Helper unwinds once
		// interrupted) and give it a moment, so that it does not create
		// things while the cleanups remove them. A second signal, or a
		// helper blocked for long, cuts the wait short.
		r.Errorf("interrupted by %v: cleaning up", s)
		r.mu.Lock()
		r.interrupted = true
		r.mu.Unlock()
		r.cancel()
		select {
		case <-done:
		case <-sigs:
		case <-time.After(15 * time.Second):
		}
	}
	signal.Stop(sigs)
	r.runCleanups()
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed {
		return errors.New(fmt.Sprint(r.msgs))
	}
	return nil
}

func (r *Runner) runCleanups() {
	r.mu.Lock()
	r.interrupted = false // cleanups may call helpers
	r.mu.Unlock()
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n == 0 {
			r.mu.Unlock()
			return
		}
		c := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()
		func() {
			defer func() {
				if v := recover(); v != nil {
					if _, ok := v.(runnerExit); !ok {
						r.Errorf("panic in cleanup: %v", v)
					}
				}
			}()
			c()
		}()
	}
}

// Cleanup registers f to run after the run, last registered first.
func (r *Runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// Log writes its arguments as one line.
func (r *Runner) Log(args ...any) { r.output(fmt.Sprintln(args...)) }

// Logf writes a formatted line.
func (r *Runner) Logf(format string, args ...any) { r.output(fmt.Sprintf(format, args...) + "\n") }

func (r *Runner) output(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log != nil {
		_, _ = io.WriteString(r.log, s)
	}
}

// Error logs and marks the run failed.
func (r *Runner) Error(args ...any) { r.fail(fmt.Sprint(args...)) }

// Errorf logs a formatted message and marks the run failed.
func (r *Runner) Errorf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }

func (r *Runner) fail(msg string) {
	r.output("FAIL: " + msg + "\n")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.msgs = append(r.msgs, msg)
}

// Fail marks the run failed.
func (r *Runner) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}

// FailNow marks the run failed and stops the calling goroutine's work by
// unwinding to Run (called from another goroutine it ends that goroutine).
func (r *Runner) FailNow() {
	r.Fail()
	r.exit()
}

func (r *Runner) exit() {
	panic(runnerExit{})
}

// Failed reports whether the run has failed.
func (r *Runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// Fatal is Error followed by FailNow.
func (r *Runner) Fatal(args ...any) { r.Error(args...); r.exit() }

// Fatalf is Errorf followed by FailNow.
func (r *Runner) Fatalf(format string, args ...any) { r.Errorf(format, args...); r.exit() }

// Helper ends the run's goroutine (as FailNow) once the run has been
// interrupted; every testbed helper calls it first.
func (r *Runner) Helper() {
	r.mu.Lock()
	stop := r.interrupted
	r.mu.Unlock()
	if stop {
		r.exit()
	}
}

// Name returns the run's name.
func (r *Runner) Name() string { return r.name }

// Skip logs and ends the run as skipped (not failed).
func (r *Runner) Skip(args ...any) { r.Log(args...); r.SkipNow() }

// Skipf logs a formatted message and ends the run as skipped.
func (r *Runner) Skipf(format string, args ...any) { r.Logf(format, args...); r.SkipNow() }

// SkipNow ends the run as skipped. A main program treats a skip as a
// failure to run, so it is also recorded as failed.
func (r *Runner) SkipNow() {
	r.mu.Lock()
	r.skipped = true
	r.failed = true
	r.msgs = append(r.msgs, "skipped")
	r.mu.Unlock()
	r.exit()
}

// Skipped reports whether the run was skipped.
func (r *Runner) Skipped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.skipped
}

// TempDir returns a new temporary directory removed at cleanup.
func (r *Runner) TempDir() string {
	d, err := os.MkdirTemp("", "jailkeeper-"+r.name+"-")
	if err != nil {
		r.Fatalf("creating temp dir: %v", err)
	}
	r.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// ArtifactDir returns a temporary directory, as TempDir.
func (r *Runner) ArtifactDir() string { return r.TempDir() }

// Attr logs a key and value.
func (r *Runner) Attr(key, value string) { r.Logf("%s=%s", key, value) }

// Setenv sets an environment variable and restores it at cleanup.
func (r *Runner) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		r.Fatalf("setenv %s: %v", key, err)
	}
	r.Cleanup(func() {
		if had {
			_ = os.Setenv(key, old)
		} else {
			_ = os.Unsetenv(key)
		}
	})
}

// Chdir changes the working directory and restores it at cleanup.
func (r *Runner) Chdir(dir string) {
	old, err := os.Getwd()
	if err != nil {
		r.Fatalf("getwd: %v", err)
	}
	if err := os.Chdir(dir); err != nil {
		r.Fatalf("chdir %s: %v", dir, err)
	}
	r.Cleanup(func() { _ = os.Chdir(old) })
}

// Context returns a context canceled when the run is interrupted or ends.
func (r *Runner) Context() context.Context { return r.ctx }

// Output returns the writer Log writes to.
func (r *Runner) Output() io.Writer {
	if r.log == nil {
		return io.Discard
	}
	return r.log
}

var _ testing.TB = (*Runner)(nil)
