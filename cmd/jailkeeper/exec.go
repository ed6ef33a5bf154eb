package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// The executables that serve some subcommands, installed next to
// jailkeeper. The daemon's resident memory grows with the size of the
// binary it runs from, so the daemon has an executable of its own that
// links none of the CLI, and the companions' HTTP, TLS, SMTP and NATS code
// stays out of it (docs/daemon.md, docs/actions.md, docs/fleet.md).
const (
	daemonBinary  = "jailkeeperd"
	actionsBinary = "jailkeeper-actions"
	syncBinary    = "jailkeeper-sync"
)

// execSibling replaces this process with the executable bin next to it,
// run as `bin cmd args…` with this environment: the same PID, so systemd's
// Type=notify, NotifyAccess=main, the watchdog and MAINPID hold. It returns
// only on failure.
func execSibling(bin, cmd string, args []string, stderr io.Writer) int {
	self, err := os.Executable()
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("finding this executable: %w", err))
	}
	path := filepath.Join(filepath.Dir(self), bin)
	err = syscall.Exec(path, append([]string{path, cmd}, args...), os.Environ())
	return fail(stderr, cmd, fmt.Errorf("running %s: %w", path, err))
}
