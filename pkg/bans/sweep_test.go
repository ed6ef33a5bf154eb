package bans

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

// sweepState is a StateSweeper over a live map: changes queue their keys,
// a sweep notes the keys held when it starts.
type sweepState struct {
	live    map[string]string
	changed map[string]bool
	noted   []string
	pos     int
	starts  int
	fulls   int
}

func (f *sweepState) set(k, v string) {
	if v == "" {
		delete(f.live, k)
	} else {
		f.live[k] = v
	}
	f.changed[k] = true
}

func (f *sweepState) TakeState(all bool, put func(k, v []byte)) bool {
	if all {
		f.fulls++
	}
	for k := range f.changed {
		var v []byte
		if s, ok := f.live[k]; ok {
			v = []byte(s)
		}
		put([]byte(k), v)
	}
	clear(f.changed)
	return false
}

func (f *sweepState) SweepState(start bool, n int, put func(k, v []byte)) bool {
	if start {
		f.starts++
		f.noted, f.pos = slices.Sorted(maps.Keys(f.live)), 0
	}
	end := min(len(f.noted), f.pos+n)
	for _, k := range f.noted[f.pos:end] {
		if v, ok := f.live[k]; ok {
			put([]byte(k), []byte(v))
		}
	}
	f.pos = end
	return f.pos == len(f.noted)
}

// TestStateSweep: a source that can be swept is compacted a part per
// cursor write, never all at once; after every write the saved log reads
// back as the source's state, across a reopen too; once the sweep is over
// the log holds far fewer entries than it would without its deletes.
func TestStateSweep(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { tb.Close() }()
	src := &sweepState{live: map[string]string{}, changed: map[string]bool{}}
	tb.AttachState(src)
	const n = 70_000
	for i := range n {
		src.set(fmt.Sprintf("k%06d", i), "a")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	entries := func() int {
		c := 0
		tb.EachState(func(k, v []byte) { c++ })
		return c
	}
	maxWrite := 0
	for w := range 16 {
		// Changes: some updated, some deleted, some new.
		for range 500 {
			i := rng.IntN(n + 1000)
			switch rng.IntN(3) {
			case 0:
				src.set(fmt.Sprintf("k%06d", i), "")
			default:
				src.set(fmt.Sprintf("k%06d", i), fmt.Sprint(w))
			}
		}
		before := tb.st.next
		if err := tb.SaveCursor(fmt.Sprint(w)); err != nil {
			t.Fatal(err)
		}
		if w > 0 {
			maxWrite = max(maxWrite, int(tb.st.next-before))
		}
		got := savedState(t, tb)
		if len(got) != len(src.live) || !maps.Equal(got, src.live) {
			t.Fatalf("write %d: the saved state has %d records, the source %d (or other values)", w, len(got), len(src.live))
		}
		if w == 6 {
			tb = reopen(t, tb, path)
			tb.AttachState(src)
			if got := savedState(t, tb); !maps.Equal(got, src.live) {
				t.Fatalf("after a reopen mid-sweep: %d records, want %d", len(got), len(src.live))
			}
		}
	}
	if src.starts == 0 || src.fulls != 0 {
		t.Fatalf("%d sweeps and %d full takes, want a sweep and no full take", src.starts, src.fulls)
	}
	if maxWrite > sweepChunk+1000 {
		t.Fatalf("a write of %d records during the sweep, want at most %d", maxWrite, sweepChunk+1000)
	}
	if tb.st.sweep != sweepNone {
		t.Fatalf("the sweep is still in phase %d after 16 writes", tb.st.sweep)
	}
	// Without the deletes: the 70,000 entries from before and as many
	// written again. (The reopen mid-way forgot the rest of the deletes:
	// the log is compacted again once it has doubled.)
	if e := entries(); e > len(src.live)*3/2 {
		t.Fatalf("%d log entries after the sweep for %d live records", e, len(src.live))
	}
}
