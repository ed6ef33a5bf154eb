// Command jailkeeper-actions is `jailkeeper actions`: the companion that
// mails, calls webhooks and runs commands on the daemon's bans
// (internal/actions), following the daemon over D-Bus. It is an executable
// of its own so that the daemon's binary does not carry its HTTP, TLS and
// SMTP code: the daemon's resident memory grows with its binary's size
// (docs/actions.md). `jailkeeper actions` runs it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jailkeeper/jailkeeper/internal/actions"
	"github.com/jailkeeper/jailkeeper/internal/svcexit"
)

// Default directories; the configuration directory is the daemon's.
const (
	defaultConfigDir = "/etc/jailkeeper.d"
	defaultStateDir  = "/var/lib/jailkeeper-actions"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	// Invoked as `jailkeeper actions …` the first argument is the
	// subcommand's name.
	if len(args) > 0 && args[0] == "actions" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("actions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: jailkeeper actions [--config-dir DIR] [--state-dir DIR]")
		fs.PrintDefaults()
	}
	cfgDir := fs.String("config-dir", defaultConfigDir, "directory of *.yaml drop-ins")
	stateDir := fs.String("state-dir", "", "state directory (default $STATE_DIRECTORY or "+defaultStateDir+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jailkeeper actions: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *stateDir == "" {
		*stateDir = defaultStateDir
		if s := os.Getenv("STATE_DIRECTORY"); s != "" {
			*stateDir = strings.Split(s, ":")[0]
		}
	}
	err := actions.Run(*cfgDir, *stateDir, actions.NewJournalLogger(stderr))
	return svcexit.Status(stderr, "actions", err, actions.ErrNoActions, actions.ErrConfig)
}
