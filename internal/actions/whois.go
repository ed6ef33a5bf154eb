package actions

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
)

// Whois looks up an address with Debian's whois client (`whois [-h
// SERVER] ADDRESS`), bounded by ctx. The record is cut at 32 KiB.
func Whois(ctx context.Context, server string, addr netip.Addr) (string, error) {
	args := []string{}
	if server != "" {
		args = append(args, "-h", server)
	}
	args = append(args, "--", addr.String())
	cmd := exec.CommandContext(ctx, "whois", args...)
	killGroupOnCancel(cmd)
	var out limitedBuffer
	cmd.Stdout = &out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	rec := out.b.String()
	if len(rec) > 32<<10 {
		rec = rec[:32<<10]
	}
	if err != nil && strings.TrimSpace(rec) == "" {
		if ctx.Err() != nil {
			return "", fmt.Errorf("whois %s: timed out", addr)
		}
		return "", fmt.Errorf("whois %s: %v: %s", addr, err, strings.TrimSpace(stderr.String()))
	}
	// whois exits 1 for some servers' answers that are still records.
	return rec, nil
}

var (
	abuseKeyRE     = regexp.MustCompile(`(?im)^\s*(?:abuse-mailbox|OrgAbuseEmail|RAbuseEmail|abuse-email|e-mail-abuse|abuse-c-email)\s*:\s*(\S+@\S+)\s*$`)
	abuseCommentRE = regexp.MustCompile(`(?im)^%\s*Abuse contact for .* is '(\S+@\S+)'`)
	emailRE        = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
)

// AbuseContact returns the abuse mail address named in a whois record
// (abuse-mailbox, OrgAbuseEmail, RIPE's "% Abuse contact … is '…'", or
// else the first address whose local part contains "abuse"), or "".
func AbuseContact(record string) string {
	for _, re := range []*regexp.Regexp{abuseKeyRE, abuseCommentRE} {
		if m := re.FindStringSubmatch(record); m != nil && emailRE.MatchString(m[1]) {
			return emailRE.FindString(m[1])
		}
	}
	for _, m := range emailRE.FindAllString(record, -1) {
		if local, _, _ := strings.Cut(m, "@"); strings.Contains(strings.ToLower(local), "abuse") {
			return m
		}
	}
	return ""
}
