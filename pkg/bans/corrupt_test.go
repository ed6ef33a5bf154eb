package bans

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// soundFile writes a ban database with enough bans to span many pages and
// returns its path.
func soundFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	tb, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var bs []Ban
	for i := 0; i < 2000; i++ {
		bs = append(bs, ban("sshd", fmt.Sprintf("10.0.%d.%d/32", i/250, i%250), t0, time.Hour))
	}
	if _, err := tb.Commit("s=1", bs...); err != nil {
		t.Fatal(err)
	}
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// pageOf returns the page size and the root page of the bans bucket.
func pageOf(t *testing.T, path string) (size int, root int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		root = int(tx.Bucket(bucketBans).Root())
		return nil
	})
	return db.Info().PageSize, root
}

// TestCorruptFiles: each kind of damage is reported as ErrCorrupt, never
// a panic and never an empty table; OpenRecovering moves the file aside
// and gives a working empty table.
func TestCorruptFiles(t *testing.T) {
	damages := map[string]func(t *testing.T, path string){
		"truncated to zero": func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		},
		"truncated inside the first page": func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		},
		"truncated to half": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		},
		"random bytes in a page": func(t *testing.T, path string) {
			size, root := pageOf(t, path)
			junk := make([]byte, size)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range junk {
				junk[i] = byte(r.Uint32())
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(junk, int64(root*size)); err != nil {
				t.Fatal(err)
			}
		},
		"both meta pages overwritten": func(t *testing.T, path string) {
			size, _ := pageOf(t, path)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 2*size), 0); err != nil {
				t.Fatal(err)
			}
		},
		"not a database": func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("bans: 198.51.100.7\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"a ban that does not decode": func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketBans).Put([]byte("sshd\x0010.0.0.1/32"), []byte("{not json"))
			}); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			path := soundFile(t)
			damage(t, path)
			tb, err := Open(path)
			if !errors.Is(err, ErrCorrupt) {
				if tb != nil {
					t.Logf("Open gave a table of %d bans", tb.Len())
					tb.Close()
				}
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			t.Logf("Open: %v", err)
			tb, rec, err := OpenRecovering(path)
			if err != nil || rec == nil {
				t.Fatalf("OpenRecovering = %v, %v", rec, err)
			}
			defer tb.Close()
			if _, err := os.Stat(rec.MovedTo); err != nil {
				t.Fatalf("the broken file is not at %s: %v", rec.MovedTo, err)
			}
			if !errors.Is(rec.Cause, ErrCorrupt) || tb.Len() != 0 {
				t.Fatalf("Recovery %+v, table of %d bans; want the cause and an empty table", rec, tb.Len())
			}
			if _, err := tb.Add(ban("sshd", "198.51.100.7/32", t0, time.Hour)); err != nil {
				t.Fatalf("Add on the new table: %v", err)
			}
		})
	}
}

// TestOpenRecoveringSound: a sound file and a missing one are no
// recovery; another daemon holding the file is an error, not corruption.
func TestOpenRecoveringSound(t *testing.T) {
	path := soundFile(t)
	tb, rec, err := OpenRecovering(path)
	if err != nil || rec != nil || tb.Len() != 2000 {
		t.Fatalf("sound file: %v, %v, %d bans", rec, err, tb.Len())
	}
	if _, rec2, err := OpenRecovering(path); err == nil || rec2 != nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("second opener: %v, %v; want the lock error", rec2, err)
	}
	tb.Close()
	tb, rec, err = OpenRecovering(filepath.Join(t.TempDir(), FileName))
	if err != nil || rec != nil {
		t.Fatalf("new file: %v, %v", rec, err)
	}
	tb.Close()
}

// TestCorruptHistory: Open reads the histories after it returns; one that
// does not decode is left out and reported by HistoryErr, and the bans and
// the other histories stay.
func TestCorruptHistory(t *testing.T) {
	path := soundFile(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).Put([]byte("sshd\x00junk"), []byte{0xff, 0xfe})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	tb, err := Open(path)
	if err != nil {
		t.Fatalf("Open with a bad history record: %v", err)
	}
	defer tb.Close()
	if n := tb.Len(); n != 2000 {
		t.Errorf("%d bans loaded, want 2000", n)
	}
	if err := tb.HistoryErr(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "1 ban histories") {
		t.Errorf("HistoryErr = %v, want one history reported corrupt", err)
	}
	if n := tb.BanCount("sshd", netip.MustParsePrefix("10.0.1.7/32"), t0.Add(-time.Hour)); n != 1 {
		t.Errorf("BanCount of a sound history = %d, want 1", n)
	}
}
