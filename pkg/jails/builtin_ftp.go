package jails

// The FTP filters: vsftpd, proftpd, pure-ftpd.
//
// One failed login must count once. In the journal, a daemon that checks
// passwords through PAM has two lines for the same failed password: PAM's
// "pam_unix(SERVICE:auth): authentication failure; … rhost=H" (sent to
// the journal by every distribution's default configuration) and, when
// the daemon's own log goes to syslog, its own line. For those the
// filters count PAM's line and leave the daemon's own password-failure
// line to the formats that never share a log with PAM's: vsftpd's
// /var/log/vsftpd.log ("[pid N] [USER] FAIL LOGIN: …") and proftpd's
// SystemLog file ("HOST (NAME[H]): USER …"). The daemon's lines about
// failures PAM never sees (unknown users, root logins, ftpusers, user
// lists) count in every format.
//
// Mode "nopam" is for servers whose wrong passwords leave no pam_unix
// line with the address (proftpd with AuthPAM off or virtual users in an
// AuthUserFile; vsftpd with pam_userdb or another PAM module): it counts
// the daemon's own password-failure line in syslog too. Where pam_unix
// does check the passwords, each wrong password then counts twice.
//
// PAM's line: ruser is the name the client sent. pure-ftpd fills PAM's
// rhost with its own host name, so only its own line counts. A PAM line
// whose ruser holds white space is not counted (the rest of the line could
// then be written by the client); the daemons seen refuse such names
// before PAM or have no account by that name.
//
// Each daemon checks a login in a process of its own for the connection,
// running as root, which exits soon after the failure: journald may handle
// its last lines after it is gone and then writes them without
// _SYSTEMD_UNIT (measured on the test bed: 2 of 3 pure-ftpd failure
// lines). The jails also read entries without a unit whose
// SYSLOG_IDENTIFIER is the daemon's and whose kernel-supplied _UID is 0
// (see FilterDef.Unitless), which no unprivileged user can send.
func init() {
	add := func(name string, units []string, fail []string, nopam ...string) {
		b := builtinFilter{def: FilterDef{Units: units, FailRegex: fail,
			Unitless: []UnitlessSender{{Identifier: name, UID: 0}}}}
		if len(nopam) > 0 {
			b.modes = map[string][]string{"nopam": nopam}
		}
		builtins[name] = b
	}
	pam := func(service string) string {
		return `^pam_unix\(` + service + `:auth\): authentication failure; logname=\S* uid=[0-9]+ euid=[0-9]+ tty=\S* ruser=(?P<user>\S*) rhost=<HOST>(?:\s+user=\S*)?$`
	}
	add("vsftpd", []string{"vsftpd.service"}, []string{
		pam("vsftpd"),
		// PAM before 0.99.2 (identifier vsftpd).
		`^\(pam_unix\) authentication failure; logname=\S* uid=[0-9]+ euid=[0-9]+ tty=\S* ruser=(?P<user>\S*) rhost=<HOST>(?:\s+user=\S*)?$`,
		// vsftpd_log_file (xferlog_enable=YES, the default): "[pid N]" first.
		`^\[pid [0-9]+\] \[<USER>\] FAIL LOGIN: Client "<HOST>"(?:, "[^"]*")?$`,
		// syslog_enable=YES, with the reason some builds add (no PAM line).
		`^\[<USER>\] FAIL LOGIN: Client "<HOST>", "[^"]*"$`,
	}, `^\[<USER>\] FAIL LOGIN: Client "<HOST>"$`)
	// proftpd: "SERVER (NAME[H]) - MSG" in syslog, "SERVER (NAME[H]): MSG"
	// in its SystemLog file. NAME is the client's forward-confirmed DNS
	// name or its address; H is always the address.
	const proClient = `^\S+ \(\S*\[<HOST>\]\)`
	add("proftpd", []string{"proftpd.service"}, []string{
		pam("proftpd"),
		proClient + `(?: -|:) (?:USER|ANON) (?P<user>.*) \(Login failed\): (?:User in |Limit access denies login|Invalid shell|Password expired|Account |No such user found|Insufficient credentials|Unavailable |Failed initializing|Failure setting|New authentication token|Max authentication|maximum USER length)`,
		proClient + `: USER (?P<user>.*) \(Login failed\): Incorrect password`,
		proClient + `(?: -|:) USER (?P<user>.*): (?:no such user found|user is not a UserAlias) from `,
		proClient + `(?: -|:) (?:Maximum login attempts \([0-9]+\) exceeded|SECURITY VIOLATION: (?P<user>\S+) login attempted)`,
	}, proClient+` - USER (?P<user>.*) \(Login failed\): Incorrect password`)
	add("pure-ftpd", []string{"pure-ftpd.service"}, []string{
		`^\(\S+@<HOST>\) \[WARNING\] Authentication failed for user \[(?P<user>.*)\]$`,
	})
}
