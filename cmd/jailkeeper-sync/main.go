// Command jailkeeper-sync is `jailkeeper sync`: the companion that shares
// bans between servers through a NATS JetStream key-value bucket
// (internal/fleetsync), following the daemon over D-Bus, and
// `jailkeeper unban --fleet`. It is an executable of its own so that the
// daemon's binary carries no NATS client: the daemon's resident memory
// grows with its binary's size (docs/actions.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/fleetsync"
	"github.com/jailkeeper/jailkeeper/internal/svcexit"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

const defaultConfigDir = "/etc/jailkeeper.d"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Invoked as `jailkeeper sync …` or `jailkeeper unban --fleet …`, the
	// first argument is the subcommand's name.
	cmd := "sync"
	if len(args) > 0 && (args[0] == "sync" || args[0] == "unban") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: jailkeeper sync [--config-dir DIR]\n       jailkeeper unban --fleet ADDR|CIDR [--config-dir DIR]")
		fs.PrintDefaults()
	}
	cfgDir := fs.String("config-dir", defaultConfigDir, "directory of *.yaml drop-ins")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cmd == "unban" {
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "jailkeeper unban --fleet: want one ADDR")
			return 2
		}
		return unban(*cfgDir, fs.Arg(0), stdout, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jailkeeper sync: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log := func(pri int, msg string) { fmt.Fprintf(stderr, "<%d>%s\n", pri, svcexit.OneLine(msg)) }
	err := fleetsync.Run(*cfgDir, log)
	return svcexit.Status(stderr, "sync", err, fleetsync.ErrNoSync, fleetsync.ErrConfig)
}

// unban deletes every origin's keys of addr; each server's sync service
// then lifts its ban.
func unban(cfgDir, addr string, stdout, stderr io.Writer) int {
	p, err := prefix.Parse(addr)
	if err != nil {
		fmt.Fprintf(stderr, "jailkeeper unban --fleet: %s\n", err)
		return 1
	}
	s, err := fleetsync.Load(cfgDir)
	if err != nil {
		fmt.Fprintf(stderr, "jailkeeper unban --fleet: %s\n", svcexit.OneLine(err.Error()))
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := fleetsync.Dial(ctx, s, "jailkeeper unban --fleet")
	if err != nil {
		fmt.Fprintf(stderr, "jailkeeper unban --fleet: %s\n", svcexit.OneLine(err.Error()))
		return 1
	}
	defer store.Close()
	n, err := fleetsync.FleetUnban(ctx, store, p)
	if err != nil {
		fmt.Fprintf(stderr, "jailkeeper unban --fleet: %s\n", svcexit.OneLine(err.Error()))
		return 1
	}
	if n == 0 {
		fmt.Fprintf(stderr, "jailkeeper unban --fleet: %s is not banned by the fleet\n", prefix.Format(p))
		return 1
	}
	fmt.Fprintf(stdout, "unbanned %s across the fleet (%d keys deleted)\n", prefix.Format(p), n)
	return 0
}
