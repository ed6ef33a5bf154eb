package sdjournal

// This file is the thin cgo binding to libsystemd's sd-journal that the
// Reader uses. It is not go-systemd's sdjournal on purpose: the Reader needs
// five fields, the realtime stamp and the cursor of every entry, and
// sdjournal costs one cgo call, one mutex, one C string and one Go string
// per field (GetDataValue scans the entry's items once per field). Here one
// C call per entry advances the read pointer, walks the entry's items once
// (stopping when it has what it needs) and hands back pointers into the
// journal's mmap, which Go copies into a single allocation. The cursor,
// which sd-journal formats with printf, is asked for once per batch, not
// per entry. See bench_test.go for the numbers.
//
// Every method must be called from the goroutine that opened the handle,
// with its OS thread locked: sd-journal objects are bound to one thread.
//
// Build: cgo, a C compiler and libsystemd's headers and libsystemd.so
// (Debian: libsystemd-dev); the binary links libsystemd.so.0.

/*
#cgo LDFLAGS: -lsystemd
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>

typedef struct {
	const char *msg;   size_t msg_len;
	const char *unit;  size_t unit_len;
	const char *ident; size_t ident_len;
	const char *srt;   size_t srt_len;
	const char *uid;   size_t uid_len;
	uint64_t realtime;
	size_t cursor_len;
	char cursor[256];
} jk_entry;

static int jk_open(sd_journal **j, const char *dir) {
	if (dir == NULL) return sd_journal_open(j, SD_JOURNAL_LOCAL_ONLY | SD_JOURNAL_SYSTEM);
	return sd_journal_open_directory(j, dir, 0);
}

#define JK_FIELD(name, dst) \
	if (l > sizeof(name) - 1 && memcmp(d, name, sizeof(name) - 1) == 0 && e->dst == NULL) { \
		e->dst = (const char *)d + sizeof(name) - 1; e->dst##_len = l - (sizeof(name) - 1); continue; }

#define JK_STDOUT "_TRANSPORT=stdout"

// jk_next advances to the next entry and fills e (not its cursor). It
// returns 1 with an entry, 0 at the end of the journal, or a negative
// errno. The field pointers point into the journal's mmap and stay valid
// only until the next call on j.
//
// The walk over the entry's fields (each one a data object to look up in
// the mmap) stops once it has MESSAGE, _SYSTEMD_UNIT, SYSLOG_IDENTIFIER and
// either _SOURCE_REALTIME_TIMESTAMP or _TRANSPORT=stdout (stdout streams
// never carry a source timestamp). _UID is taken when it comes before
// (always, for an entry without _SYSTEMD_UNIT).
static int jk_next(sd_journal *j, jk_entry *e) {
	const void *d;
	size_t l;
	int is_stdout = 0;
	int r = sd_journal_next(j);
	if (r <= 0) return r;
	e->msg = e->unit = e->ident = e->srt = e->uid = NULL;
	e->msg_len = e->unit_len = e->ident_len = e->srt_len = e->uid_len = 0;
	SD_JOURNAL_FOREACH_DATA(j, d, l) {
		if (e->msg && e->unit && e->ident && (e->srt || is_stdout)) break;
		JK_FIELD("MESSAGE=", msg)
		JK_FIELD("_SYSTEMD_UNIT=", unit)
		JK_FIELD("SYSLOG_IDENTIFIER=", ident)
		JK_FIELD("_UID=", uid)
		JK_FIELD("_SOURCE_REALTIME_TIMESTAMP=", srt)
		if (l == sizeof(JK_STDOUT) - 1 && memcmp(d, JK_STDOUT, l) == 0) is_stdout = 1;
	}
	r = sd_journal_get_realtime_usec(j, &e->realtime);
	return r < 0 ? r : 1;
}

// jk_cursor puts the cursor of the current entry into e.
static int jk_cursor(sd_journal *j, jk_entry *e) {
	char *c = NULL;
	int r = sd_journal_get_cursor(j, &c);
	if (r < 0) return r;
	e->cursor_len = strlen(c);
	if (e->cursor_len >= sizeof(e->cursor)) { free(c); return -E2BIG; }
	memcpy(e->cursor, c, e->cursor_len);
	free(c);
	return 0;
}

// jk_seek_cursor positions j on the entry named by cursor, or nearest to
// where it would be. It returns 1 when j is on that very entry, 0 when the
// entry is not there (vacuumed, or it does not match), or a negative errno.
static int jk_seek_cursor(sd_journal *j, const char *cursor) {
	int r = sd_journal_seek_cursor(j, cursor);
	if (r < 0) return r;
	r = sd_journal_next(j);
	if (r <= 0) return r;
	return sd_journal_test_cursor(j, cursor);
}
*/
import "C"

import (
	"fmt"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
	"syscall"
	"time"
	"unsafe"
)

// Results of sdJournal.wait, as sd_journal_wait(3) returns them.
const (
	waitNop        = C.SD_JOURNAL_NOP
	waitAppend     = C.SD_JOURNAL_APPEND
	waitInvalidate = C.SD_JOURNAL_INVALIDATE
)

// sdJournal is one sd_journal handle and the scratch entry it reads into.
type sdJournal struct {
	j        *C.sd_journal
	e        *C.jk_entry // C memory, reused for every entry
	received time.Time   // the receive time of the entry next read last
	uid      uint32      // its _UID, when hasUID
	hasUID   bool
}

func errnoErr(r C.int) error { return syscall.Errno(-r) }

