package testbed

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The web servers of the e2e tests, by the name of their Debian package
// (and binary), and the account that may log in to their /private/ area.
const (
	Nginx    = "nginx"
	Apache   = "apache2"
	Lighttpd = "lighttpd"

	WebUser     = "alice"
	WebPassword = "s3cret-Pw"
)

// WebOptions change how a web server logs.
type WebOptions struct {
	// NginxNoHostname adds ",nohostname" to nginx's syslog targets; without
	// it journald keeps "HOSTNAME nginx: " in MESSAGE.
	NginxNoHostname bool
	// NginxAccessLog sends nginx's access log to syslog too, with
	// log_not_found off (so that a probe for a missing file is one line,
	// in the access log); without it, 404s reach the journal as the error
	// log's "open() … failed (2: No such file or directory)".
	NginxAccessLog bool
}

// WebServer is a real web server from Debian's package in the server
// namespace, run inside the cgroup of the unit its package uses and logging
// into the journal the way docs/services.md tells admins to:
//
//	nginx     error_log (and access_log) syslog:server=unix:/dev/log
//	apache2   ErrorLog syslog:daemon, LogLevel warn core:info
//	lighttpd  its error log on stderr, piped into the journal
//
// It listens on port 80 of both server addresses. /private/index.html needs
// WebUser/WebPassword (HTTP basic authentication); on nginx /limited/ allows
// one request a minute (limit_req, no burst).
type WebServer struct {
	Kind string
	Unit string
	Dir  string
	Proc *UnitProcess
}

