package jails

// Regex fragments shared by the web filters.
const (
	// apacheClient matches the error log's leading fields up to and
	// including "[client H:P] " (2.4) or "[client H] " (2.2); the date is
	// absent when ErrorLog goes to syslog.
	apacheClient = `^(?:\[[^\]]*\] )*\[client (?:<HOST>:[0-9]+|<HOST>)\] (?:AH[0-9]+: )?`
	// accessPrefix matches an access log line (common/combined, with an
	// optional vhost) up to the request's opening quote.
	accessPrefix = `^(?:\S+:[0-9]+ )?<HOST> \S+ \S+ \[[^\]]+\] "`
	// nginxPrefix matches an nginx error log line up to "*N " (the date
	// and level are present when error_log goes to syslog).
	nginxPrefix = `^(?:[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9:]{8} )?(?:\[\w+\] [0-9]+#[0-9]+: )?\*[0-9]+ `
	// nginxTail matches what nginx writes after the client, strictly, so
	// that quotes injected into user names cannot supply the address.
	nginxTail = `, client: <HOST>, server: [^,"]*(?:, request: "[^"]*")?(?:, upstream: "[^"]*")?(?:, host: "[^"]*")?(?:, referrer: "[^"]*")?$`
	// postfixClient matches "name[address]" as Postfix logs a client.
	postfixClient = `[A-Za-z0-9.-]+\[<HOST>\](?::[0-9]+)?`
	// botPaths are paths only vulnerability scanners ask for.
	botPaths = `(?:wp-login\.php|xmlrpc\.php|wp-admin|wp-content/plugins|phpmyadmin|phpMyAdmin|pma|myadmin|mysqladmin|sqlmanager|\.env|\.git/|admin\.php|administrator|HNAP1|boaform|cgi-bin/luci|vendor/phpunit|manager/html|setup\.php|solr/admin|actuator/|\.aws/)`
	// badAgents are user agents of e-mail harvesters and attack tools.
	badAgents = `(?:EmailCollector|EmailSiphon|EmailWolf|WebEMailExtrac|ExtractorPro|Atomic_Email_Hunter|atSpider|autoemailspider|TrackBack/1\.02|sogou music spider|Nikto|sqlmap|masscan|zgrab|Nmap Scripting Engine|ZmEu|Morfeus Fucking Scanner)`
)

func init() {
	add := func(name string, units []string, fail []string) {
		builtins[name] = builtinFilter{def: FilterDef{Units: units, FailRegex: fail}}
	}
	apache := []string{"apache2.service", "httpd.service"}
	add("apache-auth", apache, []string{
		apacheClient + `user (?P<user>.*?) in realm "[^"]*" not found`,
		apacheClient + `user (?P<user>.*?) not found(?::|$)`,
		apacheClient + `user (?P<user>.*?): authentication failure for "`,
		apacheClient + `client used wrong authentication scheme: `,
		apacheClient + `client denied by server configuration: `,
		apacheClient + `Authorization of user (?P<user>.*?) to access .* failed`,
	})
	add("apache-badbots", apache, []string{
		accessPrefix + `(?:[^"\\]|\\.)*" [0-9]{3} \S+ "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*` + badAgents,
	})
	add("apache-botsearch", apache, []string{
		apacheClient + `(?:File does not exist|script not found or unable to stat): \S*/` + botPaths,
		accessPrefix + `[A-Z]+ /(?:\S*/)?` + botPaths + `\S* HTTP/[0-9.]+" 40[0-9] `,
	})
	add("apache-noscript", apache, []string{
		apacheClient + `(?:script not found or unable to stat|attempt to invoke directory as script): `,
		apacheClient + `File does not exist: \S*\.(?:php[0-9]?|asp|aspx|exe|pl|cgi|scgi|jsp)(?:$|[/,\s])`,
	})
	add("nginx-http-auth", []string{"nginx.service"}, []string{
		nginxPrefix + `user "(?P<user>[^"]*)":? (?:was not found in "[^"]*"|password mismatch)` + nginxTail,
	})
	add("nginx-limit-req", []string{"nginx.service"}, []string{
		nginxPrefix + `limiting (?:requests|connections)(?:, excess: [0-9.]+)? by zone "[^"]*", client: <HOST>, `,
	})
	add("nginx-botsearch", []string{"nginx.service"}, []string{
		accessPrefix + `[A-Z]+ /(?:\S*/)?` + botPaths + `\S* HTTP/[0-9.]+" (?:40[0-9]|444) `,
	})
	add("lighttpd-auth", []string{"lighttpd.service"}, []string{
		`^(?:[0-9-]+ [0-9:]+: )?\([\w.]+\.c\.[0-9]+\) password doesn't match for .* username: (?P<user>.*?),? IP: <HOST>$`,
		`^(?:[0-9-]+ [0-9:]+: )?\([\w.]+\.c\.[0-9]+\) (?:get_password failed|digest: auth failed for <USER>: (?:wrong password|uname not found)),? IP: <HOST>$`,
	})
	add("vsftpd", []string{"vsftpd.service"}, []string{
		`^(?:\[pid [0-9]+\] )?\[<USER>\] FAIL LOGIN: Client "<HOST>"$`,
		`^pam_unix\(vsftpd:auth\): (?:authentication failure|check pass; user unknown); logname=\S* uid=[0-9]+ euid=[0-9]+ tty=\S* ruser=\S* rhost=<HOST>(?:\s|$)`,
	})
	add("proftpd", []string{"proftpd.service"}, []string{
		`^\S+ \(\S*\[<HOST>\]\) - (?:USER (?P<user>\S+)(?: \(Login failed\))?: (?:Incorrect password|no such user found)|USER .*: no such user found from |Maximum login attempts \([0-9]+\) exceeded|SECURITY VIOLATION: \S+ login attempted)`,
	})
	add("pure-ftpd", []string{"pure-ftpd.service"}, []string{
		`^\(\S+@<HOST>\) \[WARNING\] Authentication failed for user \[(?P<user>.*)\]$`,
	})
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
