package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// actionsBinary is the executable of `jailkeeper actions`, installed next
// to jailkeeper. The companion's HTTP, TLS and SMTP code lives there, not
// in this binary: the daemon's resident memory grows with the size of the
// binary it runs from (docs/actions.md).
const actionsBinary = "jailkeeper-actions"

// cmdActions replaces this process with jailkeeper-actions (same PID, so
// systemd's Type=notify and NotifyAccess=main hold).
func cmdActions(args []string, stderr io.Writer) int {
	self, err := os.Executable()
	if err != nil {
		return fail(stderr, "actions", fmt.Errorf("finding this executable: %w", err))
	}
	bin := filepath.Join(filepath.Dir(self), actionsBinary)
	err = syscall.Exec(bin, append([]string{bin, "actions"}, args...), os.Environ())
	return fail(stderr, "actions", fmt.Errorf("running %s: %w", bin, err))
}
