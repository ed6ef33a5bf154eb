package journal

import (
	"testing"
	"time"
)

func TestUnitName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sshd", "sshd.service"},
		{"sshd.service", "sshd.service"},
		{"ssh.socket", "ssh.socket"},
		{"session-1.scope", "session-1.scope"},
		{"foo.bar", "foo.bar.service"},
		{"nginx@web.service", "nginx@web.service"},
	} {
		if got := UnitName(tc.in); got != tc.want {
			t.Errorf("UnitName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCursorTime(t *testing.T) {
	for _, tc := range []struct {
		cursor string
		want   time.Time
		ok     bool
	}{
		{"s=949e68735d264306afa7b76aed7aac6c;i=15c;b=3bed15bef68e4a3b85356fd70b6aeec2;m=7dd99ff9;t=660e203079f5c;x=4de3532e23875b58",
			time.UnixMicro(0x660e203079f5c), true},
		{"t=0", time.UnixMicro(0), true},
		{"s=1;i=2", time.Time{}, false},
		{"t=zz", time.Time{}, false},
		{"", time.Time{}, false},
	} {
		got, err := CursorTime(tc.cursor)
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("CursorTime(%q) = %v, %v; want %v, ok=%v", tc.cursor, got, err, tc.want, tc.ok)
		}
	}
}
