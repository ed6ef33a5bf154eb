package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/jailkeeper/jailkeeper/internal/actions"
)

// defaultActionsStateDir is the actions service's own state directory.
const defaultActionsStateDir = "/var/lib/jailkeeper-actions"

// cmdActions runs `jailkeeper actions`, the companion that mails, calls
// webhooks and runs commands on the daemon's bans (internal/actions).
func cmdActions(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("actions", "actions [--config-dir DIR] [--state-dir DIR]", stderr)
	cfgDir := fs.String("config-dir", defaultConfigDir, "directory of *.yaml drop-ins")
	stateDir := fs.String("state-dir", "", "state directory (default $STATE_DIRECTORY or "+defaultActionsStateDir+")")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "jailkeeper actions: unexpected argument %q\n", pos[0])
		return 2
	}
	if *stateDir == "" {
		*stateDir = defaultActionsStateDir
		if s := os.Getenv("STATE_DIRECTORY"); s != "" {
			*stateDir = strings.Split(s, ":")[0]
		}
	}
	err = actions.Run(*cfgDir, *stateDir, actions.NewJournalLogger(stderr))
	switch {
	case errors.Is(err, actions.ErrNoActions):
		// Nothing to do is not a failure: say so and end cleanly.
		_, _ = sd.SdNotify(false, sd.SdNotifyReady+"\nSTATUS=no actions configured")
		fmt.Fprintf(stderr, "jailkeeper actions: %s\n", err)
		return 0
	case errors.Is(err, actions.ErrConfig):
		fmt.Fprintf(stderr, "jailkeeper actions: %s\n", oneLine(err.Error()))
		return 78 // EX_CONFIG: restarting cannot help
	case err != nil:
		return fail(stderr, "actions", err)
	}
	return 0
}
