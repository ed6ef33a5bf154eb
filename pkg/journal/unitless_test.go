package journal

import "testing"

func TestEntryAdopt(t *testing.T) {
	rules := []Unitless{{Unit: "pure-ftpd.service", Identifier: "pure-ftpd", UID: 0}}
	for _, c := range []struct {
		name   string
		in     Entry
		uid    uint32
		hasUID bool
		want   string
	}{
		{"root, no unit", Entry{Identifier: "pure-ftpd"}, 0, true, "pure-ftpd.service"},
		{"another user", Entry{Identifier: "pure-ftpd"}, 1000, true, ""},
		{"no _UID", Entry{Identifier: "pure-ftpd"}, 0, false, ""},
		{"another identifier", Entry{Identifier: "logger"}, 0, true, ""},
		{"a unit of its own", Entry{Identifier: "pure-ftpd", Unit: "cron.service"}, 0, true, "cron.service"},
	} {
		e := c.in
		e.Adopt(c.uid, c.hasUID, rules)
		if e.Unit != c.want {
			t.Errorf("%s: unit %q, want %q", c.name, e.Unit, c.want)
		}
	}
}
