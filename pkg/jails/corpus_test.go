package jails

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusCase is one line of a filter corpus and what the filter must find.
type corpusCase struct {
	lineNo int
	msg    string
	match  bool
	addr   netip.Addr
	user   string
}

// readCorpus reads a corpus file: a message line, then "ADDR [USER]" or "*".
func readCorpus(path string) ([]corpusCase, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []corpusCase
	sc := bufio.NewScanner(f)
	n := 0
	var pending *corpusCase
	for sc.Scan() {
		n++
		line := sc.Text()
		if pending == nil {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			pending = &corpusCase{lineNo: n, msg: line}
			continue
		}
		c := *pending
		pending = nil
		if line != "*" {
			a, u, _ := strings.Cut(line, " ")
			addr, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: bad expectation %q: %w", path, n, line, err)
			}
			c.match, c.addr, c.user = true, addr, u
		}
		out = append(out, c)
	}
	if pending != nil {
		return nil, fmt.Errorf("%s:%d: line without expectation", path, pending.lineNo)
	}
	return out, sc.Err()
}

// corpusFiles maps each corpus file in testdata to its filter and mode:
// NAME.txt is mode normal, NAME.MODE.txt is mode MODE.
func corpusFiles(t *testing.T) map[string][2]string {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]string{}
	for _, p := range paths {
		if p == deviationsFile {
			continue // the conformance suite's, not a corpus
		}
		base := strings.TrimSuffix(filepath.Base(p), ".txt")
		name, mode, _ := strings.Cut(base, ".")
		out[p] = [2]string{name, mode}
	}
	return out
}

func checkCorpus(t *testing.T, f *Filter, cases []corpusCase, path string) {
	t.Helper()
	for _, c := range cases {
		m, ok := f.Match(c.msg)
		switch {
		case ok != c.match:
			t.Errorf("%s:%d: %q: matched=%v (%v %q), want matched=%v", path, c.lineNo, c.msg, ok, m.Addr, m.User, c.match)
		case ok && (m.Addr != c.addr || m.User != c.user):
			t.Errorf("%s:%d: %q: got %v %q, want %v %q", path, c.lineNo, c.msg, m.Addr, m.User, c.addr, c.user)
		}
	}
}

func TestBuiltinCorpora(t *testing.T) {
	files := corpusFiles(t)
	covered := map[string]bool{}
	for path, nm := range files {
		name, mode := nm[0], nm[1]
		covered[name] = true
		t.Run(filepath.Base(path), func(t *testing.T) {
			def, err := Builtin(name, mode)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Compile(def)
			if err != nil {
				t.Fatal(err)
			}
			cases, err := readCorpus(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(cases) < 10 {
				t.Errorf("corpus %s has only %d lines", path, len(cases))
			}
			checkCorpus(t, f, cases, path)
			// Every extra mode is a superset of normal for the failures.
			if mode == "" {
				for _, m := range BuiltinModes(name)[1:] {
					def, _ := Builtin(name, m)
					fm, err := Compile(def)
					if err != nil {
						t.Fatal(err)
					}
					var failures []corpusCase
					for _, c := range cases {
						if c.match {
							failures = append(failures, c)
						}
					}
					checkCorpus(t, fm, failures, path+" (mode "+m+")")
				}
			}
		})
	}
	for _, n := range BuiltinNames() {
		if !covered[n] {
			t.Errorf("built-in filter %s has no corpus in testdata/", n)
		}
		def, _ := Builtin(n, "")
		if len(def.Units) == 0 {
			t.Errorf("built-in filter %s has no default units", n)
		}
	}
}
