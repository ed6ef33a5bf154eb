package jails

// builtinPorts are the ports each built-in service listens on by default:
// the ports a jail of that filter bans when it sets no ports of its own
// (fail2ban's jail.conf has the same per-jail defaults).
var builtinPorts = map[string][]uint16{
	"sshd":             {22},
	"apache-auth":      {80, 443},
	"apache-badbots":   {80, 443},
	"apache-botsearch": {80, 443},
	"apache-noscript":  {80, 443},
	"nginx-http-auth":  {80, 443},
	"nginx-limit-req":  {80, 443},
	"nginx-botsearch":  {80, 443},
	"lighttpd-auth":    {80, 443},
	"vsftpd":           {20, 21, 989, 990},
	"proftpd":          {20, 21, 989, 990},
	"pure-ftpd":        {20, 21, 989, 990},
	"postfix":          {25, 465, 587},
	"courier-smtp":     {25, 465, 587},
	"qmail":            {25, 465, 587},
	"dovecot":          {110, 995, 143, 993, 465, 587, 4190},
	"courier-auth":     {110, 995, 143, 993, 25, 465, 587},
}

// BuiltinPorts returns the ports built-in service name listens on by
// default, or nil for an unknown name (a jail then bans every port).
func BuiltinPorts(name string) []uint16 {
	return append([]uint16(nil), builtinPorts[name]...)
}
