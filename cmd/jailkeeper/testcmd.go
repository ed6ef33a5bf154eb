package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jailkeeper/jailkeeper/pkg/jails"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// testTopAddresses is how many addresses the summary of `test` lists.
const testTopAddresses = 10

// cmdTest runs a filter over log lines, like fail2ban-regex:
//
//	jailkeeper test FILTER [FILE|-] [--json] [--mode M]
//	jailkeeper test FILTER --journal --unit U [--since T]
//
// FILTER is a built-in filter name or a YAML filter file. Lines are bare
// messages, syslog lines or `journalctl -o json` lines. Without --json it
// prints a summary; with --json one object per matched line and nothing
// else. Errors exit 2 with one line on stderr.
func cmdTest(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("test", "test FILTER [FILE|-] [--json] [--mode M] | test FILTER --journal --unit U [--since T]", stderr)
	asJSON := fs.Bool("json", false, `print one JSON object per matched line: {"line":N,"host":"…","user":"…"}`)
	mode := fs.String("mode", "", "mode of a built-in filter (default normal; the modes are listed below)")
	fromJournal := fs.Bool("journal", false, "read the live journal (via journalctl) instead of a file")
	unit := fs.String("unit", "", "with --journal: the unit to read (_SYSTEMD_UNIT)")
	since := fs.String("since", "", "with --journal: start time, as journalctl --since takes it")
	flagUsage := fs.Usage
	fs.Usage = func() {
		flagUsage()
		fmt.Fprint(stderr, builtinModesText())
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "jailkeeper test: %s\n", oneLineText(fmt.Sprintf(format, a...)))
		return 2
	}
	if len(pos) < 1 || len(pos) > 2 {
		return bad("want FILTER [FILE|-] (see --help)")
	}
	if *fromJournal && len(pos) == 2 {
		return bad("--journal and a FILE exclude each other")
	}
	if !*fromJournal && (*unit != "" || *since != "") {
		return bad("--unit and --since need --journal")
	}
	if *fromJournal && *unit == "" {
		return bad("--journal needs --unit")
	}
	name, f, err := loadTestFilter(pos[0], *mode)
	if err != nil {
		return bad("%v", err)
	}

	var in io.Reader
	source := "stdin"
	switch {
	case *fromJournal:
		jargs := []string{"--no-pager", "-o", "json", "_SYSTEMD_UNIT=" + journal.UnitName(*unit)}
		if *since != "" {
			jargs = append(jargs, "--since", *since)
		}
		var errBuf bytes.Buffer
		cmd := exec.Command("journalctl", jargs...)
		cmd.Stderr = &errBuf
		out, err := cmd.Output()
		if err != nil {
			return bad("reading the journal with journalctl: %v: %s", err, strings.TrimSpace(errBuf.String()))
		}
		in = bytes.NewReader(out)
		source = "journal, unit " + journal.UnitName(*unit)
	case len(pos) == 1 || pos[1] == "-":
		in = stdin
	default:
		file, err := os.Open(pos[1])
		if err != nil {
			return bad("%v", err)
		}
		defer file.Close()
		in = file
		source = pos[1]
	}

	res, err := runTest(f, in, func(lineNo int, m jails.Match) error {
		if !*asJSON {
			return nil
		}
		b, err := json.Marshal(struct {
			Line int    `json:"line"`
			Host string `json:"host"`
			User string `json:"user"`
		}{lineNo, m.Addr.String(), m.User})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	})
	if err != nil {
		return bad("%s: %v", source, err)
	}
	if !*asJSON {
		printTestSummary(stdout, name, source, f, res)
	}
	return 0
}

// testResult counts what a filter found in its input.
type testResult struct {
	lines, matched, ignored int
	regexHits               []int
	addrHits                map[netip.Addr]int
}

