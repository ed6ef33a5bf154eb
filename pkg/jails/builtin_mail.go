package jails

// Regex fragments shared by the mail filters (postfix, dovecot, courier-*, qmail).
const (
	// postfixClient matches "name[address]" as Postfix logs a client.
	postfixClient = `[A-Za-z0-9.-]+\[<HOST>\](?::[0-9]+)?`
)

func init() {
	add := func(name string, units []string, fail []string) {
		builtins[name] = builtinFilter{def: FilterDef{Units: units, FailRegex: fail}}
	}
	add("postfix", []string{"postfix@-.service", "postfix.service"}, []string{
		`^warning: ` + postfixClient + `: SASL \S+ authentication failed`,
		`^lost connection after AUTH from ` + postfixClient + `$`,
		`^(?:NOQUEUE|[0-9A-F]+|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]+): reject: (?:RCPT|MAIL|EHLO|HELO|DATA|VRFY) from ` + postfixClient + `: [45][0-9][0-9] [45]\.[0-9]\.[0-9]+ (?:.*Relay access denied|Service unavailable; Client host \[[^\]]*\] blocked using |.*Client host rejected: |.*Recipient address rejected: User unknown)`,
	})
	add("dovecot", []string{"dovecot.service"}, []string{
		`^(?:auth(?:-worker)?(?:\([0-9]+\))?: )?(?:pam|passwd-file|sql|ldap|shadow|passwd|checkpassword|bsdauth)\(<USER>,<HOST>(?:,<[^>]*>)?\): (?:unknown user|[Pp]assword mismatch|pam_authenticate\(\) failed|[Aa]uthentication failure)`,
		`^\w+-login: (?:Disconnected|Aborted login|Login aborted: [^(]*?) ?\((?:auth failed|tried to use disallowed plaintext auth)[^)]*\)(?: \(\w+\))?: user=<(?P<user>[^>]*)>, (?:method=\S+, )?rip=<HOST>, lip=[0-9A-Fa-f:.]+(?:, TLS(?: handshaking)?(?:: [^,]*)?)?(?:, session=<[^>]*>)?$`,
	})
	add("courier-auth", []string{"courier-authdaemon.service", "courier-imap.service", "courier-imap-ssl.service", "courier-pop.service", "courier-pop-ssl.service"}, []string{
		`^LOGIN FAILED, user=<USER>, ip=\[<HOST>\](?:, port=\[[0-9]+\])?$`,
		`^LOGIN FAILED, method=\S+, ip=\[<HOST>\](?:, port=\[[0-9]+\])?$`,
	})
	add("courier-smtp", []string{"courier-mta.service", "courier-msa.service", "courier-mta-ssl.service"}, []string{
		`^error,relay=<HOST>,(?:port=[0-9]+,)?(?:ident=[^,]*,)?(?:msg="535 Authentication failed|from=<[^>]*>(?:,to=<[^>]*>)?: 5[0-9][0-9] )`,
	})
	add("qmail", []string{"qmail.service", "qmail-smtpd.service"}, []string{
		`^(?:@[0-9a-f]{24} )?rblsmtpd: <HOST> pid [0-9]+: [45][0-9][0-9] `,
		`^(?:@[0-9a-f]{24} )?qmail-smtpd(?:\[[0-9]+\])?: (?:AUTH failed|auth failed) \[<HOST>\]`,
	})

}
