package jails

// The FTP filters: vsftpd, proftpd, pure-ftpd.
func init() {
	add := func(name string, units []string, fail []string) {
		builtins[name] = builtinFilter{def: FilterDef{Units: units, FailRegex: fail}}
	}
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
}
