package jails

// Regex fragments shared by the sshd filter.
const (
	sshPort     = `(?: port <PORT>)?`
	sshPreauth  = `(?: \[preauth\])?`
	sshFailUser = `(?:invalid user |illegal user )?<USER>`
)

func init() {
	builtins["sshd"] = builtinFilter{
		def: FilterDef{
			Units: []string{"ssh.service", "sshd.service"},
			FailRegex: []string{
				`^(?:error: )?Failed (?:password|keyboard-interactive/pam|keyboard-interactive|none|hostbased|gssapi-with-mic) for ` + sshFailUser + ` from <HOST>` + sshPort + `(?: ssh2)?` + sshPreauth + `$`,
				`^(?:Invalid|Illegal) user <USER> from <HOST>` + sshPort + `$`,
				`^User <USER> from <HOST> not allowed because (?:not listed in AllowUsers|listed in DenyUsers|not in any group|a group is listed in DenyGroups|none of user's groups are listed in AllowGroups)$`,
				`^(?:error: )?maximum authentication attempts exceeded for ` + sshFailUser + ` from <HOST>` + sshPort + `(?: ssh2)?` + sshPreauth + `$`,
				`^(?:Connection (?:closed|reset) by|Disconnected from) (?:authenticating|invalid) user <USER> <HOST>` + sshPort + sshPreauth + `$`,
				`^Disconnecting (?:authenticating|invalid) user <USER> <HOST>` + sshPort + `: Too many authentication failures` + sshPreauth + `$`,
				`^(?:error: )?PAM: (?:Authentication failure|User not known to the underlying authentication module) for (?:illegal user )?<USER> from <HOST>$`,
				`^(?:error: )?Received disconnect from <HOST>` + sshPort + `:\s*3: \S+: Auth (?:fail|cancel)`,
				`^ROOT LOGIN REFUSED FROM <HOST>` + sshPort + `$`,
				`^refused connect from \S+ \(<HOST>\)$`,
			},
			IgnoreRegex: []string{},
		},
		modes: map[string][]string{
			"aggressive": {
				`^Did not receive identification string from <HOST>` + sshPort + `$`,
				`^Unable to negotiate with <HOST>` + sshPort + `: no matching [a-z ]+ found`,
				`^(?:error: )?banner exchange: Connection from <HOST>` + sshPort + `: (?:invalid format|could not read protocol version|Connection timed out|Connection reset by peer)`,
				`^(?:error: )?kex_exchange_identification: Connection from <HOST>` + sshPort + `: `,
				`^Bad protocol version identification '.*' from <HOST>` + sshPort + `$`,
				`^Connection (?:closed|reset) by <HOST>` + sshPort + sshPreauth + `$`,
				`^Received disconnect from <HOST>` + sshPort + `:\s*14: No (?:supported|more) authentication methods available` + sshPreauth + `$`,
				`^(?:fatal: )?Timeout before authentication for <HOST>` + sshPort + `$`,
				`^(?:error: )?ssh_dispatch_run_fatal: Connection from <HOST>` + sshPort + `: `,
				`^(?:error: )?Protocol major versions differ for <HOST>` + sshPort + `: `,
				`^Failed publickey for ` + sshFailUser + ` from <HOST>` + sshPort + ` ssh2(?:: [A-Z0-9-]+ (?:SHA256|MD5):\S+)?$`,
				`^reverse mapping checking getaddrinfo for \S+ \[<HOST>\] failed(?: - POSSIBLE BREAK-IN ATTEMPT!)?$`,
				`^Address <HOST> maps to \S+, but this does not map back to the address`,
			},
		},
	}
}
