package jails

import (
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"
)

// sshdInjectionPieces are what a client puts into the fields sshd logs for
// it (user names, service names, hostbased client user and host, disconnect
// texts, offers): fragments of the very messages the filter reads.
var sshdInjectionPieces = []string{
	"x", " ", " from ", "203.0.113.66", "2001:db8::66", " port 1", " port ", " ssh2", " ssh1", ": ", ":",
	" [preauth]", "invalid user ", "authenticating user ", "\"", "'", "(", ")", ",", " -> ", " via ", "198.51.100.66",
	" not allowed because not listed in AllowUsers", ": Too many authentication failures",
	": Change of username or service not allowed: ", ", client user \"", ", client host \"", "RSA SHA256:abc",
	": Auth fail", "3: ", "14: No supported authentication methods available", "[", "]", ":22",
}

// sshdTemplates are failure messages in the exact shape sshd writes them:
// %H is the client's address, %P its port, %U a user name (sshd cuts it at
// the first ':'), %V a valid account (no spaces), %D any client-written
// text.
var sshdTemplates = []string{
	"Invalid user %U from %H port %P",
	"Failed password for invalid user %U from %H port %P ssh2",
	"Failed password for %U from %H port %P ssh2",
	"Failed keyboard-interactive/pam for invalid user %U from %H port %P ssh2",
	"Failed publickey for invalid user %U from %H port %P ssh2: RSA SHA256:v3dpapGleDaUKf4V1vKyR9ZyUgjaJAmoCTcb2PLljI",
	"Failed hostbased for %V from %H port %P ssh2: ED25519 SHA256:abc, client user \"%D\", client host \"%D\"",
	"Connection closed by invalid user %U %H port %P [preauth]",
	"Connection reset by authenticating user %U %H port %P [preauth]",
	"Disconnected from invalid user %U %H port %P [preauth]",
	"Disconnecting invalid user %U %H port %P: Too many authentication failures [preauth]",
	"Disconnecting invalid user %U %H port %P: Change of username or service not allowed: (%U,%D) -> (%D,%D) [preauth]",
	"User %U from %H not allowed because none of user's groups are listed in AllowGroups",
	"error: maximum authentication attempts exceeded for invalid user %U from %H port %P ssh2 [preauth]",
	"error: PAM: Authentication failure for illegal user %U from %H",
	"Received disconnect from %H port %P:3: %D: Auth fail [preauth]",
	"Received disconnect from %H port %P:14: No supported authentication methods available [preauth]",
	"Unable to negotiate with %H port %P: no matching cipher found. Their offer: %D [preauth]",
	"Bad protocol version identification '%D' from %H port %P",
	"banner exchange: Connection from %H port %P: invalid format",
}

func sshdClientText(r *rand.Rand) string {
	var b strings.Builder
	for n := r.Intn(7); n > 0; n-- {
		b.WriteString(sshdInjectionPieces[r.Intn(len(sshdInjectionPieces))])
	}
	return b.String()
}

// TestSSHDInjection fills sshd's message shapes with client-written text
// made of the messages' own fragments: in every mode, a line is either not
// a failure or a failure of the address sshd wrote, never of one inside
// the client's text; in mode aggressive every line is a failure.
func TestSSHDInjection(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	filters := map[string]*Filter{}
	for _, m := range BuiltinModes("sshd") {
		filters[m] = sshdFilter(t, m)
	}
	hosts := []string{"192.0.2.7", "2001:db8:7::7", "::ffff:192.0.2.8"}
	for i := 0; i < 20000; i++ {
		tmpl := sshdTemplates[i%len(sshdTemplates)]
		host := hosts[r.Intn(len(hosts))]
		user, _, _ := strings.Cut(sshdClientText(r), ":")
		valid := strings.ReplaceAll(strings.ReplaceAll(sshdClientText(r), " ", ""), ":", "")
		if valid == "" {
			valid = "dan"
		}
		line := strings.NewReplacer("%H", host, "%P", fmt.Sprint(1024+r.Intn(60000)), "%U", user, "%V", valid).Replace(tmpl)
		for strings.Contains(line, "%D") {
			line = strings.Replace(line, "%D", sshdClientText(r), 1)
		}
		want := netip.MustParseAddr(host).Unmap()
		for mode, f := range filters {
			m, ok := f.Match(line)
			if ok && m.Addr != want {
				t.Fatalf("mode %s: %q gives %v, want %v (the address sshd wrote)", mode, line, m.Addr, want)
			}
			if !ok && mode == "aggressive" {
				t.Fatalf("mode aggressive: %q is no failure", line)
			}
		}
	}
}
