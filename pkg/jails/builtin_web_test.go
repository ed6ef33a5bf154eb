package jails

import (
	"fmt"
	"testing"
)

// nginxMix is a busy nginx.service journal with error_log and access_log
// sent to syslog without ",nohostname": mostly access log lines, a few
// errors, one failed login in ten lines.
func nginxMix() []string {
	var lines []string
	for i := 0; i < 100; i++ {
		ip := fmt.Sprintf("198.51.100.%d", i%200)
		lines = append(lines,
			fmt.Sprintf(`web1 nginx: %s - - [29/Nov/2026:09:39:59 +0000] "GET /assets/app.%d.js HTTP/2.0" 200 51234 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"`, ip, i),
			fmt.Sprintf(`web1 nginx: %s - - [29/Nov/2026:09:39:59 +0000] "GET /index.html HTTP/2.0" 200 8123 "-" "Mozilla/5.0"`, ip),
			fmt.Sprintf(`web1 nginx: %s - alice [29/Nov/2026:09:39:59 +0000] "GET /private/report.pdf HTTP/1.1" 200 90210 "-" "curl/8.5.0"`, ip),
			fmt.Sprintf(`web1 nginx: %s - - [29/Nov/2026:09:39:59 +0000] "POST /api/v1/items HTTP/1.1" 201 77 "-" "python-requests/2.31"`, ip),
			fmt.Sprintf(`web1 nginx: %s - - [29/Nov/2026:09:39:59 +0000] "GET /favicon.ico HTTP/2.0" 404 153 "-" "Mozilla/5.0"`, ip),
			fmt.Sprintf(`web1 nginx: 2026/11/29 09:39:59 [info] 1#1: *%d client %s closed keepalive connection`, i, ip),
			fmt.Sprintf(`web1 nginx: %s - - [29/Nov/2026:09:39:59 +0000] "GET /wp-login.php HTTP/1.1" 404 153 "-" "Mozilla/5.0"`, fmt.Sprintf("203.0.113.%d", i%250)),
			fmt.Sprintf(`web1 nginx: 2026/11/29 09:39:59 [error] 1#1: *%d user "admin%d": password mismatch, client: 203.0.113.%d, server: example.com, request: "GET /private/ HTTP/1.1", host: "example.com"`, i, i, i%250),
			fmt.Sprintf(`web1 nginx: 203.0.113.%d - admin%d [29/Nov/2026:09:39:59 +0000] "GET /private/ HTTP/1.1" 401 179 "-" "curl/8.5.0"`, i%250, i),
			fmt.Sprintf(`web1 nginx: 2026/11/29 09:39:59 [error] 1#1: *%d limiting requests, excess: 1.994 by zone "one", client: 203.0.113.%d, server: , request: "GET /api HTTP/1.1", host: "example.com"`, i, i%250),
		)
	}
	return lines
}

// BenchmarkWebFilters runs each nginx filter over nginxMix; every filter
// of a jail on nginx.service sees every line.
func BenchmarkWebFilters(b *testing.B) {
	for _, name := range []string{"nginx-http-auth", "nginx-limit-req", "nginx-botsearch"} {
		b.Run(name, func(b *testing.B) {
			def, err := Builtin(name, "")
			if err != nil {
				b.Fatal(err)
			}
			f, err := Compile(def)
			if err != nil {
				b.Fatal(err)
			}
			lines := nginxMix()
			matched := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, ok := f.Match(lines[i%len(lines)]); ok {
					matched++
				}
			}
			if b.N >= len(lines) && matched == 0 {
				b.Fatal("nothing matched")
			}
		})
	}
}
