package testbed

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// Outcome classifies one ssh attempt as the attacker sees it.
type Outcome string

// Outcomes of an ssh attempt.
const (
	Denied  Outcome = "Permission denied"  // reached sshd, authentication failed
	Refused Outcome = "Connection refused" // TCP reset: banned (or nothing listening)
	Timeout Outcome = "Timed out"          // no answer at all
	Other   Outcome = "Other"              // anything else (see Attempt.Output)
)

// Attempt is the result of one ssh login attempt.
type Attempt struct {
	Outcome Outcome
	Output  string
	Took    time.Duration
}

// classify maps ssh's output to an Outcome.
func classify(out string, timedOut bool) Outcome {
	switch {
	case strings.Contains(out, "Permission denied"):
		return Denied
	case strings.Contains(out, "Connection refused"):
		return Refused
	case timedOut, strings.Contains(out, "timed out"):
		return Timeout
	}
	return Other
}

// SSHAttempt tries `ssh -o BatchMode=yes nobody@ADDR` from the attacker
// namespace, binding to src when it is not empty (an address of the
// attacker's veth, e.g. 198.51.100.3 added with AddAttackerAddr). A
// BatchMode client offers no password, so against a running sshd it fails
// with "Permission denied" and sshd logs "Connection closed by
// authenticating user nobody … [preauth]"; against a banned source the
// REJECT rule answers "Connection refused".
func (h *Hosts) SSHAttempt(addr, src string) Attempt {
	args := []string{"netns", "exec", h.Atk, "ssh",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=3",
		"-o", "LogLevel=ERROR",
	}
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() && !a.Is4In6() {
		args = append(args, "-6")
	}
	if src != "" {
		args = append(args, "-b", src)
	}
	args = append(args, "nobody@"+addr, "true")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	out, _ := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	took := time.Since(start)
	s := strings.TrimSpace(string(out))
	return Attempt{Outcome: classify(s, ctx.Err() != nil), Output: s, Took: took}
}
