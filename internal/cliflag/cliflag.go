// Package cliflag parses the flags of jailkeeper's subcommands the same way
// in every executable that serves one (jailkeeper, jailkeeperd): flags may
// stand before, between and after positional arguments, and --help prints
// a one-line synopsis and the flags.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// ParseInterspersed parses fs over args, allowing flags before, between
// and after positional arguments ("status sshd --json" = "status --json
// sshd"). "--" ends flag parsing; a lone "-" is positional (stdin). It
// returns the positional arguments.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse stops at the first non-flag; "--" is consumed by it.
		consumedDashDash := len(args) > len(rest) && args[len(args)-len(rest)-1] == "--"
		if consumedDashDash {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// NewFlagSet returns a FlagSet for the subcommand `jailkeeper NAME` whose
// --help prints usage (a one-line synopsis and the flags) to out.
func NewFlagSet(name, synopsis string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: jailkeeper %s\n", synopsis)
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(out)
		if b.Len() > 0 {
			fmt.Fprintf(out, "flags:\n%s", b.String())
		}
	}
	return fs
}

// UsageStatus maps a flag parse error to an exit status: 0 for --help,
// 2 for any other.
func UsageStatus(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
