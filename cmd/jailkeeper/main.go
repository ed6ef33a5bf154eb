// Command jailkeeper is the ban service's command: `daemon` runs the
// service (it execs jailkeeperd); status, ban, unban and reload talk to it
// over D-Bus; check and test work offline.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/jailcheck"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

// defaultConfigDir is the daemon's configuration directory.
const defaultConfigDir = "/etc/jailkeeper.d"

const usage = `usage: jailkeeper COMMAND [ARGS] [FLAGS]

commands:
  daemon [--config-dir DIR] [--state-dir DIR]   run the ban service
  status [JAIL] [--json]                        show jails, failures and bans
  ban JAIL ADDR|CIDR|- [--for DURATION] [--skip-bad]
                                                ban (- reads one address per line from stdin)
  unban ADDR|CIDR [--jail JAIL]                 lift a ban (from every jail by default)
  unban --jail JAIL --all                       lift every ban of a jail
  unban --fleet ADDR|CIDR [--config-dir DIR]    lift it on every server of the fleet (jailkeeper sync)
  reload                                        re-read /etc/jailkeeper.d (the running config stays on error)
  check [--config-dir DIR] [--json]             validate the configuration
  teardown [--backend B] [--force]              remove jailkeeper's chains, sets and tables (stop the service first)
  test FILTER [FILE|-] [--json] [--mode M]      run a filter over log lines (like fail2ban-regex)
  actions [--config-dir DIR] [--state-dir DIR]  run the companion: mail, webhooks, commands on bans
  metrics [--textfile DIR | --http]             print the daemon's metrics (Prometheus text format)
  sync [--config-dir DIR]                       run the companion that shares bans through NATS
  version                                       print the version

Every command takes --help. Flags may stand before or after arguments.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "daemon":
		return execSibling(daemonBinary, "daemon", rest, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "ban":
		return cmdBan(rest, stdin, stdout, stderr)
	case "unban":
		return cmdUnban(rest, stdout, stderr)
	case "reload":
		return cmdReload(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "actions":
		return execSibling(actionsBinary, "actions", rest, stderr)
	case "sync":
		return execSibling(syncBinary, "sync", rest, stderr)
	case "test":
		return cmdTest(rest, stdin, stdout, stderr)
	case "teardown":
		return cmdTeardown(rest, stdout, stderr)
	case "metrics":
		return cmdMetrics(rest, stdin, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "jailkeeper %s\n", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "jailkeeper: unknown command %q\n%s", cmd, usage)
	return 2
}

func oneLine(s string) string {
	return strings.ReplaceAll(s, "\n", " ")
}

func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "jailkeeper %s: %s\n", cmd, oneLine(err.Error()))
	return 1
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "status [JAIL] [--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(pos) > 1 {
		fmt.Fprintln(stderr, "jailkeeper status: at most one JAIL")
		return 2
	}
	jail := ""
	if len(pos) == 1 {
		jail = pos[0]
	}
	c, err := dbusapi.Dial()
	if err != nil {
		return fail(stderr, "status", err)
	}
	defer c.Close()
	st, err := c.Status(jail)
	if err != nil {
		return fail(stderr, "status", err)
	}
	if *asJSON {
		for i := range st {
			if st[i].Banned == nil {
				st[i].Banned = []string{}
			}
		}
		if st == nil {
			st = []dbusapi.JailStatus{}
		}
		return writeJSON(stdout, stderr, map[string]any{"jails": st})
	}
	printStatus(stdout, jail, st)
	return 0
}

func printStatus(w io.Writer, jail string, st []dbusapi.JailStatus) {
	if jail == "" {
		names := make([]string, len(st))
		for i, s := range st {
			names[i] = s.Name
		}
		fmt.Fprintf(w, "Status\n|- Number of jails:\t%d\n`- Jail list:\t%s\n", len(st), strings.Join(names, ", "))
		for _, s := range st {
			fmt.Fprintf(w, "   %s: %d failed now, %d banned now (%d failed, %d banned in total)\n",
				s.Name, s.CurrentlyFailed, s.CurrentlyBanned, s.TotalFailed, s.TotalBanned)
		}
		return
	}
	for _, s := range st {
		fmt.Fprintf(w, "Status for the jail: %s\n", s.Name)
		fmt.Fprintf(w, "|- Filter\n|  |- Currently failed:\t%d\n|  `- Total failed:\t%d\n", s.CurrentlyFailed, s.TotalFailed)
		fmt.Fprintf(w, "`- Actions\n   |- Currently banned:\t%d\n   |- Total banned:\t%d\n   `- Banned IP list:\t%s\n",
			s.CurrentlyBanned, s.TotalBanned, strings.Join(s.Banned, " "))
	}
}

