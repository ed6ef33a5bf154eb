package jails

// Regex fragments shared by the mail filters (postfix, dovecot, courier-*, qmail).
const (
	// postfixClient matches "name[address]" or "name[address]:port" as
	// Postfix logs a client; postscreen leaves the name out ("[address]:port").
	// The name is the verified reverse name or "unknown", never client text.
	postfixClient = `[A-Za-z0-9._-]*\[<HOST>\](?::<PORT>)?`
	// postfixQueueID is NOQUEUE or a queue ID (short hex or long base-52 form).
	postfixQueueID = `(?:NOQUEUE|[0-9A-Za-z]+)`
	// postfixCmd is an SMTP command name as Postfix names it after "after".
	postfixCmd = `[A-Z][A-Z-]*`

	// dovecotPrefix is what may stand before a dovecot line in MESSAGE
	// when something other than syslog framed it: a multilog timestamp and
	// the program name.
	dovecotPrefix = `(?:@[0-9a-f]{24} )?(?:dovecot(?:-auth)?: )?`
	// dovecotAuthProc is the auth process's name in front of a passdb line.
	dovecotAuthProc = `(?:auth(?:-worker)?(?:\([^()]*\))?: )?(?:Info: )?(?:conn unix:auth-worker \([a-z0-9=,]*\): auth-worker<[0-9]+>: )?`
	// dovecotPassdb is a passdb driver name.
	dovecotPassdb = `(?:pam|passwd-file|passwd|shadow|sql|ldap|checkpassword|bsdauth|static|lua|oauth2|imap)`
	// dovecotPassdbFail is a passdb failure and what dovecot may add after
	// it, up to the end of the line. Never the password itself: "(given
	// password: …)" is client text, so such lines do not match. PAM errors
	// of the backend ("Authentication service cannot retrieve
	// authentication info") are an outage, not the client's failure.
	dovecotPassdbFail = `(?:unknown user|[Pp]assword mismatch|invalid credentials|pam_authenticate\(\) failed: (?:Authentication failure|User not known to the underlying authentication module|Permission denied))` +
		`(?: \((?:for LDAP bind|[Pp]assword mismatch\?|SHA1 of given password: [0-9a-f]+)\))*(?:: [0-9]+ Time\(s\))?$`
	// dovecotLogin is the start of a login process's line: the process and
	// the reason, which may hold parentheses of its own ("read(size=1003)
	// failed"), up to the parenthesis that says why.
	dovecotLogin = dovecotPrefix + `(?:[a-z0-9]+-login: )?(?:Info: )?(?:[A-Z][A-Za-z]*(?:[ :.][^()]*(?:\([^()]*\)[^()]*)*)? ?)?\(`
	// dovecotLoginFields are the fields after the reason, up to the end of
	// the line: the client's user name (client text, greedy, so that the
	// last rip= is the one found), the mechanism, the addresses, and what
	// dovecot may add about TLS and the session.
	dovecotLoginFields = `(?: \([a-z_]+\))?: (?:user=<(?P<user>.*)>, )?(?:method=[A-Za-z0-9-]+, )?rip=<HOST>(?:, lip=[0-9A-Fa-f:.]+)?(?:, mpid=[0-9]+)?` +
		`(?:, TLS(?: handshaking)?(?:: [^,]*)?)?(?:, TLSv[0-9.]+ with cipher \S+ \([0-9]+/[0-9]+ bits\))?(?:, session=<[^>]*>)?$`

	// qmailStamp is a multilog (TAI64N) or splogger timestamp.
	qmailStamp = `(?:@[0-9a-f]{24} |[0-9]{9,10}\.[0-9]{6} )?`
)

