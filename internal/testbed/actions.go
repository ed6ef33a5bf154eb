package testbed

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Actions is `jailkeeper actions` for a Daemon: the same binary, config
// directory, bus, namespace and private journal, its own state directory
// (which outlives restarts), and an sd_notify listener per run.
type Actions struct {
	Bin       string
	ConfigDir string
	StateDir  string

	// companion runs the process: Notify, PID, Running, Done, Stop (20 s
	// before SIGKILL), Kill and Output.
	companion

	d *Daemon
}

// actionsBuild is the process-wide build of `jailkeeper actions`.
var actionsBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// BuildActions returns a directory holding jailkeeper-actions, built from
// this tree once per process (with -race when GORACE is set, as make test's
// race pass sets it; JAILKEEPER_ACTIONS_BIN names a ready binary instead),
// next to a hard link (or copy) of the daemon's binary d.Bin: running that
// `jailkeeper actions` execs the sibling exactly as installed.
// RemoveActionsBuild deletes it.
func BuildActions(t testing.TB, daemonBin string) string {
	t.Helper()
	actionsBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "jk-actions-build-")
		if err != nil {
			actionsBuild.err = err
			return
		}
		actionsBuild.dir = dir
		bin := filepath.Join(dir, "jailkeeper-actions")
		if b := os.Getenv("JAILKEEPER_ACTIONS_BIN"); b != "" {
			if err := linkOrCopy(b, bin); err != nil {
				actionsBuild.err = err
				return
			}
		} else {
			root, err := RepoRoot()
			if err != nil {
				actionsBuild.err = err
				return
			}
			args := []string{"build", "-o", bin}
			if os.Getenv("GORACE") != "" {
				args = append(args, "-race")
			}
			cmd := exec.Command(goTool(), append(args, "./cmd/jailkeeper-actions")...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				actionsBuild.err = fmt.Errorf("go build ./cmd/jailkeeper-actions: %w\n%s", err, out)
				return
			}
		}
		actionsBuild.err = linkOrCopy(daemonBin, filepath.Join(dir, "jailkeeper"))
		actionsBuild.bin = filepath.Join(dir, "jailkeeper")
	})
	if actionsBuild.err != nil {
		t.Fatal(actionsBuild.err)
	}
	return actionsBuild.bin
}

// RemoveActionsBuild deletes what BuildActions built.
func RemoveActionsBuild() {
	if actionsBuild.dir != "" {
		_ = os.RemoveAll(actionsBuild.dir)
	}
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}

// NewActions returns the actions service of d, not started: `jailkeeper
// actions` from BuildActions. It is stopped at cleanup, and its output
// logged if the test failed.
func NewActions(t testing.TB, d *Daemon) *Actions {
	t.Helper()
	a := &Actions{Bin: BuildActions(t, d.Bin), ConfigDir: d.ConfigDir, StateDir: t.TempDir(), d: d}
	a.init(t, "jailkeeper actions", 20*time.Second)
	return a
}

// Start starts the service and waits for READY=1 (failing the test if it
// exits first or takes longer than timeout). env is added to its
// environment.
func (a *Actions) Start(t testing.TB, timeout time.Duration, env ...string) {
	t.Helper()
	argv := a.d.Hosts.SrvArgv(a.d.Journald, a.Bin, "actions", "--config-dir", a.ConfigDir, "--state-dir", a.StateDir)
	a.start(t, argv, append([]string{a.d.Bus.Env()}, env...), nil)
	a.waitReady(t, timeout)
}

// RSS returns the resident set size of the running service, in KiB, from
// /proc/PID/status (VmRSS).
func (a *Actions) RSS(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.PID()))
	if err != nil {
		t.Fatalf("reading the status of jailkeeper actions: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// ListenSrv opens a listener inside the server namespace (a webhook
// receiver, a whois server, …), closed at cleanup.
func (h *Hosts) ListenSrv(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := inNetns(h.Srv, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listening on %s in %s: %v", addr, h.Srv, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// Hook is one webhook request a WebhookReceiver got: the JSON body of
// `jailkeeper actions` (format json) and when it arrived.
type Hook struct {
	Event   string `json:"event"`
	Jail    string `json:"jail"`
	Address string `json:"address"`
	Expires string `json:"expires"`
	Reason  string `json:"reason"`
	Host    string `json:"host"`
	At      time.Time
}

// WebhookReceiver is an HTTP server in the server namespace recording
// every POSTed JSON body.
type WebhookReceiver struct {
	URL string
	// Delay is how long each request is held before its answer (a slow
	// receiver).
	Delay time.Duration

	srv   *http.Server
	mu    sync.Mutex
	hooks []Hook
	bad   []string
}

// NewWebhookReceiver listens on 198.51.100.1 (a free port) in h's server
// namespace, and stops at cleanup.
func NewWebhookReceiver(t testing.TB, h *Hosts, delay time.Duration) *WebhookReceiver {
	t.Helper()
	l := h.ListenSrv(t, "tcp", "198.51.100.1:0")
	r := &WebhookReceiver{URL: fmt.Sprintf("http://%s/hook", l.Addr()), Delay: delay}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var hk Hook
		raw, _ := io.ReadAll(req.Body)
		err := json.Unmarshal(raw, &hk)
		time.Sleep(r.Delay)
		hk.At = time.Now()
		r.mu.Lock()
		if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			r.bad = append(r.bad, fmt.Sprintf("%s %q (%s): %v", req.Method, raw, req.Header.Get("Content-Type"), err))
		} else {
			r.hooks = append(r.hooks, hk)
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = r.srv.Serve(l) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

// Hooks returns the well-formed requests so far, and the malformed ones.
func (r *WebhookReceiver) Hooks() (hooks []Hook, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Hook(nil), r.hooks...), append([]string(nil), r.bad...)
}

// Close stops the receiver: connections are refused from then on.
func (r *WebhookReceiver) Close() { _ = r.srv.Close() }
