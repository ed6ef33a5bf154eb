package jails

// Regex fragments shared by the web filters (apache-*, nginx-*, lighttpd-auth).
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
}
