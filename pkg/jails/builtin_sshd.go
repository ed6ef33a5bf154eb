package jails

// Regex fragments shared by the sshd filter.
//
// sshd cuts a requested user name at the first ':' (the rest is a BSD auth
// style) before it logs it, so a user name sshd writes never contains ':'.
// sshFailUser relies on that where client-written text may follow the
// address too (the auth info after "ssh2: " of a hostbased failure names
// the client's user and host): the user cannot run past the first ':', so
// the address found is the one right after the user, before any such text.
// Only one split of such a line matches (after an address inside the user
// comes more of the user, never ':' or the end), so the user may be lazy,
// which is faster than greedy here.
const (
	sshPort     = `(?: port <PORT>)?`
	sshPreauth  = `(?: \[preauth\])?`
	sshUser     = `(?:invalid user |illegal user )?<USER>`
	sshFailUser = `(?:invalid user |illegal user )?(?P<user>[^:]*?)`
	// sshAuthInfo is what may follow "from H port P" in a Failed line:
	// the protocol, then auth info (a key type and fingerprint, the client
	// user and host of hostbased). The auth info comes only after the
	// protocol's ": ", so it cannot start inside a user name, nor right
	// after a piece of a longer run of address characters (":::").
	sshAuthInfo = `(?: ssh[12](?:: .*)?)?`
	// sshSolaris is the message-ID tag Solaris' syslog puts before a message.
	sshSolaris = `\[ID [0-9]+ [a-z]+\.[a-z]+\] `
	// sshMethod is every authentication method but publickey.
	sshMethod = `(?:password|keyboard-interactive(?:/[a-z]+)?|none|hostbased|gssapi-with-mic|gssapi-keyex|unknown)`
)

func init() {
	builtins["sshd"] = builtinFilter{
		def: FilterDef{
			Units: []string{"ssh.service", "sshd.service"},
			FailRegex: []string{
				// Failed <method> for [invalid user] U from H port P ssh2[: info]
				// (publickey only for an invalid user: an agent offering a
				// valid user's keys one by one fails all but one).
				`^(?:error: )?Failed ` + sshMethod + ` for ` + sshFailUser + ` from <HOST>` + sshPort + sshAuthInfo + `$`,
				`^` + sshSolaris + `Failed ` + sshMethod + ` for ` + sshFailUser + ` from <HOST>` + sshPort + sshAuthInfo + `$`,
				`^(?:error: )?Failed publickey for (?:invalid|illegal) user (?P<user>[^:]*?) from <HOST>` + sshPort + sshAuthInfo + `$`,
				`^(?:Invalid|Illegal) user <USER> from <HOST>` + sshPort + sshPreauth + `$`,
				`^User <USER> from <HOST> not allowed because (?:not listed in AllowUsers|listed in DenyUsers|not in any group|a group is listed in DenyGroups|none of user's groups are listed in AllowGroups)$`,
				`^(?:error: )?maximum authentication attempts exceeded for ` + sshUser + ` from <HOST>` + sshPort + `(?: ssh2)?` + sshPreauth + `$`,
				`^Connection (?:closed|reset) by (?:authenticating|invalid) user <USER> <HOST>` + sshPort + sshPreauth + `$`,
				`^Disconnecting (?:authenticating|invalid) user <USER> <HOST>` + sshPort + `: Too many authentication failures` + sshPreauth + `$`,
				// The old and new (user, service) after "not allowed: " are
				// client-written; the user before the address has no ':'.
				`^Disconnecting (?:authenticating |invalid )?user (?P<user>[^:]*?) <HOST> port <PORT>: Change of username or service not allowed: .*$`,
				`^(?:error: )?PAM: (?:[Aa]uthentication (?:failure|error)|User not known to the underlying authentication module) for (?:illegal user )?<USER> from <HOST>(?: via \S+)? ?$`,
				// The text after "3: " is the client's; the address comes first.
				`^(?:error: )?Received disconnect from <HOST>` + sshPort + `: ?3: .*: Auth (?:fail|cancel)`,
				`^ROOT LOGIN REFUSED FROM <HOST>` + sshPort + sshPreauth + `$`,
				`^refused connect from \S+ \(<HOST>\)$`,
				// Failures without an address: the process's context has it.
				`^<CTXHOST>Disconnecting: Too many authentication failures(?: for (?:invalid user |illegal user )?(?P<user>.*?))?` + sshPreauth + `$`,
				`^<CTXHOST>User <USER> not allowed because account is locked$`,
				`^<CTXHOST>input_userauth_request: (?:invalid|illegal) user <USER>` + sshPreauth + `$`,
			},
			IgnoreRegex: []string{},
			// Lines sshd writes with the client's address, which the
			// failures below that name none take it from (see FilterDef).
			// Each is sshd's own text up to the address.
			Context:    sshContext,
			ContextEnd: sshContextEnd,
			// A probe's line is the last its per-connection process
			// writes, and journald may handle it after the process has
			// gone, without _SYSTEMD_UNIT. sshd (and OpenSSH 9.8's
			// sshd-session) runs as root: such entries are read when
			// their kernel-supplied _UID is 0 and their identifier is
			// sshd's, which no unprivileged user can send.
			Unitless: []UnitlessSender{{Identifier: "sshd", UID: 0}, {Identifier: "sshd-session", UID: 0}},
		},
		modes: map[string][]string{
			"ddos":       sshDDoS,
			"extra":      sshExtra,
			"aggressive": append(append([]string(nil), sshDDoS...), sshExtra...),
		},
	}
}

