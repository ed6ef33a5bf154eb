// Package svcexit turns how a companion service of the daemon
// (`jailkeeper actions`, `jailkeeper sync`) ended into its exit status,
// the same for each: nothing configured is a clean end, a configuration
// error is EX_CONFIG (restarting cannot help), anything else a failure.
package svcexit

import (
	"errors"
	"fmt"
	"io"
	"strings"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// Status reports to stderr how `jailkeeper NAME` ended with err and
// returns the exit status: 0 for nil; 0 too for an err that is none
// (nothing configured), after telling systemd READY=1 with
// STATUS=no NAME configured, so that the unit does not wait for it; 78
// (EX_CONFIG) for an err that is config; 1 for any other.
func Status(stderr io.Writer, name string, err, none, config error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, none):
		_, _ = sd.SdNotify(false, sd.SdNotifyReady+"\nSTATUS=no "+name+" configured")
		fmt.Fprintf(stderr, "jailkeeper %s: %s\n", name, err)
		return 0
	case errors.Is(err, config):
		fmt.Fprintf(stderr, "jailkeeper %s: %s\n", name, OneLine(err.Error()))
		return 78 // EX_CONFIG: restarting cannot help
	default:
		fmt.Fprintf(stderr, "jailkeeper %s: %s\n", name, OneLine(err.Error()))
		return 1
	}
}

// OneLine folds the white space of s, new lines included, into single
// spaces: one journal line per message.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