// StartWeb starts the web server kind (Nginx, Apache or Lighttpd) in h's
// server namespace, logging to the private journald jd, and returns once it
// answers on both addresses. It is stopped at cleanup.
func StartWeb(t testing.TB, h *Hosts, jd *Journald, kind string, o WebOptions) *WebServer {
	t.Helper()
	Require(t, "/usr/sbin/"+kind, "curl", "systemd-cat", "nsenter")
	linkDevLog(t)
	// Workers run as nobody or www-data: the directory must be readable by
	// them, which t.TempDir's parent is not.
	dir, err := os.MkdirTemp("", "jk-web-"+kind+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"www/private", "www/limited", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha1.Sum([]byte(WebPassword))
	files := map[string]string{
		"www/index.html":         "home\n",
		"www/private/index.html": "private\n",
		"www/limited/index.html": "limited\n",
		// {SHA} is read by nginx and Apache alike; lighttpd's plain
		// backend reads the password as it is.
		"htpasswd":    WebUser + ":{SHA}" + base64.StdEncoding.EncodeToString(sum[:]) + "\n",
		"users.plain": WebUser + ":" + WebPassword + "\n",
	}
	var script string
	switch kind {
	case Nginx:
		files["nginx.conf"] = nginxConf(dir, o)
		// -e stderr: the log nginx opens before it reads its configuration.
		script = fmt.Sprintf("exec %s", shellJoin(h.SrvArgv(jd, "/usr/sbin/nginx", "-e", "stderr", "-c", filepath.Join(dir, "nginx.conf"))))
	case Apache:
		files["apache2.conf"] = apacheConf(dir)
		script = fmt.Sprintf("exec %s", shellJoin(h.SrvArgv(jd, "/usr/sbin/apache2", "-f", filepath.Join(dir, "apache2.conf"), "-DFOREGROUND")))
	case Lighttpd:
		files["lighttpd.conf"] = lighttpdConf(dir)
		inner := fmt.Sprintf("/usr/sbin/lighttpd -D -f %s 2>&1 | systemd-cat -t lighttpd", filepath.Join(dir, "lighttpd.conf"))
		script = fmt.Sprintf("exec %s", shellJoin(h.SrvArgv(jd, "sh", "-c", inner)))
	default:
		t.Fatalf("unknown web server %q", kind)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &WebServer{Kind: kind, Unit: kind + ".service", Dir: dir}
	s.Proc = StartInUnit(t, s.Unit, script)
	for _, a := range []string{SrvAddr4, SrvAddr6} {
		if err := h.waitHTTP(a, 10*time.Second, s.Proc); err != nil {
			t.Fatalf("%s: %v; its output:\n%s", kind, err, s.Proc.Output())
		}
	}
	return s
}

// linkDevLog makes /dev/log the symbolic link to journald's syslog socket
// that systemd makes on every host (syslog(3) and the web servers' syslog
// targets write there), if it is missing. Resolved inside a private
// journald's mount namespace, it reaches that journald.
func linkDevLog(t testing.TB) {
	t.Helper()
	if _, err := os.Lstat("/dev/log"); err == nil {
		return
	}
	if err := os.Symlink("/run/systemd/journal/dev-log", "/dev/log"); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatalf("linking /dev/log to journald's dev-log socket: %v", err)
	}
}

func nginxConf(dir string, o WebOptions) string {
	target := "syslog:server=unix:/dev/log"
	if o.NginxNoHostname {
		target += ",nohostname"
	}
	access := "access_log off;"
	if o.NginxAccessLog {
		access = "access_log " + target + ";\n  log_not_found off;"
	}
	return fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[2]s info;
events { worker_connections 64; }
http {
  %[3]s
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
  server {
    listen %[4]s:80;
    listen [%[5]s]:80;
    root %[1]s/www;
    location /private/ { auth_basic "private"; auth_basic_user_file %[1]s/htpasswd; }
    location /limited/ { limit_req zone=one nodelay; }
  }
}
`, dir, target, access, SrvAddr4, SrvAddr6)
}

func apacheConf(dir string) string {
	var b strings.Builder
	for _, m := range []string{"mpm_event", "authz_core", "authz_user", "authn_core", "authn_file", "auth_basic"} {
		fmt.Fprintf(&b, "LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n", m, m)
	}
	fmt.Fprintf(&b, `ServerRoot %[1]s
PidFile %[1]s/apache2.pid
Mutex file:%[1]s
User www-data
Group www-data
Listen %[2]s:80
Listen [%[3]s]:80
ServerName localhost
DocumentRoot %[1]s/www
ErrorLog syslog:daemon
LogLevel warn core:info
<Directory %[1]s/www/private>
  AuthType Basic
  AuthName "private"
  AuthUserFile %[1]s/htpasswd
  Require valid-user
</Directory>
`, dir, SrvAddr4, SrvAddr6)
	return b.String()
}

func lighttpdConf(dir string) string {
	return fmt.Sprintf(`server.document-root = "%[1]s/www"
server.bind = "%[2]s"
server.port = 80
$SERVER["socket"] == "[%[3]s]:80" { }
server.pid-file = "%[1]s/lighttpd.pid"
server.modules = ( "mod_auth", "mod_authn_file" )
auth.backend = "plain"
auth.backend.plain.userfile = "%[1]s/users.plain"
auth.require = ( "/private/" => ( "method" => "basic", "realm" => "private", "require" => "valid-user" ) )
`, dir, SrvAddr4, SrvAddr6)
}

// waitHTTP waits until addr:80 accepts a TCP connection from the attacker
// namespace (or p exits).
func (h *Hosts) waitHTTP(addr string, timeout time.Duration, p *UnitProcess) error {
	deadline := time.Now().Add(timeout)
	hp := net.JoinHostPort(addr, "80")
	for {
		c, err := h.AtkDial(hp, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited before %s accepted connections", hp)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %v", hp, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// HTTPResult is what curl saw of one request from the attacker namespace.
type HTTPResult struct {
	Status  int     // HTTP status, 0 without an answer
	Outcome Outcome // Refused when the connection was refused
	Output  string
}

// HTTPGet requests path from the server at addr on port 80 with curl in the
// attacker namespace, from source address src (empty: the default), with
// HTTP basic credentials user:password unless user is empty.
func (h *Hosts) HTTPGet(addr, src, path, user, password string) HTTPResult {
	host := addr
	if strings.Contains(addr, ":") {
		host = "[" + addr + "]"
	}
	args := []string{"netns", "exec", h.Atk, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
		"--connect-timeout", "3", "--max-time", "5"}
	if src != "" {
		args = append(args, "--interface", src)
	}
	if user != "" {
		args = append(args, "-u", user+":"+password)
	}
	args = append(args, "http://"+host+path)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	r := HTTPResult{Output: s, Outcome: Other}
	// -w prints the status last, "000" when there was no answer.
	if i := strings.LastIndexAny(s, "\n"); i >= 0 || len(s) >= 3 {
		code := s[i+1:]
		if len(code) >= 3 {
			code = code[len(code)-3:]
		}
		r.Status, _ = strconv.Atoi(code)
	}
	switch {
	// curl 7.88 says "Couldn't connect to server" for a refused connection.
	case strings.Contains(s, "Connection refused"), strings.HasPrefix(s, "curl: (7)"):
		r.Outcome = Refused
	case ctx.Err() != nil || strings.Contains(s, "timed out"):
		r.Outcome = Timeout
	case r.Status == 401 || r.Status == 403 || r.Status == 404 || r.Status == 503:
		r.Outcome = Denied
	}
	return r
}