// sshDDoS are the connections that never reach authentication: scanners,
// floods and probes (mode ddos, part of aggressive).
var sshDDoS = []string{
	`^Did not receive identification string from <HOST>` + sshPort + `$`,
	`^Bad protocol version identification '.*' from <HOST>` + sshPort + `$`,
	`^(?:error: )?banner exchange: Connection from <HOST>` + sshPort + `: (?:invalid format|could not read protocol version|Connection timed out|Connection reset by peer)`,
	`^(?:error: )?kex_exchange_identification: Connection from <HOST>` + sshPort + `: `,
	`^(?:error: )?ssh_dispatch_run_fatal: Connection from <HOST>` + sshPort + `: `,
	`^(?:error: )?Protocol major versions differ for <HOST>` + sshPort + `: `,
	// Only with [preauth]: without it, the same lines end a session normally.
	`^Connection (?:closed|reset) by <HOST>` + sshPort + ` \[preauth\]$`,
	`^Disconnected from <HOST>` + sshPort + ` \[preauth\]$`,
	// OpenSSH before 9.8 (the session process), and 9.8's listener.
	`^(?:fatal: )?Timeout before authentication for (?:connection from )?<HOST>` + sshPort + `(?: to \S+, pid = [0-9]+)?$`,
	// OpenSSH ≥ 9.8 PerSourcePenalties: the listener refuses a penalised source.
	`^drop connection #[0-9]+ from \[<HOST>\]:<PORT> on \[[0-9A-Fa-f.:%]+\]:[0-9]+ penalty: `,
	// Without an address: the process's context has it.
	`^<CTXHOST>(?:error: )?kex_exchange_identification: (?:client sent invalid protocol identifier|Connection closed by remote host|read: Connection reset by peer)`,
	`^<CTXHOST>fatal: Read from socket failed: Connection reset by peer` + sshPreauth + `$`,
}

// sshExtra are clients that gave up or could not agree on an algorithm
// (mode extra, part of aggressive).
var sshExtra = []string{
	`^(?:error: )?Received disconnect from <HOST>` + sshPort + `: ?14: No (?:supported |more )?authentication methods available` + sshPreauth + `$`,
	`^(?:fatal: )?Unable to negotiate with <HOST>` + sshPort + `: no matching [a-zA-Z ]+ found`,
	`^Disconnected from (?:authenticating|invalid) user <USER> <HOST>` + sshPort + ` \[preauth\]$`,
	// Without an address: the process's context has it.
	`^<CTXHOST>fatal: Unable to negotiate a key exchange method` + sshPreauth + `$`,
	`^<CTXHOST>fatal: no matching [a-z ]+ found: client `,
}

// sshContext are the lines in which sshd names the client of the process
// that writes them: "Connection from" (LogLevel VERBOSE), the ends of a
// connection, a valid user's failed public key (an agent offering keys one
// by one; not a failure by itself), and the "SSH: Server;Ltype: …;Remote:
// H-P;" audit lines of some distributions' sshd. The address is always
// written by sshd before any client-written text.
var sshContext = []string{
	`^Connection from <HOST>(?: port <PORT>(?: on \S+ port [0-9]+(?: rdomain "[^"]*")?)?)?$`,
	`^Connection (?:closed|reset) by <HOST>` + sshPort + sshPreauth + `$`,
	`^Disconnected from <HOST>` + sshPort + sshPreauth + `$`,
	`^(?:error: )?Received disconnect from <HOST>` + sshPort + `: ?[0-9]+: `,
	`^(?:error: )?Failed publickey for ` + sshFailUser + ` from <HOST>` + sshPort + sshAuthInfo + `$`,
	`^SSH: Server;Ltype: [A-Za-z]+;Remote: <HOST>-<PORT>;`,
}

// sshContextEnd are the lines after which a process's connection is over,
// so that a later process with the same PID starts without its context.
var sshContextEnd = []string{
	`^Connection (?:closed|reset) by `,
	`^Disconnected from `,
	`^(?:error: )?Received disconnect from `,
	`^Timeout, client not responding`,
	`^(?:fatal: )?Timeout before authentication`,
	`^pam_unix\(sshd:session\): session closed `,
}