// runTest runs f over every line of in, calling onMatch for each failure.
func runTest(f *jails.Filter, in io.Reader, onMatch func(int, jails.Match) error) (testResult, error) {
	res := testResult{regexHits: make([]int, f.NumRegex()), addrHits: map[netip.Addr]int{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		res.lines++
		en, err := journal.ParseLine(sc.Text())
		if err != nil {
			return res, fmt.Errorf("line %d: %w", res.lines, err)
		}
		m, ok := f.Match(en.Message)
		if !ok {
			if f.Ignored(en.Message) && f.Failed(en.Message) {
				res.ignored++
			}
			continue
		}
		res.matched++
		res.regexHits[m.Regex]++
		res.addrHits[m.Addr]++
		if err := onMatch(res.lines, m); err != nil {
			return res, err
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("reading line %d: %w", res.lines+1, err)
	}
	return res, nil
}

func printTestSummary(w io.Writer, name, source string, f *jails.Filter, r testResult) {
	fmt.Fprintf(w, "Filter:   %s (%d failregex)\n", name, f.NumRegex())
	fmt.Fprintf(w, "Input:    %s\n", source)
	fmt.Fprintf(w, "Lines:    %d\n", r.lines)
	fmt.Fprintf(w, "Matched:  %d\n", r.matched)
	fmt.Fprintf(w, "Ignored:  %d\n", r.ignored)
	fmt.Fprintf(w, "Missed:   %d\n", r.lines-r.matched-r.ignored)
	fmt.Fprintf(w, "\nFailregex hits:\n")
	for i, n := range r.regexHits {
		fmt.Fprintf(w, "  #%-2d %7d  %s\n", i, n, f.Regex(i))
	}
	type addrCount struct {
		a netip.Addr
		n int
	}
	var top []addrCount
	for a, n := range r.addrHits {
		top = append(top, addrCount{a, n})
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].n != top[j].n {
			return top[i].n > top[j].n
		}
		return top[i].a.Less(top[j].a)
	})
	if len(top) > testTopAddresses {
		top = top[:testTopAddresses]
	}
	fmt.Fprintf(w, "\nTop addresses:\n")
	if len(top) == 0 {
		fmt.Fprintf(w, "  (none)\n")
	}
	for _, t := range top {
		fmt.Fprintf(w, "  %-39s %7d\n", t.a, t.n)
	}
}

// loadTestFilter compiles a built-in filter, or a YAML filter file when
// arg names an existing file or looks like a path.
func loadTestFilter(arg, mode string) (string, *jails.Filter, error) {
	isFile := strings.ContainsRune(arg, '/') || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")
	if !isFile {
		if _, err := os.Stat(arg); err == nil {
			isFile = true
		}
	}
	if !isFile {
		def, err := jails.Builtin(arg, mode)
		if err != nil {
			return "", nil, err
		}
		f, err := jails.Compile(def)
		if err != nil {
			return "", nil, fmt.Errorf("built-in filter %s: %w", arg, err)
		}
		m := mode
		if m == "" {
			m = "normal"
		}
		return fmt.Sprintf("%s, mode %s", arg, m), f, nil
	}
	if mode != "" {
		return "", nil, fmt.Errorf("--mode applies to built-in filters only")
	}
	data, err := os.ReadFile(arg)
	if err != nil {
		return "", nil, err
	}
	var def jails.FilterDef
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&def); err != nil {
		return "", nil, fmt.Errorf("loading filter %s: %w", arg, err)
	}
	f, err := jails.Compile(def)
	if err != nil {
		return "", nil, fmt.Errorf("filter %s: %w", arg, err)
	}
	return arg, f, nil
}

// oneLineText squeezes a message onto one line.
func oneLineText(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// builtinModesText lists the built-in filters and their modes for --help.
func builtinModesText() string {
	var b strings.Builder
	b.WriteString("built-in filters and their modes (--mode):\n")
	for _, n := range jails.BuiltinNames() {
		fmt.Fprintf(&b, "  %-18s %s\n", n, strings.Join(jails.BuiltinModes(n), ", "))
	}
	return b.String()
}
