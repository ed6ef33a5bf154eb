package bans

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// How the table stores a ban and a history. The key of both is the jail's
// name, a NUL byte and the prefix in its text form (198.51.100.7/32); the
// value is a record of format version 1:
//
//	ban:     0x01, flags (bit 0: permanent), start seconds (varint),
//	         start nanoseconds (uvarint), unless permanent the expiry as
//	         seconds after start (varint) and nanoseconds (uvarint), then
//	         the reason's bytes to the end of the record
//	history: 0x01, count (uvarint), per start its seconds (varint) and
//	         nanoseconds (uvarint), oldest first
//
// Records written before version 1 are JSON objects (they start with '{')
// and still load; a table rewrites a record in version 1 whenever it
// writes it again. Version 1 is a third of JSON's size (make bench's 1M
// bans: see docs/bench.md) and needs no reflection to write or read.
const recordV1 = 0x01

const flagPermanent = 0x01

// historyRecord is a prefix's ban history as stored before version 1.
type historyRecord struct {
	Jail   string       `json:"jail"`
	Prefix netip.Prefix `json:"prefix"`
	Starts []time.Time  `json:"starts"`
}

// appendKey appends the key of jail and p.
func appendKey(dst []byte, jail string, p netip.Prefix) []byte {
	dst = append(dst, jail...)
	dst = append(dst, 0)
	return p.AppendTo(dst)
}

// interner hands out one string per distinct value: a table loads a
// million bans of a few jails, most with one of a few reasons.
type interner map[string]string

// get returns b as a string, shared with earlier equal ones (nil: a new
// string each time).
func (in interner) get(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in[string(b)]; ok {
		return s
	}
	if len(in) >= 4096 {
		return string(b)
	}
	s := string(b)
	in[s] = s
	return s
}

// parseKey splits a key into its jail and prefix.
func parseKey(k []byte, strs interner) (string, netip.Prefix, error) {
	i := bytes.IndexByte(k, 0)
	if i < 0 {
		return "", netip.Prefix{}, errors.New("no jail separator in key")
	}
	if p, ok := parsePrefix4(k[i+1:]); ok {
		return strs.get(k[:i]), p, nil
	}
	p, err := netip.ParsePrefix(string(k[i+1:]))
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("key: %w", err)
	}
	return strs.get(k[:i]), p, nil
}

// parsePrefix4 parses an IPv4 prefix as netip.Prefix.AppendTo writes it
// ("198.51.100.0/24": no leading zeros), without netip.ParsePrefix's
// string (a restart parses a million keys). Anything else is not ok: the
// caller parses it with netip.ParsePrefix, which decides what is valid.
func parsePrefix4(b []byte) (netip.Prefix, bool) {
	var a [4]byte
	num := func() (int, bool) {
		n, digits := 0, 0
		for len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
			if digits > 0 && n == 0 {
				return 0, false // a leading zero
			}
			n = n*10 + int(b[0]-'0')
			digits++
			b = b[1:]
			if digits > 3 {
				return 0, false
			}
		}
		return n, digits > 0
	}
	for i := range a {
		n, ok := num()
		if !ok || n > 255 {
			return netip.Prefix{}, false
		}
		a[i] = byte(n)
		sep := byte('.')
		if i == 3 {
			sep = '/'
		}
		if len(b) == 0 || b[0] != sep {
			return netip.Prefix{}, false
		}
		b = b[1:]
	}
	bits, ok := num()
	if !ok || len(b) > 0 || bits > 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(netip.AddrFrom4(a), bits), true
}

func appendTime(dst []byte, sec int64, nsec int) []byte {
	dst = binary.AppendVarint(dst, sec)
	return binary.AppendUvarint(dst, uint64(nsec))
}

// appendBan appends b's record (version 1) to dst.
func appendBan(dst []byte, b Ban) []byte {
	var flags byte
	if b.Permanent() {
		flags |= flagPermanent
	}
	dst = append(dst, recordV1, flags)
	dst = appendTime(dst, b.Start.Unix(), b.Start.Nanosecond())
	if !b.Permanent() {
		dst = appendTime(dst, b.Expires.Unix()-b.Start.Unix(), b.Expires.Nanosecond())
	}
	return append(dst, b.Reason...)
}

// recordReader reads the fields of a version 1 record.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) time(base int64) time.Time {
	if r.err != nil {
		return time.Time{}
	}
	sec, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated record")
		return time.Time{}
	}
	ns, m := binary.Uvarint(r.b[n:])
	if m <= 0 || ns >= 1e9 {
		r.err = errors.New("truncated record")
		return time.Time{}
	}
	r.b = r.b[n+m:]
	return time.Unix(base+sec, int64(ns))
}

// decodeBan reads the ban stored under k with value v, in either format;
// strs (may be nil) shares equal jail names and reasons.
func decodeBan(k, v []byte, strs interner) (Ban, error) {
	if len(v) > 0 && v[0] == '{' {
		var b Ban
		if err := json.Unmarshal(v, &b); err != nil {
			return Ban{}, err
		}
		return b, nil
	}
	if len(v) < 2 || v[0] != recordV1 {
		return Ban{}, unknownRecord(v)
	}
	jail, p, err := parseKey(k, strs)
	if err != nil {
		return Ban{}, err
	}
	b := Ban{Jail: jail, Prefix: p}
	r := recordReader{b: v[2:]}
	b.Start = r.time(0)
	if v[1]&flagPermanent == 0 {
		b.Expires = r.time(b.Start.Unix())
	}
	if r.err != nil {
		return Ban{}, r.err
	}
	b.Reason = strs.get(r.b)
	return b, nil
}

// appendHistory appends the record (version 1) of a history, its starts in
// Unix nanoseconds, to dst.
func appendHistory(dst []byte, starts []int64) []byte {
	dst = append(dst, recordV1)
	dst = binary.AppendUvarint(dst, uint64(len(starts)))
	for _, ns := range starts {
		s := time.Unix(0, ns)
		dst = appendTime(dst, s.Unix(), s.Nanosecond())
	}
	return dst
}

// decodeHistory reads the history stored under k with value v, in either
// format.
func decodeHistory(k, v []byte, strs interner) (string, netip.Prefix, []time.Time, error) {
	if len(v) > 0 && v[0] == '{' {
		var h historyRecord
		if err := json.Unmarshal(v, &h); err != nil {
			return "", netip.Prefix{}, nil, err
		}
		return h.Jail, h.Prefix, h.Starts, nil
	}
	if len(v) < 1 || v[0] != recordV1 {
		return "", netip.Prefix{}, nil, unknownRecord(v)
	}
	jail, p, err := parseKey(k, strs)
	if err != nil {
		return "", netip.Prefix{}, nil, err
	}
	n, m := binary.Uvarint(v[1:])
	if m <= 0 || n > uint64(len(v)) {
		return "", netip.Prefix{}, nil, errors.New("truncated record")
	}
	r := recordReader{b: v[1+m:]}
	starts := make([]time.Time, 0, n)
	for range n {
		starts = append(starts, r.time(0))
	}
	if r.err != nil {
		return "", netip.Prefix{}, nil, r.err
	}
	return jail, p, starts, nil
}

func unknownRecord(v []byte) error {
	if len(v) == 0 {
		return errors.New("empty record")
	}
	return fmt.Errorf("record format %#x unknown (written by a newer jailkeeper?)", v[0])
}
