package jails

import (
	"slices"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// The FTP jails read their daemon's entries that journald wrote without
// _SYSTEMD_UNIT, by identifier and _UID 0, as their unit's (the sshd jail
// adds its own two identifiers after them).
func TestFTPUnitless(t *testing.T) {
	var js []Jail
	for _, name := range []string{"vsftpd", "proftpd", "pure-ftpd", "sshd"} {
		def, err := Builtin(name, "")
		if err != nil {
			t.Fatal(err)
		}
		f, err := Compile(def)
		if err != nil {
			t.Fatal(err)
		}
		js = append(js, Jail{Name: name, Filter: f, MaxRetry: 1, FindTime: time.Minute, BanTime: time.Hour})
	}
	e, err := NewEngine(js, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []journal.Unitless{
		{Unit: "vsftpd.service", Identifier: "vsftpd"},
		{Unit: "proftpd.service", Identifier: "proftpd"},
		{Unit: "pure-ftpd.service", Identifier: "pure-ftpd"},
		{Unit: "ssh.service", Identifier: "sshd"},
		{Unit: "ssh.service", Identifier: "sshd-session"},
	}
	if got := e.Unitless(); !slices.Equal(got, want) {
		t.Fatalf("Unitless() = %+v, want %+v", got, want)
	}
	// An adopted entry is routed and counted like one with the unit.
	en := journal.Entry{Identifier: "pure-ftpd", Message: "(?@203.0.113.5) [WARNING] Authentication failed for user [x]"}
	if d := e.Handle(en); len(d) != 0 {
		t.Fatalf("an entry without unit, not adopted, gave %v", d)
	}
	en.Adopt(0, true, e.Unitless())
	if d := e.Handle(en); len(d) != 1 {
		t.Fatalf("the adopted entry gave %v, want one ban (maxretry 1)", d)
	}
}
