package jails

// Regex fragments shared by the web filters (apache-*, nginx-*, lighttpd-auth).
//
// Where the address is, and what a client writes around it, decides each
// shape:
//   - Apache's error log puts "[client H:P]" before anything a client sends,
//     so the leading fields are matched strictly and the rest may be loose.
//   - nginx's error log puts ", client: H, server: S, request: "…", host:
//     "…", referrer: "…"" after the message, which may itself hold client
//     text (a user name, a file path). A basic-auth user name never holds a
//     ':' (nginx cuts the credentials at the first one), so the first
//     "client: " after such a name is nginx's; a file path is taken only
//     when it holds no '"'.
//   - Access logs start with the address (after an optional vhost); nginx
//     writes a '"' inside a field as \x22 and Apache as \".
//   - lighttpd ends its lines with "IP: H": the last address is its own.
const (
	// apacheAddr matches "[client H:P] " (2.4; port 0 behind mod_remoteip),
	// "[client H] " (2.2), "[client [H]:P] ", and "[remote H:P] ", the
	// form Apache 2.4 uses for a connection without a scoreboard slot.
	// The forms with a port come first so that an IPv6 address never
	// swallows it.
	apacheAddr = `\[(?:client|remote) (?:\[<HOST>\]:[0-9]+|\[<HOST>\]|<HOST>:[0-9]+|<HOST>)\] `
	// apacheClient matches up to the message after the address. Apache
	// 2.2 writes no [pid] field and no port: its form is tried first, so
	// that a full IPv6 address is not read as seven groups and a port.
	apacheClient = `^(?:(?:\[[^\]]*\] )?\[[a-z]+\] \[client <HOST>\] |(?:\[[^\]]*\] )*` + apacheAddr + `)(?:AH[0-9]+: )?`
	// apacheAccessCheck matches the error log fields before the address
	// for the modules that refuse access by configuration (authz_core,
	// access_compat, authz_host; none in 2.2 and some syslog setups), not
	// for mod_evasive, whose refusals only mode aggressive counts.
	apacheAccessCheck = `^(?:\[[^\]]*\] )?\[(?:(?:authz_core|access_compat|authz_host)?:)?[a-z]+[0-9]?\] (?:\[pid [0-9]+(?::tid [0-9]+)?\] )?` + apacheAddr + `(?:AH[0-9]+: )?`

	// syslogHostTag matches the "HOSTNAME TAG: " that journald leaves in
	// MESSAGE when nginx's syslog target sends its host name (no
	// ",nohostname"): journald then takes no identifier from the line.
	syslogHostTag = `(?:\S+ [0-9A-Za-z_]{1,32}: )?`
	// accessPrefix matches an access log line (common/combined, with an
	// optional vhost with or without a port) up to the request's opening
	// quote. Four fields come before the date, five with a vhost, so an
	// identity or user field cannot pass for the address.
	accessPrefix = `^` + syslogHostTag + `(?:\S+ )?<HOST> \S+ \S+ \[[^\]]+\] "`
	// nginxPrefix matches an nginx error log line up to "*N " (the date
	// and level are present when error_log goes to syslog).
	nginxPrefix = `^` + syslogHostTag + `(?:[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9:]{8} )?(?:\[\w+\] [0-9]+#[0-9]+: )?\*[0-9]+ `
	// nginxClient matches what nginx writes after its message up to the
	// server's name; what follows (request, host, referrer) is client
	// text and is not read.
	nginxClient = `, client: <HOST>, server: `
	// botPaths are paths only vulnerability scanners ask for, each
	// matched after a '/'.
	botPaths = `(?:wp-login\.php|wp-signup\.php|xmlrpc\.php|wp-admin|wp-content/plugins|phpmyadmin|phpMyAdmin|pma|myadmin|mysqladmin|sqlmanager|\.env|\.git/|admin\.php|administrator|HNAP1|boaform|cgi-bin/|vendor/phpunit|manager/html|setup\.php|solr/admin|actuator/|\.aws/|` + webmailPaths + `)`
	// webmailPaths are webmail front ends probed for: the name is a whole
	// path component or its start ("mail_this_entry"), never a file such
	// as "mail.php".
	webmailPaths = `(?:roundcube|horde|squirrelmail|(?:ext|v-?web|web)?mails?)(?:[/"',?_ -]|$)`
	// badAgents are user agents of e-mail harvesters and attack tools.
	badAgents = `(?:EmailCollector|EmailSiphon|EmailWolf|WebEMailExtrac|ExtractorPro|Atomic_Email_Hunter|atSpider|autoemailspider|TrackBack/1\.02|sogou music spider|Nikto|sqlmap|masscan|zgrab|Nmap Scripting Engine|ZmEu|Morfeus Fucking Scanner)`
	// lighttpdHead matches lighttpd's optional date and "(file.c.LINE) ".
	lighttpdHead = `^(?:[0-9-]+ [0-9:]+: )?\(?[\w.]+\.c\.[0-9]+\) `
)

