package bans

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// A state file can be damaged behind the daemon's back: a full or failing
// disk, a crash of the file system, a careless edit. bbolt then panics
// (a truncated file: "invalid freelist page"; random bytes in a page:
// "assertion failed") or, for an empty file, silently starts a new
// database. Open checks the file before trusting it and reports every kind
// as ErrCorrupt; OpenRecovering moves such a file aside and starts afresh.

// ErrCorrupt marks a state file that is not a sound ban database.
var ErrCorrupt = errors.New("the ban database is corrupt")

// Recovery tells what OpenRecovering found and did.
type Recovery struct {
	// Cause is Open's error on the broken file (it wraps ErrCorrupt).
	Cause error
	// MovedTo is where the broken file now is.
	MovedTo string
}

// OpenRecovering is Open, except that a corrupt file (ErrCorrupt) is moved
// aside to path.corrupt-<UTC time> and a new, empty table is created in
// its place; the Recovery says so (nil when the file was sound or did not
// exist). The caller should say so loudly and fill the table from what
// the kernel still holds. Any other error (another daemon holding the
// file, a file it cannot move) is returned as is.
func OpenRecovering(path string) (*Table, *Recovery, error) {
	t, err := Open(path)
	if err == nil || !errors.Is(err, ErrCorrupt) {
		return t, nil, err
	}
	r := &Recovery{Cause: err, MovedTo: path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000Z")}
	if rerr := os.Rename(path, r.MovedTo); rerr != nil {
		return nil, nil, fmt.Errorf("%w; moving it aside: %v", err, rerr)
	}
	t, err = Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("creating a new ban database after moving the corrupt one to %s: %w", r.MovedTo, err)
	}
	return t, r, nil
}

// openBolt opens the bbolt file at path. An existing file is first opened
// read-only and checked: every page it uses lies inside the file, and
// bbolt's own consistency check passes. (Opened for writing, bbolt reads
// the free list at once and panics on a bad one while holding the file's
// lock, which nothing could then release.) Faults and panics are
// ErrCorrupt.
func openBolt(path string) (db *bolt.DB, err error) {
	defer recoverCorrupt(&err)
	defer faultsPanic()()
	if _, err := os.Stat(path); err == nil {
		ro, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			return nil, openError(path, err)
		}
		err = check(ro, path)
		closeQuietly(ro)
		if err != nil {
			return nil, fmt.Errorf("opening ban database %s: %w: %v", path, ErrCorrupt, err)
		}
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, openError(path, err)
	}
	return db, nil
}

// openError says why bbolt could not open path.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("opening ban database %s: another jailkeeper holds it", path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return fmt.Errorf("opening ban database %s: %w: %v", path, ErrCorrupt, err)
	}
	return fmt.Errorf("opening ban database %s: %w", path, err)
}

// check verifies that the pages the database uses are all inside the file
// (bbolt maps beyond its end, and a truncated file would fault there, in
// the checker's goroutine where nothing can recover), then runs bbolt's
// consistency check (which recovers its own panics).
func check(db *bolt.DB, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("the file is %d bytes, its pages reach to %d: truncated", fi.Size(), tx.Size())
		}
		var errs []error
		for err := range tx.Check() {
			if len(errs) < 3 {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

// recoverCorrupt, deferred, turns a panic of the deferring function into
// ErrCorrupt; with faultsPanic deferred after it, a memory fault in a
// mapped page too.
func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %v", ErrCorrupt, r)
	}
}

// faultsPanic makes memory faults of the calling goroutine recoverable
// panics, until the function it returns runs.
func faultsPanic() func() {
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}

// closeQuietly closes a database found broken; closing may fail or panic
// too, and nothing is left to save.
func closeQuietly(db *bolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}