func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(v); err != nil {
		return fail(stderr, "json", err)
	}
	return 0
}

// banChunk is how many addresses one BanMany call carries: about 1 MB,
// far below the system bus's message limit (32 MiB in dbus-daemon's
// system.conf), and a step the daemon commits in well under a second.
const banChunk = 50_000

func cmdBan(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("ban", "ban JAIL ADDR|CIDR|- [--for DURATION] [--skip-bad]", stderr)
	forDur := fs.String("for", "", "ban duration (10m, 1h, 1w, permanent; default: the jail's bantime)")
	skipBad := fs.Bool("skip-bad", false, "with -: ban the good lines and list the bad ones (default: a bad line bans nothing)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(pos) != 2 {
		fmt.Fprintln(stderr, "jailkeeper ban: want JAIL and ADDR (or - to read addresses from stdin)")
		return 2
	}
	var d time.Duration
	if *forDur != "" {
		cd, err := config.ParseDuration(*forDur)
		if err != nil {
			return fail(stderr, "ban", fmt.Errorf("--for: %w", err))
		}
		d = cd.Std()
	}
	jail := pos[0]
	var addrs []string
	var bad []string
	if pos[1] == "-" {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = strings.TrimSpace(line[:i])
			}
			if line == "" {
				continue
			}
			if err := checkBannable(line); err != nil {
				if !*skipBad {
					return fail(stderr, "ban", fmt.Errorf("stdin line %d: %w; nothing banned", n, err))
				}
				bad = append(bad, fmt.Sprintf("stdin line %d: %v", n, err))
				continue
			}
			addrs = append(addrs, line)
		}
		if err := sc.Err(); err != nil {
			return fail(stderr, "ban", fmt.Errorf("reading stdin: %w; nothing banned", err))
		}
	} else {
		if err := checkBannable(pos[1]); err != nil {
			return fail(stderr, "ban", err)
		}
		addrs = []string{pos[1]}
	}
	for _, b := range bad {
		fmt.Fprintf(stderr, "jailkeeper ban: skipped %s\n", b)
	}
	c, err := dbusapi.Dial()
	if err != nil {
		return fail(stderr, "ban", err)
	}
	defer c.Close()
	if len(addrs) == 1 && pos[1] != "-" {
		if err := c.Ban(jail, addrs[0], d); err != nil {
			return fail(stderr, "ban", err)
		}
		fmt.Fprintf(stdout, "banned %s in %s\n", addrs[0], jail)
		return 0
	}
	// In order, each chunk is a narrow range of the daemon's ban
	// database: fewer pages to rewrite per step.
	slices.Sort(addrs)
	progress := isTerminal(stderr) && len(addrs) > banChunk
	var n uint32
	for sent := 0; sent < len(addrs) || sent == 0; {
		part := addrs[sent:min(len(addrs), sent+banChunk)]
		m, err := c.BanMany(jail, part, d)
		if progress {
			fmt.Fprint(stderr, "\r\033[K")
		}
		if err != nil {
			if sent == 0 {
				return fail(stderr, "ban", err)
			}
			return fail(stderr, "ban", fmt.Errorf("%w; the first %d addresses were sent (%d bans new or extended)", err, sent, n))
		}
		n += m
		sent += len(part)
		if progress {
			fmt.Fprintf(stderr, "jailkeeper ban: %d of %d addresses sent (%d%%)", sent, len(addrs), 100*sent/len(addrs))
		}
		if len(addrs) == 0 {
			break
		}
	}
	if progress {
		fmt.Fprint(stderr, "\r\033[K")
	}
	msg := fmt.Sprintf("banned %d of %d addresses in %s (the rest were already banned)", n, len(addrs), jail)
	if len(bad) > 0 {
		msg += fmt.Sprintf("; %d bad lines skipped", len(bad))
	}
	fmt.Fprintln(stdout, msg)
	return 0
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// checkBannable parses an address to ban and refuses what the daemon
// would refuse anyway (prefix.Refuse; the daemon also knows its own
// addresses), before anything is sent.
func checkBannable(s string) error {
	p, err := dbusapi.ParsePrefix(s)
	if err != nil {
		return err
	}
	if err := prefix.Refuse(p, nil); err != nil {
		return fmt.Errorf("%w: %v", dbusapi.ErrBadAddress, err)
	}
	return nil
}

