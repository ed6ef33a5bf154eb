package cliflag

import (
	"flag"
	"reflect"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	cases := []struct {
		args     []string
		wantPos  []string
		wantJSON bool
	}{
		{[]string{"sshd", "--json"}, []string{"sshd"}, true},
		{[]string{"--json", "sshd"}, []string{"sshd"}, true},
		{[]string{"sshd"}, []string{"sshd"}, false},
		{[]string{"a", "-json", "b"}, []string{"a", "b"}, true},
		{[]string{"--", "--json"}, []string{"--json"}, false},
		{[]string{"sshd", "-"}, []string{"sshd", "-"}, false},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		j := fs.Bool("json", false, "")
		pos, err := ParseInterspersed(fs, c.args)
		if err != nil || !reflect.DeepEqual(pos, c.wantPos) || *j != c.wantJSON {
			t.Errorf("ParseInterspersed(%q) = %q json=%v err=%v; want %q json=%v", c.args, pos, *j, err, c.wantPos, c.wantJSON)
		}
	}
}
