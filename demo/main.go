// Command demo is `make demo`: an ssh brute force against a real sshd,
// banned by a real jailkeeper daemon, all inside two network namespaces
// built for the run (with a private journald and a private system bus).
// It prints every attempt and its result, unbans the attacker with the
// README's busctl line, and removes everything it created. It never
// touches the host's own firewall. Run it as root from the source tree:
//
//	sudo go run ./demo [-v]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

func main() {
	verbose := flag.Bool("v", false, "show the test bed's own log lines")
	flag.Parse()
	var log io.Writer = io.Discard
	if *verbose {
		log = os.Stderr
	}
	before, err := testbed.HostFirewall()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: reading the host firewall: %v\n", err)
		os.Exit(1)
	}
	r := testbed.NewRunner("demo", log)
	runErr := r.Run(demo)
	testbed.RemoveBuild()
	after, err := testbed.HostFirewall()
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "demo: reading the host firewall: %v\n", err)
		os.Exit(1)
	case after != before:
		fmt.Fprintf(os.Stderr, "demo: the host's own firewall changed during the demo!\nbefore:\n%s\nafter:\n%s", before, after)
		os.Exit(1)
	case runErr != nil:
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", runErr)
		os.Exit(1)
	}
	fmt.Println("Done. Everything the demo created is gone; the host's own firewall is unchanged (nft ruleset, ipsets).")
}

const maxretry = 3 // as in testbed.SSHJailConfig

func demo(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Fatal("the demo builds network namespaces and needs root: sudo make demo")
	}
	step("Building the bed: namespaces srv (198.51.100.1, 2001:db8::1) and atk (198.51.100.2, 2001:db8::2),")
	fmt.Println("  a private journald, a private system bus, and sshd in srv logging as sshd.service.")
	bed := testbed.NewBed(t)
	h := bed.Hosts
	fmt.Printf("  namespaces %s and %s\n", h.Srv, h.Atk)

	step("Starting jailkeeper in srv with this drop-in:")
	for _, l := range strings.Split(strings.TrimSpace(testbed.SSHJailConfig), "\n") {
		fmt.Println("    " + l)
	}
	d := bed.NewDaemon(t, map[string]string{"10-sshd.yaml": testbed.SSHJailConfig})
	d.Start(t)
	ready := d.WaitReady(t, 30*time.Second)
	fmt.Printf("  READY=1 after %v", ready.At.Sub(d.Started).Round(time.Millisecond))
	if _, st, ok := d.Notify.Find("STATUS="); ok {
		fmt.Printf(" — %s", st)
	}
	fmt.Println()
	for _, v6 := range []bool{false, true} {
		if ok, why := h.SrvLayout(v6); !ok {
			t.Fatalf("layout missing after READY=1: %s", why)
		}
	}
	fmt.Printf("  firewall in srv: INPUT rule 1 jumps to %s (iptables and ip6tables)\n", testbed.Chain)

	attack(t, h, testbed.SrvAddr4, testbed.AtkAddr4, "", 1)
	attack(t, h, testbed.SrvAddr6, testbed.AtkAddr6, "", 1)

	step("A whitelisted attacker address (198.51.100.3) is never banned:")
	h.AddAttackerAddr(t, "198.51.100.3/24")
	for i := 1; i <= 5; i++ {
		a := h.SSHAttempt(testbed.SrvAddr4, "198.51.100.3")
		fmt.Printf("  attempt %d from 198.51.100.3: %s\n", i, a.Outcome)
		if a.Outcome != testbed.Denied {
			t.Errorf("whitelisted 198.51.100.3 got %s: %s", a.Outcome, a.Output)
		}
		time.Sleep(200 * time.Millisecond)
	}

	step("jailkeeper status sshd:")
	cmd := exec.Command(d.Bin, "status", "sshd")
	cmd.Env = append(os.Environ(), bed.Bus.Env())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("jailkeeper status sshd: %v", err)
	}
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("    " + l)
	}

	step("Unbanning the attacker over D-Bus, as root:")
	fmt.Println("  $ busctl call org.jailkeeper /org/jailkeeper org.jailkeeper.Manager1 Unban s " + testbed.AtkAddr4)
	if out, err := bed.Bus.BusCall("Unban", "s", testbed.AtkAddr4); err != nil {
		t.Fatalf("Unban: %v: %s", err, out)
	}
	a := h.SSHAttempt(testbed.SrvAddr4, "")
	fmt.Printf("  next attempt from %s: %s — let in again\n", testbed.AtkAddr4, a.Outcome)
	if a.Outcome != testbed.Denied {
		t.Errorf("after Unban the attacker got %s: %s", a.Outcome, a.Output)
	}

	step("Stopping jailkeeper and removing the namespaces, sshd, bus and journald of the demo.")
	if err := d.Stop(t); err != nil {
		t.Errorf("jailkeeper exit: %v", err)
	}
}

// attack runs the attacker loop from src (empty: the veth's primary
// address, attacker) until three attempts in a row are refused, printing
// each attempt, and checks that the ban came after exactly maxretry
// failures.
func attack(t testing.TB, h *testbed.Hosts, addr, attacker, src string, first int) {
	step(fmt.Sprintf("Attacker %s runs `ssh -o BatchMode=yes nobody@%s` in a loop:", attacker, addr))
	failures, refused := 0, 0
	var bannedAfter int
	var latency time.Duration
	for i := first; refused < 3; i++ {
		if i > first+10 {
			t.Fatalf("no ban after %d attempts", i-first)
		}
		a := h.SSHAttempt(addr, src)
		note := ""
		switch a.Outcome {
		case testbed.Denied:
			failures++
		case testbed.Refused:
			if refused == 0 {
				bannedAfter = failures
				note = fmt.Sprintf(" — banned after exactly %d failures", failures)
				if failures != maxretry {
					note = fmt.Sprintf(" — banned after %d failures, expected %d", failures, maxretry)
					t.Errorf("%s banned after %d failures, want %d", attacker, failures, maxretry)
				}
			}
			refused++
		default:
			t.Fatalf("attempt %d: %s: %s", i, a.Outcome, a.Output)
		}
		fmt.Printf("  attempt %d: %s%s\n", i, a.Outcome, note)
		if a.Outcome == testbed.Denied {
			// Like a patient attacker: give the daemon up to a second to
			// see sshd's log line before trying again.
			end := time.Now()
			for time.Since(end) < time.Second {
				if _, ok := h.SrvBanned(t, attacker); ok {
					latency = time.Since(end)
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	set, _ := h.SrvBanned(t, attacker)
	fmt.Printf("  %s is in kernel set %s (seen %v after failure %d ended)\n", attacker, set, latency.Round(time.Millisecond), bannedAfter)
}

func step(s string) { fmt.Println("\n== " + s) }
