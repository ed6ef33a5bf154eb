package jails

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// sshdMix is a realistic sshd.service journal under a brute force:
// about 70 % benign lines, 30 % failures.
func sshdMix() []string {
	var lines []string
	for i := 0; i < 100; i++ {
		ip := fmt.Sprintf("203.0.113.%d", i%250)
		port := 40000 + i
		// benign (7 of 10)
		lines = append(lines,
			fmt.Sprintf("Accepted publickey for deploy from 198.51.100.%d port %d ssh2: ED25519 SHA256:7b3uJcY0X5rpWq2lbgXbWwWIwWi3CU3Qs9X7fN2cVvA", i%200, port),
			"pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0)",
			fmt.Sprintf("Received disconnect from %s port %d:11: Bye Bye [preauth]", ip, port),
			fmt.Sprintf("Disconnected from user deploy 198.51.100.%d port %d", i%200, port),
			"pam_unix(sshd:session): session closed for user deploy",
			fmt.Sprintf("Connection closed by %s port %d [preauth]", ip, port),
			fmt.Sprintf("Starting session: command for deploy from 198.51.100.%d port %d id 0", i%200, port),
		)
		// failures (3 of 10)
		lines = append(lines,
			fmt.Sprintf("Invalid user admin%d from %s port %d", i, ip, port),
			fmt.Sprintf("Failed password for invalid user admin%d from %s port %d ssh2", i, ip, port),
			fmt.Sprintf("Connection closed by invalid user admin%d %s port %d [preauth]", i, ip, port),
		)
	}
	return lines
}

func BenchmarkSSHDFilter(b *testing.B) {
	f := sshdFilter(b, "")
	lines := sshdMix()
	b.ReportAllocs()
	b.ResetTimer()
	matched := 0
	for i := 0; i < b.N; i++ {
		if _, ok := f.Match(lines[i%len(lines)]); ok {
			matched++
		}
	}
	if b.N >= len(lines) && matched == 0 {
		b.Fatal("nothing matched")
	}
}

func BenchmarkSSHDFilterBenignOnly(b *testing.B) {
	f := sshdFilter(b, "")
	var lines []string
	for i, l := range sshdMix() {
		if i%10 < 7 {
			lines = append(lines, l)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Match(lines[i%len(lines)])
	}
}

func BenchmarkSSHDFilterFailureOnly(b *testing.B) {
	f := sshdFilter(b, "")
	var lines []string
	for i, l := range sshdMix() {
		if i%10 >= 7 {
			lines = append(lines, l)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := f.Match(lines[i%len(lines)]); !ok {
			b.Fatalf("%q did not match", lines[i%len(lines)])
		}
	}
}

// BenchmarkBuiltinCorpus runs a few other built-in filters over the lines
// of their corpora (failures, benign and injection lines alike).
func BenchmarkBuiltinCorpus(b *testing.B) {
	for _, name := range []string{"postfix", "dovecot", "apache-auth", "nginx-http-auth"} {
		b.Run(name, func(b *testing.B) {
			def, err := Builtin(name, "")
			if err != nil {
				b.Fatal(err)
			}
			f, err := Compile(def)
			if err != nil {
				b.Fatal(err)
			}
			cases, err := readCorpus("testdata/" + name + ".txt")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f.Match(cases[i%len(cases)].msg)
			}
		})
	}
}

func BenchmarkSSHDFilterAggressive(b *testing.B) {
	f := sshdFilter(b, "aggressive")
	lines := sshdMix()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Match(lines[i%len(lines)])
	}
}

// BenchmarkEngineHandle measures the whole path of one entry: routing,
// filter, whitelist, tracker.
func BenchmarkEngineHandle(b *testing.B) {
	e, err := NewEngine([]Jail{{Name: "sshd", Filter: sshdFilter(b, ""), MaxRetry: 5, FindTime: 10 * time.Minute, BanTime: time.Hour}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	lines := sshdMix()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Handle(entry(time.Duration(i), "%s", lines[i%len(lines)]))
	}
}

// BenchmarkEngineHandleContext is BenchmarkEngineHandle with the PIDs the
// live reader gives (one process per connection of 10 lines, each opened
// by sshd's VERBOSE "Connection from" line), so that the sshd filter's
// per-process context is kept and looked up.
func BenchmarkEngineHandleContext(b *testing.B) {
	e, err := NewEngine([]Jail{{Name: "sshd", Filter: sshdFilter(b, ""), MaxRetry: 5, FindTime: 10 * time.Minute, BanTime: time.Hour}}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	var ens []journal.Entry
	for i, l := range sshdMix() {
		pid := uint32(1000 + i/10)
		if i%10 == 0 {
			ens = append(ens, journal.Entry{Unit: "ssh.service", PID: pid, Message: fmt.Sprintf("Connection from 203.0.113.%d port %d on 198.51.100.1 port 22", i%250, 40000+i)})
		}
		ens = append(ens, journal.Entry{Unit: "ssh.service", PID: pid, Message: l})
	}
	t0 := time.Unix(1_700_000_000, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		en := ens[i%len(ens)]
		en.Time = t0.Add(time.Duration(i))
		e.Handle(en)
	}
}

// TestTrackerBytesPerAddress measures the heap cost of one tracked address
// (maxretry 5) and checks it stays within the budget stated in the docs.
func TestTrackerBytesPerAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100k entries")
	}
	const n = 100_000
	perAddr := measureTracker(n)
	t.Logf("tracker: %.0f bytes per tracked address (maxretry 5, %d addresses); node struct %d bytes", perAddr, n, unsafe.Sizeof(lruNode[netip.Prefix, trackEntry]{}))
	if perAddr > 400 {
		t.Errorf("%.0f bytes per tracked address, budget 400", perAddr)
	}
}

// hostileSSHD are lines an attacker can make sshd log (the user name is
// theirs) that make a backtracking matcher work hard.
func hostileSSHD() []string {
	return []string{
		"Invalid user " + strings.Repeat("a from 1.2.3.4 port 1 x", 200) + " from 203.0.113.9 port 22",
		"Invalid user " + strings.Repeat(" from ", 2000) + "203.0.113.9",
		"Failed password for invalid user " + strings.Repeat("invalid user  from ::1:2:3:4:5:6 ", 100) + "from 203.0.113.9 port 22 ssh2",
		"Connection closed by invalid user " + strings.Repeat("1.2.3.4 ", 500) + "x",
		"Disconnecting invalid user " + strings.Repeat("2001:db8::1 port 1: ", 300),
	}
}

func BenchmarkSSHDFilterHostile(b *testing.B) {
	f := sshdFilter(b, "")
	lines := hostileSSHD()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Match(lines[i%len(lines)])
	}
}
