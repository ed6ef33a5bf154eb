package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// syncBinary is the executable of `jailkeeper sync` and of
// `jailkeeper unban --fleet`, installed next to jailkeeper: the NATS
// client lives there, not in this binary (the daemon's).
const syncBinary = "jailkeeper-sync"

// execSync replaces this process with jailkeeper-sync (same PID, so
// systemd's Type=notify and NotifyAccess=main hold).
func execSync(cmd string, args []string, stderr io.Writer) int {
	self, err := os.Executable()
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("finding this executable: %w", err))
	}
	bin := filepath.Join(filepath.Dir(self), syncBinary)
	err = syscall.Exec(bin, append([]string{bin, cmd}, args...), os.Environ())
	return fail(stderr, cmd, fmt.Errorf("running %s: %w", bin, err))
}
