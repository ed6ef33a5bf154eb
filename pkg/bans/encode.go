package bans

import (
	"encoding/json"
	"net/netip"
	"time"
	"unicode/utf8"
)

// The table stores bans and histories as JSON. A flood commits thousands
// of them on the ban path, where encoding/json's reflection was most of
// the commit's CPU; these appenders write the very bytes json.Marshal
// writes for the same values (encode_test.go compares them), and fall back
// to json.Marshal for times outside what they handle.

// historyRecord is a prefix's ban history as stored.
type historyRecord struct {
	Jail   string       `json:"jail"`
	Prefix netip.Prefix `json:"prefix"`
	Starts []time.Time  `json:"starts"`
}

// encodeBan returns b as JSON.
func encodeBan(b Ban) ([]byte, error) {
	if !jsonTimeOK(b.Start) || !jsonTimeOK(b.Expires) {
		return json.Marshal(b)
	}
	dst := make([]byte, 0, 128+len(b.Reason))
	dst = append(dst, `{"jail":`...)
	dst = appendJSONString(dst, b.Jail)
	dst = append(dst, `,"prefix":`...)
	dst = appendJSONPrefix(dst, b.Prefix)
	dst = append(dst, `,"start":`...)
	dst = appendJSONTime(dst, b.Start)
	if !b.Expires.IsZero() {
		dst = append(dst, `,"expires":`...)
		dst = appendJSONTime(dst, b.Expires)
	}
	if b.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = appendJSONString(dst, b.Reason)
	}
	return append(dst, '}'), nil
}

// encodeHistory returns h as JSON.
func encodeHistory(h historyRecord) ([]byte, error) {
	for _, s := range h.Starts {
		if !jsonTimeOK(s) {
			return json.Marshal(h)
		}
	}
	dst := make([]byte, 0, 64+40*len(h.Starts))
	dst = append(dst, `{"jail":`...)
	dst = appendJSONString(dst, h.Jail)
	dst = append(dst, `,"prefix":`...)
	dst = appendJSONPrefix(dst, h.Prefix)
	dst = append(dst, `,"starts":`...)
	if h.Starts == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, s := range h.Starts {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONTime(dst, s)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), nil
}

// jsonTimeOK reports whether time.Time.MarshalJSON accepts t and writes
// what AppendFormat(RFC3339Nano) writes: a year in 0–9999 and a zone
// offset of whole minutes under 24 hours.
func jsonTimeOK(t time.Time) bool {
	y := t.Year()
	_, off := t.Zone()
	return y >= 0 && y <= 9999 && off%60 == 0 && off > -24*3600 && off < 24*3600
}

// appendJSONTime is time.Time.MarshalJSON for a time jsonTimeOK accepts.
func appendJSONTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendJSONPrefix is netip.Prefix.MarshalText as a JSON string ("" for
// the zero Prefix).
func appendJSONPrefix(dst []byte, p netip.Prefix) []byte {
	dst = append(dst, '"')
	if p.IsValid() {
		dst = p.AppendTo(dst)
	}
	return append(dst, '"')
}

// appendJSONString appends s as encoding/json does: HTML-safe escapes for
// <, > and &, \u2028 and \u2029 escaped, invalid UTF-8 as \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