func cmdUnban(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("unban", "unban ADDR|CIDR [--jail JAIL] | unban --jail JAIL --all | unban --fleet ADDR|CIDR [--config-dir DIR]", stderr)
	jail := fs.String("jail", "", "only this jail (default: every jail)")
	all := fs.Bool("all", false, "lift every ban of --jail in one batch")
	fleet := fs.Bool("fleet", false, "delete every server's key of ADDR from the fleet's bucket (jailkeeper sync)")
	cfgDir := fs.String("config-dir", defaultConfigDir, "directory of *.yaml drop-ins (with --fleet)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
	}
	if *fleet {
		if *jail != "" || *all || len(pos) != 1 {
			fmt.Fprintln(stderr, "jailkeeper unban --fleet: want one ADDR and no --jail or --all")
			return 2
		}
		return execSibling(syncBinary, "unban", []string{"--config-dir", *cfgDir, pos[0]}, stderr)
	}
	if *all {
		if len(pos) != 0 || *jail == "" {
			fmt.Fprintln(stderr, "jailkeeper unban: --all wants --jail JAIL and no address")
			return 2
		}
		c, err := dbusapi.Dial()
		if err != nil {
			return fail(stderr, "unban", err)
		}
		defer c.Close()
		n, err := c.UnbanAll(*jail)
		if err != nil {
			return fail(stderr, "unban", err)
		}
		fmt.Fprintf(stdout, "unbanned every address in %s (%d bans lifted)\n", *jail, n)
		return 0
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "jailkeeper unban: want one ADDR")
		return 2
	}
	if _, err := dbusapi.ParsePrefix(pos[0]); err != nil {
		return fail(stderr, "unban", err)
	}
	c, err := dbusapi.Dial()
	if err != nil {
		return fail(stderr, "unban", err)
	}
	defer c.Close()
	n, err := c.Unban(*jail, pos[0])
	if err != nil {
		return fail(stderr, "unban", err)
	}
	if n == 0 {
		fmt.Fprintf(stderr, "jailkeeper unban: %s is not banned\n", pos[0])
		return 1
	}
	fmt.Fprintf(stdout, "unbanned %s (%d bans lifted)\n", pos[0], n)
	return 0
}

func cmdReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("reload", "reload", stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(pos) != 0 {
		fmt.Fprintln(stderr, "jailkeeper reload: takes no arguments")
		return 2
	}
	c, err := dbusapi.Dial()
	if err != nil {
		return fail(stderr, "reload", err)
	}
	defer c.Close()
	if err := c.Reload(); err != nil {
		return fail(stderr, "reload", err)
	}
	fmt.Fprintln(stdout, "configuration reloaded")
	return 0
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "check [--config-dir DIR] [--json] [--config-only]", stderr)
	dir := fs.String("config-dir", defaultConfigDir, "directory of *.yaml drop-ins")
	asJSON := fs.Bool("json", false, "print JSON")
	configOnly := fs.Bool("config-only", false, "validate the configuration only: do not look at this host's units and journal")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(pos) != 0 {
		fmt.Fprintln(stderr, "jailkeeper check: takes no arguments (use --config-dir)")
		return 2
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		return fail(stderr, "check", err)
	}
	rt, err := cfg.Resolve()
	if err != nil {
		return fail(stderr, "check", err)
	}
	type jailOut struct {
		Name     string              `json:"name"`
		Units    []string            `json:"units"`
		MaxRetry int                 `json:"maxretry"`
		FindTime string              `json:"findtime"`
		BanTime  string              `json:"bantime"`
		APIOnly  bool                `json:"api_only,omitempty"`
		Warnings []jailcheck.Warning `json:"warnings"`
	}
	out := struct {
		Files     []string  `json:"files"`
		Backend   string    `json:"backend"`
		Whitelist []string  `json:"whitelist"`
		Jails     []jailOut `json:"jails"`
		Warnings  []string  `json:"warnings"`
	}{Files: cfg.Files, Backend: rt.Backend, Whitelist: []string{}, Jails: []jailOut{}, Warnings: rt.Warnings}
	if out.Files == nil {
		out.Files = []string{}
	}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	for _, p := range rt.Layout.Whitelist {
		out.Whitelist = append(out.Whitelist, prefix.Format(p))
	}
	host := jailcheck.NewSystem()
	for _, j := range rt.Jails {
		bt := config.Duration(j.BanTime).String()
		units := make([]string, len(j.Units))
		for i, u := range j.Units {
			units[i] = journal.UnitName(u) // as the reader matches it
		}
		jo := jailOut{j.Name, units, j.MaxRetry, j.FindTime.String(), bt, j.APIOnly, []jailcheck.Warning{}}
		if !*configOnly {
			// Warnings about the host never change the exit code.
			if ws := jailcheck.Check(checkedJail(cfg, j), host, time.Now()); ws != nil {
				jo.Warnings = ws
			}
		}
		out.Jails = append(out.Jails, jo)
	}
	if *asJSON {
		return writeJSON(stdout, stderr, out)
	}
	fmt.Fprintf(stdout, "configuration OK: %d files, backend %s, %d jails\n", len(out.Files), out.Backend, len(out.Jails))
	for _, j := range out.Jails {
		if j.APIOnly {
			fmt.Fprintf(stdout, "  %s: API-only (reads no journal; bans from the D-Bus API: jailkeeper ban, jailkeeper sync), bantime %s\n", j.Name, j.BanTime)
			continue
		}
		fmt.Fprintf(stdout, "  %s: units %s, maxretry %d, findtime %s, bantime %s\n", j.Name, strings.Join(j.Units, " "), j.MaxRetry, j.FindTime, j.BanTime)
		for _, w := range j.Warnings {
			fmt.Fprintf(stdout, "    warning: %s\n", w.Message)
		}
	}
	for _, w := range out.Warnings {
		fmt.Fprintf(stdout, "  warning: %s\n", w)
	}
	return 0
}

// checkedJail describes jail j of cfg for jailcheck: a built-in filter's
// default units are alternatives (one service's unit name per
// distribution).
func checkedJail(cfg *config.Config, j jails.Jail) jailcheck.Jail {
	e := cfg.Effective(j.Name)
	name := "of jail " + j.Name
	if e.Filter != "" {
		name = e.Filter
		if _, custom := cfg.Filters[e.Filter]; !custom {
			mode := e.Mode
			if mode == "" {
				mode = "normal"
			}
			name += " (mode " + mode + ")"
		}
	}
	return jailcheck.Jail{Name: j.Name, Filter: j.Filter, FilterName: name, Units: j.Units, Alternatives: e.Units == nil}
}