func init() {
	apache := []string{"apache2.service", "httpd.service"}
	nginx := []string{"nginx.service"}
	builtins["apache-auth"] = builtinFilter{
		def: FilterDef{Units: apache, FailRegex: []string{
			// mod_auth_basic / mod_auth_digest: unknown user (2.2 digest
			// quotes the user and realm with `…').
			apacheClient + "(?:Digest: )?user (?:\x60(?P<user>.*)' in realm \x60.*'|(?P<user>.*?) in realm \"[^\"]*\"|(?P<user>.*?)) not found(?::|$)",
			// Wrong password, and authorization refused to a known user
			// (AH01617, AH01792, AH01631).
			apacheClient + `(?:Digest: )?user (?P<user>.*?): (?:authentication failure for "|password mismatch(?::|$)|authorization failure for ")`,
			apacheClient + `client used wrong authentication scheme: `,
			apacheAccessCheck + `client denied by server configuration: `,
			apacheClient + `Authorization of user (?P<user>.*?) to access .* failed`,
			// mod_auth_digest: forged or replayed digests (AH01793,
			// AH01775, AH01777, AH01788, AH01789).
			apacheClient + "(?:Digest: )?(?:invalid qop \x60[^']*' received|invalid nonce \\S+ received - (?:length is not|user attempted time travel)|realm mismatch - got \x60|unknown algorithm \x60)",
			// mod_ssl: SNI and Host disagree (AH02031, AH02032, AH02033).
			apacheClient + `(?:Hostname \S+ provided via SNI, but no hostname provided in HTTP request|Hostname \S+ provided via SNI and hostname \S+ provided via HTTP (?:have no compatible SSL setup|are different)|No hostname was provided via SNI for a name based virtual host)`,
		}},
		modes: map[string][]string{
			// mod_evasive's refusals (a rate limit, not a login failure).
			"aggressive": {apacheClient + `client denied by server configuration: `},
		},
	}
	builtins["apache-badbots"] = builtinFilter{def: FilterDef{Units: apache, FailRegex: []string{
		accessPrefix + `(?:[^"\\]|\\.)*" [0-9]{3} \S+ "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*` + badAgents,
	}}}
	builtins["apache-botsearch"] = builtinFilter{def: FilterDef{Units: apache, FailRegex: []string{
		apacheClient + `(?:File does not exist|script not found or unable to stat): \S*/` + botPaths,
		apacheClient + `script '\S*/` + botPaths + `[^']*' not found or unable to stat`,
		accessPrefix + `[A-Z]+ /(?:\S*/)?` + botPaths + `\S* HTTP/[0-9.]+" 40[0-9] `,
	}}}
	builtins["apache-noscript"] = builtinFilter{def: FilterDef{Units: apache, FailRegex: []string{
		apacheClient + `(?:script not found or unable to stat|attempt to invoke directory as script): `,
		apacheClient + `script '.*' not found or unable to stat`,
		apacheClient + `File does not exist: \S*\.(?:php[0-9]?|asp|aspx|exe|pl|cgi|scgi|jsp)(?:$|[/,\s])`,
		// mod_proxy_fcgi: PHP-FPM has no such script (AH01071).
		apacheClient + `Got error 'Primary script unknown`,
	}}}
	nginxAuth := []string{
		// auth_basic. The user name holds no ':', so the first "client: "
		// after it is nginx's own, whatever quotes it holds.
		nginxPrefix + `user "(?P<user>[^:]*)"(?:: password mismatch| was not found in "[^"]*")` + nginxClient,
		// auth_pam: "PAM: user 'U' - not authenticated: REASON".
		nginxPrefix + `PAM: user '(?P<user>[^:]*)' - not authenticated: [^:]*` + nginxClient,
	}
	builtins["nginx-http-auth"] = builtinFilter{
		def: FilterDef{Units: nginx, FailRegex: nginxAuth},
		modes: map[string][]string{
			"auth": {},
			// TLS handshakes that fail on garbage (scanners).
			"fallback":   {nginxPrefix + `SSL_do_handshake\(\) failed \(SSL: [^)]*\) while SSL handshaking` + nginxClient},
			"aggressive": {nginxPrefix + `SSL_do_handshake\(\) failed \(SSL: [^)]*\) while SSL handshaking` + nginxClient},
		},
	}
	builtins["nginx-limit-req"] = builtinFilter{
		def: FilterDef{Units: nginx, FailRegex: []string{
			nginxPrefix + `limiting (?:requests|connections)(?:, excess: [0-9.]+)? by zone "[^"]*"` + nginxClient,
		}},
		modes: map[string][]string{
			// Requests held back inside the burst (logged one level
			// below limit_req_log_level): a client that keeps nginx
			// delaying it, before it is refused.
			"aggressive": {nginxPrefix + `delaying request, excess: [0-9.]+, by zone "[^"]*"` + nginxClient},
		},
	}
	builtins["nginx-botsearch"] = builtinFilter{def: FilterDef{Units: nginx, FailRegex: []string{
		accessPrefix + `[A-Z]+ /(?:\S*/)?` + botPaths + `\S* HTTP/[0-9.]+" (?:40[0-9]|444) `,
		// The error log's 404s: the file path is taken only without a '"'
		// (a probe for a real path has none).
		nginxPrefix + `(?:open\(\) )?"[^"]*/` + botPaths + `[^"]*"(?: failed| is not found) \(2: No such file or directory\)` + nginxClient,
	}}}
	builtins["lighttpd-auth"] = builtinFilter{def: FilterDef{Units: []string{"lighttpd.service"}, FailRegex: []string{
		lighttpdHead + `password doesn't match for .* username: (?P<user>.*?),? IP: <HOST>$`,
		lighttpdHead + `digest: auth failed for\s+(?P<user>.*?)\s*: (?:wrong password|uname not found), IP: <HOST>$`,
		lighttpdHead + `digest: auth failed: uri mismatch \(.*\), IP: <HOST>$`,
		lighttpdHead + `get_password failed, IP: <HOST>$`,
	}}}
}