func init() {
	add := func(name string, units []string, fail, ignore []string, modes map[string][]string) {
		builtins[name] = builtinFilter{def: FilterDef{Units: units, FailRegex: fail, IgnoreRegex: ignore}, modes: modes}
	}

	// postfix. normal counts what fail2ban's modes normal, rbl and auth
	// count. Greylisting (450 … Greylisted), full disks and other local
	// conditions are not the client's failure and do not match. A client
	// that drops the connection after a failed AUTH gets three lines
	// ("SASL … authentication failed", "lost connection after AUTH",
	// "disconnect … auth=0/1"): normal counts the first; ddos and
	// aggressive, which count connection-level abuse, count all three.
	postfixDDoS := []string{
		`^lost connection after (?:AUTH|CONNECT|STARTTLS) from ` + postfixClient + `$`,
		`^disconnect from ` + postfixClient + ` (?:[a-z]+=[0-9]+(?:/[0-9]+)? )*auth=0/[0-9]+(?: [a-z]+=[0-9]+(?:/[0-9]+)?)*$`,
		`^PREGREET [0-9]+ after [0-9.]+ from \[<HOST>\]:<PORT>: `,
		`^HANGUP after [0-9.]+ from \[<HOST>\]:<PORT> in tests (?:before|after) SMTP handshake$`,
		`^COMMAND (?:TIME|COUNT|LENGTH) LIMIT from \[<HOST>\]:<PORT>(?: after [A-Z-]+)?$`,
		`^warning: [A-Za-z ]+ limit exceeded: [0-9]+ from ` + postfixClient + ` for service [a-z0-9/-]+$`,
	}
	postfixAggressive := append([]string{
		`^warning: ` + postfixClient + `: SASL [A-Za-z0-9-]+ authentication failed: Invalid authentication mechanism$`,
	}, postfixDDoS...)
	add("postfix", []string{"postfix@-.service", "postfix.service"}, []string{
		// SASL failures; "Invalid authentication mechanism" (a client
		// asking for a mechanism not offered) only in aggressive.
		// The user, when Postfix names it (sasl_username=, client text
		// after the address), feeds distributed-attack detection.
		`^warning: ` + postfixClient + `: SASL [A-Za-z0-9-]+ authentication failed:(?: (?:[^I]|I[^n]|In[^v])[^,]*| In?)?(?:, sasl_username=(?P<user>.*)|, .*)?$`,
		`^` + postfixQueueID + `: (?:milter-)?reject: (?:RCPT|MAIL|EHLO|HELO|DATA|BDAT|VRFY|ETRN|CONNECT|END-OF-MESSAGE) from ` + postfixClient +
			`: [45][0-9][0-9] [45]\.[0-9]{1,3}\.[0-9]{1,3} (?:.*?: )?(?:Relay access denied|Helo command rejected|Sender address rejected|` +
			`Recipient address rejected: (?:User unknown|undeliverable address)|Client host rejected|Command rejected|Data command rejected|` +
			`Service unavailable; [Cc]lient(?: host)? \[[^\]]*\] blocked using )`,
		`^improper command pipelining after ` + postfixCmd + ` from ` + postfixClient + `(?::.*)?$`,
		`^too many errors after ` + postfixCmd + ` from ` + postfixClient + `$`,
	}, []string{
		// An auth-backend outage is nobody's failure: it must never ban
		// every client.
		`^warning: [A-Za-z0-9._-]*\[[^\]]*\](?::[0-9]+)?: SASL [A-Za-z0-9-]+ authentication failed: Connection lost to authentication server$`,
	}, map[string][]string{
		"rbl":        nil, // fail2ban's modes rbl and auth are part of normal here
		"auth":       nil,
		"ddos":       postfixDDoS,
		"aggressive": postfixAggressive,
	})

	add("dovecot", []string{"dovecot.service"}, []string{
		// passdb failures of the auth process (auth_verbose=yes), 2.2/2.3:
		// "DRIVER(USER,HOST[,<SESSION>]): REASON".
		`^` + dovecotPrefix + dovecotAuthProc + dovecotPassdb + `\(<USER>,<HOST>,?(?:<[^<>]*>)?\): ` + dovecotPassdbFail,
		// 2.4: "auth(USER,HOST,MECH)<SESSION>: DRIVER: REASON" (and the
		// worker's form); the user, first, can never supply the address.
		`^` + dovecotPrefix + `auth(?:-worker)?\(<USER>,<HOST>(?:,[A-Z0-9-]*)?\)(?:<[^<>]*>)*: ` + dovecotPassdb + `: ` + dovecotPassdbFail,
		// PAM itself (Debian's default passdb), once per failed attempt.
		`^` + dovecotPrefix + `(?:auth: )?pam_unix\(dovecot:auth\): authentication failure; logname=\S* uid=[0-9]+ euid=[0-9]+ tty=\S* ruser=(?P<user>\S*) rhost=<HOST>(?:\s+user=\S*)?$`,
		// Login processes (imap-login, pop3-login, submission-login, …).
		`^` + dovecotLogin + `(?:auth failed, [0-9]+ attempts(?: in [0-9]+ secs)?|tried to use (?:disabled|disallowed) plaintext auth|proxy dest auth failed)\)` + dovecotLoginFields,
	}, nil, map[string][]string{
		"aggressive": {
			`^` + dovecotLogin + `(?:no auth attempts(?: in [0-9]+ secs)?|disconnected before auth was ready, waited [0-9]+ secs|client didn't finish SASL auth, waited [0-9]+ secs)\)` + dovecotLoginFields,
		},
	})

	add("courier-auth", []string{"courier-authdaemon.service", "courier-imap.service", "courier-imap-ssl.service", "courier-pop.service", "courier-pop-ssl.service"}, []string{
		`^LOGIN FAILED, user=<USER>, ip=\[<HOST>\](?:, port=\[[0-9]+\])?$`,
		`^LOGIN FAILED, method=\S+, ip=\[<HOST>\](?:, port=\[[0-9]+\])?$`,
	}, nil, nil)
	add("courier-smtp", []string{"courier-mta.service", "courier-msa.service", "courier-mta-ssl.service"}, []string{
		`^error,relay=<HOST>,(?:port=[0-9]+,)?(?:ident=[^,]*,)?(?:msg="535 Authentication failed|from=<[^>]*>(?:,to=<[^>]*>)?: 5[0-9][0-9] )`,
	}, nil, nil)

	add("qmail", []string{"qmail.service", "qmail-smtpd.service"}, []string{
		// rblsmtpd (ucspi-tcp): "rblsmtpd: HOST pid PID[ ZONE]: CODE TEXT".
		`^` + qmailStamp + `rblsmtpd: <HOST> pid [0-9]+(?: [A-Za-z0-9.-]+)?: [45][0-9][0-9] `,
		// rblsmtpd's older form: "ZONE blocked HOST NAME -".
		`^` + qmailStamp + `(?:rblsmtpd: )?[A-Za-z0-9.-]+ blocked <HOST>(?: \S+)* -$`,
		// qmail-smtpd with the badiprbl patch.
		`^` + qmailStamp + `qmail-smtpd(?:\[[0-9]+\])?: [45][0-9][0-9] badiprbl: ip <HOST> rbl: \S+$`,
		// qmail-smtpd with an SMTP AUTH patch.
		`^` + qmailStamp + `qmail-smtpd(?:\[[0-9]+\])?: (?:AUTH failed|auth failed) \[<HOST>\]`,
	}, nil, nil)
}
