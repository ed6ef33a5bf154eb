package jails

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// FuzzHandle drives the journal-entry path: any MESSAGE of sshd.service
// through the built-in sshd filter and the tracker (maxretry 1, so every
// match decides). It must not panic, and a decision names an address that
// is written in the message (user-controlled text cannot make it up).
// Seeds: testdata/fuzz/FuzzHandle and the lines below.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		"Failed password for root from 203.0.113.7 port 4711 ssh2",
		"Failed password for invalid user baduser from 2001:db8::2 port 47350 ssh2",
		"Invalid user root from 203.0.113.9 from 198.51.100.1 port 22",
		"Connection closed by authenticating user nobody 198.51.100.2 port 47338 [preauth]",
		"Failed password for root from 0.0.0.0 port 1 ssh2",
		"Failed password for root from ::ffff:203.0.113.7 port 1 ssh2",
		"Failed password for root from fe80::1%eth0 port 1 ssh2",
		"\xff\xfe Failed password",
	} {
		f.Add(s)
	}
	def, err := Builtin("sshd", "")
	if err != nil {
		f.Fatal(err)
	}
	flt, err := Compile(def)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		e, err := NewEngine([]Jail{{Name: "sshd", Filter: flt, Units: []string{"sshd.service"},
			MaxRetry: 1, FindTime: time.Minute, BanTime: time.Hour, IPv6Prefix: 128}}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range e.Handle(journal.Entry{Unit: "sshd.service", Message: msg, Time: time.Unix(1900000000, 0)}) {
			if !d.Prefix.IsValid() {
				t.Fatalf("%q decided an invalid prefix", msg)
			}
			if !written(msg, d.Prefix.Addr()) {
				t.Fatalf("%q decided %s, which it does not contain", msg, d.Prefix)
			}
		}
	})
}

// written reports whether a is written in msg: as one maximal run of
// address characters (so not a piece of a longer one) that parses to it.
func written(msg string, a netip.Addr) bool {
	isAddrChar := func(r rune) bool {
		return r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == ':' || r == '.'
	}
	for _, tok := range strings.FieldsFunc(msg, func(r rune) bool { return !isAddrChar(r) }) {
		for _, cand := range []string{tok, strings.TrimRight(tok, ".:")} {
			if p, err := netip.ParseAddr(cand); err == nil && p.Unmap() == a {
				return true
			}
		}
	}
	return false
}
