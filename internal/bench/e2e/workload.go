package main

import (
	"fmt"
	"net/netip"
)

// workload is one generated burst of sshd.service journal messages.
type workload struct {
	msgs     []string
	attack   []netip.Addr // every attacking address, each expected to be banned
	sentinel netip.Addr   // its maxretry-th failure is the burst's last entry
}

// burst describes where a burst's addresses come from, so that the bursts
// of one run never share an attacker.
type burst struct {
	v4       [2]byte    // attackers' IPv4 /16 (198.18.0.0/15 is the benchmarking range)
	v4Third  byte       // first third octet used inside v4
	v6Group  uint16     // attackers' IPv6 /64s are 2001:db8:<v6Group>:<i>::/64
	sentinel netip.Addr // the last entry's address
}

// Lines of one failed connection. Three password tries count three
// failures; the closing line of the same connection (same port, another
// regex) does not count again.
func failedConnection(a netip.Addr, port int, invalid bool) []string {
	if invalid {
		return []string{
			fmt.Sprintf("Invalid user admin from %s port %d", a, port),
			fmt.Sprintf("Failed password for invalid user admin from %s port %d ssh2", a, port),
			fmt.Sprintf("Failed password for invalid user admin from %s port %d ssh2", a, port),
			fmt.Sprintf("Connection closed by invalid user admin %s port %d [preauth]", a, port),
		}
	}
	return []string{
		fmt.Sprintf("Failed password for root from %s port %d ssh2", a, port),
		fmt.Sprintf("Failed password for root from %s port %d ssh2", a, port),
		fmt.Sprintf("Failed password for root from %s port %d ssh2", a, port),
		fmt.Sprintf("Connection closed by authenticating user root %s port %d [preauth]", a, port),
	}
}

// benign returns the i-th ordinary sshd line: logins of legitimate users
// from 192.0.2.0/24 and the session lines around them.
func benign(i int) string {
	a := fmt.Sprintf("192.0.2.%d", 1+i%250)
	port := 20000 + i%40000
	switch i % 8 {
	case 0:
		return fmt.Sprintf("Connection from %s port %d on 198.51.100.1 port 22 rdomain \"\"", a, port)
	case 1:
		return fmt.Sprintf("Accepted publickey for deploy from %s port %d ssh2: ED25519 SHA256:7b3uJcY0X5rpWq2lbgXbWwWIwWi3CU3Qs9X7fN2cVvA", a, port)
	case 2:
		return "pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0)"
	case 3:
		return fmt.Sprintf("Starting session: command for deploy from %s port %d id 0", a, port)
	case 4:
		return fmt.Sprintf("Received disconnect from %s port %d:11: disconnected by user", a, port)
	case 5:
		return fmt.Sprintf("Disconnected from user deploy %s port %d", a, port)
	case 6:
		return "pam_unix(sshd:session): session closed for user deploy"
	default:
		return fmt.Sprintf("Accepted password for backup from %s port %d ssh2", a, port)
	}
}

// makeWorkload builds total entries (plus the sentinel's maxRetry
// failures at the end): 30 % of them failures from nAddrs attackers (one
// in ten of them IPv6, each in its own /64), the rest benign lines. Every
// attacker makes three failed connections of three tries, spread over the
// burst, so each is banned once (at its 5th failure with maxretry 5).
func makeWorkload(total, nAddrs, maxRetry int, b burst) workload {
	w := workload{sentinel: b.sentinel}
	for i := 0; i < nAddrs; i++ {
		var a netip.Addr
		if i%10 == 9 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(b.v6Group >> 8), byte(b.v6Group), byte(i >> 8), byte(i), 15: 1})
		} else {
			a = netip.AddrFrom4([4]byte{b.v4[0], b.v4[1], b.v4Third + byte(i/250), byte(1 + i%250)})
		}
		w.attack = append(w.attack, a)
	}
	// Failure lines, connection by connection, attacker after attacker.
	var fails []string
	for round := 0; ; round++ {
		for i, a := range w.attack {
			fails = append(fails, failedConnection(a, 30000+round*1000+i%1000, (i+round)%3 == 0)...)
		}
		if len(fails) >= total*3/10 {
			break
		}
	}
	fails = fails[:total*3/10]
	w.msgs = make([]string, 0, total+maxRetry)
	f, n := 0, 0
	for i := 0; i < total; i++ {
		if i%10 < 3 && f < len(fails) {
			w.msgs = append(w.msgs, fails[f])
			f++
		} else {
			w.msgs = append(w.msgs, benign(n))
			n++
		}
	}
	for i := 0; i < maxRetry; i++ {
		w.msgs = append(w.msgs, fmt.Sprintf("Failed password for root from %s port %d ssh2", b.sentinel, 60000+i))
	}
	return w
}
