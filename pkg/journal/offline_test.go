package journal

import (
	"strings"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Entry
		anyTime bool // syslog without a year: only check that a time was set
		err     string
	}{
		{name: "bare", line: "Failed password for root from 198.51.100.2 port 1 ssh2",
			want: Entry{Message: "Failed password for root from 198.51.100.2 port 1 ssh2"}},
		{name: "bare with CR", line: "Invalid user x from 198.51.100.2 port 1\r",
			want: Entry{Message: "Invalid user x from 198.51.100.2 port 1"}},
		{name: "rfc3164", line: "Nov 22 10:00:00 srv sshd[123]: Invalid user x from 198.51.100.2 port 1",
			want: Entry{Identifier: "sshd", PID: 123, Message: "Invalid user x from 198.51.100.2 port 1"}, anyTime: true},
		{name: "rfc3164 padded day, no pid", line: "Mar  2 01:02:03 srv postfix/smtpd: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: authentication failure",
			want: Entry{Identifier: "postfix/smtpd", Message: "warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: authentication failure"}, anyTime: true},
		{name: "rfc3339", line: "2025-03-01T10:00:00.123456+00:00 srv sshd[9]: Failed password for root from 2001:db8::2 port 2 ssh2",
			want: Entry{Identifier: "sshd", PID: 9, Message: "Failed password for root from 2001:db8::2 port 2 ssh2",
				Time: time.Date(2025, 3, 1, 10, 0, 0, 123456000, time.UTC)}},
		{name: "month word but not syslog", line: "May I come in?", want: Entry{Message: "May I come in?"}},
		{name: "json", line: `{"__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1740823200000000","_SYSTEMD_UNIT":"sshd.service","SYSLOG_IDENTIFIER":"sshd","_PID":"42","MESSAGE":"Failed password for root from 198.51.100.2 port 1 ssh2"}`,
			want: Entry{Unit: "sshd.service", Identifier: "sshd", PID: 42, Cursor: "s=abc;i=1", Message: "Failed password for root from 198.51.100.2 port 1 ssh2",
				Time: time.UnixMicro(1740823200000000)}},
		{name: "json binary message", line: `{"MESSAGE":[104,105,255]}`, want: Entry{Message: "hi\xff"}},
		{name: "json without message", line: `{"_PID":"1"}`, err: "no MESSAGE"},
		{name: "broken json", line: `{"MESSAGE":`, err: "parsing journal JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLine(tc.line)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.anyTime {
				if got.Time.IsZero() {
					t.Errorf("no time parsed")
				}
				got.Time = time.Time{}
			}
			if !got.Time.Equal(tc.want.Time) {
				t.Errorf("time %v, want %v", got.Time, tc.want.Time)
			}
			got.Time, tc.want.Time = time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
