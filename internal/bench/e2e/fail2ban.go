package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// regexResult is one fail2ban-regex run over the journal.
type regexResult struct {
	lines   int
	matched int
	wall    time.Duration
	cpu     time.Duration
}

var regexLines = regexp.MustCompile(`Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed`)

// fail2banRegex runs `fail2ban-regex -m _SYSTEMD_UNIT=UNIT
// systemd-journal[journalpath=DIR] sshd` (the filter's own journal match
// adds _COMM=sshd, which the bench's writer does not have) and times it.
func fail2banRegex(dir, unit string) (regexResult, error) {
	var res regexResult
	cmd := exec.Command("fail2ban-regex", "--print-no-missed", "--print-no-ignored",
		"-m", "_SYSTEMD_UNIT="+unit, "systemd-journal[journalpath="+dir+"]", "sshd")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("fail2ban-regex: %v\n%s", err, out.String())
	}
	res.wall = time.Since(start)
	res.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	m := regexLines.FindStringSubmatch(out.String())
	if m == nil {
		return res, fmt.Errorf("fail2ban-regex printed no line count:\n%s", out.String())
	}
	res.lines, _ = strconv.Atoi(m[1])
	res.matched, _ = strconv.Atoi(m[3])
	return res, nil
}

// f2bServer is fail2ban-server in the foreground, inside the server network
// namespace (so that even a wrong action could not reach the host's
// firewall), with one sshd jail whose only action is Debian's `dummy`
// action writing "+ADDRESS" lines to a file. Socket, pid file, database
// and log live in a temporary directory.
type f2bServer struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	bans string // the dummy action's file

	off  int64
	seen map[netip.Addr]bool
}

const f2bJail = `[DEFAULT]
[sshd]
enabled = true
backend = systemd[journalpath=%s]
filter = sshd[journalmatch='_SYSTEMD_UNIT=sshd.service']
action = dummy[target=%s]
maxretry = %d
findtime = 10m
bantime = 1h
`

const f2bConf = `[Definition]
loglevel = INFO
logtarget = %[1]s/fail2ban.log
syslogsocket = auto
socket = %[1]s/fail2ban.sock
pidfile = %[1]s/fail2ban.pid
allowipv6 = auto
dbfile = %[1]s/fail2ban.sqlite3
dbpurgeage = 1d
`

// startFail2ban starts fail2ban-server reading the journal in journalDir
// and waits until its jail runs. It is stopped by PID at cleanup.
func startFail2ban(tb testing.TB, h *testbed.Hosts, journalDir string, maxRetry int) *f2bServer {
	tb.Helper()
	s := &f2bServer{dir: tb.TempDir(), done: make(chan struct{}), seen: map[netip.Addr]bool{}}
	s.bans = filepath.Join(s.dir, "bans")
	for _, d := range []string{"filter.d", "action.d"} {
		if err := os.Symlink(filepath.Join("/etc/fail2ban", d), filepath.Join(s.dir, d)); err != nil {
			tb.Fatalf("fail2ban config: %v", err)
		}
	}
	files := map[string]string{
		"fail2ban.conf": fmt.Sprintf(f2bConf, s.dir),
		"jail.conf":     fmt.Sprintf(f2bJail, journalDir, s.bans, maxRetry),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(body), 0o644); err != nil {
			tb.Fatalf("fail2ban config: %v", err)
		}
	}
	s.cmd = h.InSrv("fail2ban-server", "-f", "-x", "-c", s.dir,
		"-s", filepath.Join(s.dir, "fail2ban.sock"), "-p", filepath.Join(s.dir, "fail2ban.pid"))
	out, err := os.Create(filepath.Join(s.dir, "stdout"))
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("starting fail2ban-server: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	tb.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		log, _ := os.ReadFile(filepath.Join(s.dir, "fail2ban.log"))
		if bytes.Contains(log, []byte("[sshd] Jail is in operation now")) {
			return s
		}
		select {
		case <-s.done:
			o, _ := os.ReadFile(filepath.Join(s.dir, "stdout"))
			tb.Fatalf("fail2ban-server exited:\n%s\n%s", o, log)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("fail2ban-server's jail did not start in 30s:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pid is fail2ban-server's process id (`ip netns exec` execs in place, and
// so does the script's interpreter).
func (s *f2bServer) pid() int { return s.cmd.Process.Pid }

func (s *f2bServer) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// poll reads the dummy action's new lines into s.seen.
func (s *f2bServer) poll() error {
	f, err := os.Open(s.bans)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	if _, err := f.Seek(s.off, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err != nil { // a partial last line is read again next time
			return nil
		}
		s.off += int64(len(line))
		if a, err := netip.ParseAddr(strings.TrimSpace(strings.TrimPrefix(line, "+"))); err == nil && strings.HasPrefix(line, "+") {
			s.seen[a] = true
		}
	}
}

// waitBanned polls the action's file until a is banned.
func (s *f2bServer) waitBanned(a netip.Addr, every, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := s.poll(); err != nil {
			return time.Time{}, err
		}
		if s.seen[a] {
			return time.Now(), nil
		}
		select {
		case <-s.done:
			return time.Time{}, errors.New("fail2ban-server exited")
		default:
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("fail2ban did not ban %s within %s", a, timeout)
		}
		time.Sleep(every)
	}
}