// openJournal opens the local system journal (dir == "") or the journal
// files in dir.
func openJournal(dir string) (*sdJournal, error) {
	var j *C.sd_journal
	var r C.int
	if dir == "" {
		r = C.jk_open(&j, nil)
	} else {
		cdir := C.CString(dir)
		r = C.jk_open(&j, cdir)
		C.free(unsafe.Pointer(cdir))
	}
	if r < 0 {
		if dir == "" {
			dir = "the system journal"
		}
		return nil, fmt.Errorf("opening %s: %w", dir, errnoErr(r))
	}
	e := (*C.jk_entry)(C.calloc(1, C.sizeof_jk_entry))
	return &sdJournal{j: j, e: e}, nil
}

func (s *sdJournal) close() {
	if s.j != nil {
		C.sd_journal_close(s.j)
		C.free(unsafe.Pointer(s.e))
		s.j, s.e = nil, nil
	}
}

// addMatch adds a FIELD=value match; matches on the same field are OR'ed.
func (s *sdJournal) addMatch(m string) error {
	cm := C.CString(m)
	defer C.free(unsafe.Pointer(cm))
	if r := C.sd_journal_add_match(s.j, unsafe.Pointer(cm), C.size_t(len(m))); r < 0 {
		return fmt.Errorf("adding journal match %q: %w", m, errnoErr(r))
	}
	return nil
}

// addDisjunction ORs the matches added so far with those added next.
func (s *sdJournal) addDisjunction() error {
	if r := C.sd_journal_add_disjunction(s.j); r < 0 {
		return fmt.Errorf("adding journal disjunction: %w", errnoErr(r))
	}
	return nil
}

// seekCursor positions the handle on cursor's entry and reports whether
// that entry is there. When it is not (found == false), the handle stands
// on the nearest later entry that matches, or at the end.
func (s *sdJournal) seekCursor(cursor string) (found bool, err error) {
	cc := C.CString(cursor)
	defer C.free(unsafe.Pointer(cc))
	r := C.jk_seek_cursor(s.j, cc)
	if r < 0 {
		return false, fmt.Errorf("seeking to cursor %q: %w", cursor, errnoErr(r))
	}
	return r > 0, nil
}

// seekRealtime positions the handle before the first entry at or after t.
func (s *sdJournal) seekRealtime(t time.Time) error {
	us := t.UnixMicro()
	if us < 0 {
		us = 0
	}
	if r := C.sd_journal_seek_realtime_usec(s.j, C.uint64_t(us)); r < 0 {
		return fmt.Errorf("seeking to %s: %w", t.Format(time.RFC3339Nano), errnoErr(r))
	}
	return nil
}

// wait waits up to d for the journal to change and returns waitNop,
// waitAppend or waitInvalidate.
func (s *sdJournal) wait(d time.Duration) (int, error) {
	r := C.sd_journal_wait(s.j, C.uint64_t(d/time.Microsecond))
	if r < 0 {
		return 0, fmt.Errorf("waiting for journal changes: %w", errnoErr(r))
	}
	return int(r), nil
}

// next advances to the next matching entry and copies it into e, with no
// cursor (e.Cursor = ""; see cursor). It returns false at the end of the
// journal. e's Unit and Identifier strings are reused, not copied again,
// when the new entry's values are the same.
func (s *sdJournal) next(e *journal.Entry) (bool, error) {
	r := C.jk_next(s.j, s.e)
	if r < 0 {
		return false, fmt.Errorf("reading the journal: %w", errnoErr(r))
	}
	if r == 0 {
		return false, nil
	}
	c := s.e
	unit := fieldBytes(c.unit, c.unit_len)
	ident := fieldBytes(c.ident, c.ident_len)
	// One allocation for the strings that differ per entry. Unit and
	// identifier repeat from entry to entry: reuse the previous strings.
	sameUnit := string(unit) == e.Unit
	sameIdent := string(ident) == e.Identifier
	n := int(c.msg_len)
	if !sameUnit {
		n += len(unit)
	}
	if !sameIdent {
		n += len(ident)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, fieldBytes(c.msg, c.msg_len)...)
	if !sameUnit {
		buf = append(buf, unit...)
	}
	if !sameIdent {
		buf = append(buf, ident...)
	}
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
	i := int(c.msg_len)
	e.Message = all[:i]
	e.Cursor = ""
	if !sameUnit {
		e.Unit = all[i : i+len(unit)]
		i += len(unit)
	}
	if !sameIdent {
		e.Identifier = all[i : i+len(ident)]
	}
	uid := fieldBytes(c.uid, c.uid_len)
	v := parseUint(uid)
	s.hasUID = len(uid) > 0 && v <= 1<<32-1 && (v > 0 || string(uid) == "0")
	s.uid = uint32(v)
	s.received = time.UnixMicro(int64(c.realtime))
	e.Time = s.received
	if src := fieldBytes(c.srt, c.srt_len); len(src) > 0 {
		if v := parseUint(src); v > 0 {
			e.Time = time.UnixMicro(int64(v))
		}
	}
	return true, nil
}

// cursor returns the cursor of the entry next read last. sd-journal keeps
// that entry current when a later next finds nothing, so this works after
// the end of the journal too.
func (s *sdJournal) cursor() (string, error) {
	if r := C.jk_cursor(s.j, s.e); r < 0 {
		return "", fmt.Errorf("reading the journal cursor: %w", errnoErr(r))
	}
	return C.GoStringN(&s.e.cursor[0], C.int(s.e.cursor_len)), nil
}

// fieldBytes views a field value inside the journal's mmap; it is valid
// only until the next call on the handle.
func fieldBytes(p *C.char, n C.size_t) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// parseUint parses a decimal number; it returns 0 for anything else.
func parseUint(b []byte) uint64 {
	if len(b) == 0 || len(b) > 19 {
		return 0
	}
	var v uint64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0
		}
		v = v*10 + uint64(ch-'0')
	}
	return v
}
