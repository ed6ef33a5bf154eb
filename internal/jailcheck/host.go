package jailcheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// UnitDirs are where systemd looks for unit files, in its order.
var UnitDirs = []string{
	"/etc/systemd/system", "/run/systemd/system", "/run/systemd/transient", "/run/systemd/generator",
	"/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system",
}

// System is the Host of this machine: it asks systemctl when systemd runs
// as PID 1, looks for unit files in UnitDirs otherwise, and reads the
// journal with journalctl.
type System struct {
	// Booted tells whether systemd runs as PID 1 (then systemctl knows
	// every unit, transient and generated ones included).
	Booted bool
	Dirs   []string
}

// NewSystem returns the System of this machine. Like systemd, it reads
// unit files from $SYSTEMD_UNIT_PATH when that is set (a list separated by
// ':'; an empty last element appends UnitDirs).
func NewSystem() System {
	_, err := os.Stat("/run/systemd/system")
	return System{Booted: err == nil, Dirs: unitDirs(os.Getenv("SYSTEMD_UNIT_PATH"))}
}

func unitDirs(env string) []string {
	if env == "" {
		return UnitDirs
	}
	dirs := filepath.SplitList(env)
	if dirs[len(dirs)-1] == "" {
		return append(dirs[:len(dirs)-1], UnitDirs...)
	}
	return dirs
}

// UnitExists implements Host.
func (s System) UnitExists(unit string) (bool, error) {
	if s.Booted {
		out, err := exec.Command("systemctl", "show", "--property=LoadState", "--value", "--", unit).Output()
		if err == nil {
			state := strings.TrimSpace(string(out))
			return state != "not-found" && state != "", nil
		}
		// Fall back to the unit files (systemctl may be refused, e.g.
		// inside a sandbox without the manager's bus).
	}
	names := []string{unit}
	// An instance (postfix@-.service) exists when its template does.
	if at := strings.IndexByte(unit, '@'); at > 0 {
		if dot := strings.LastIndexByte(unit, '.'); dot > at {
			names = append(names, unit[:at+1]+unit[dot:])
		}
	}
	for _, d := range s.Dirs {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(d, n)); err == nil {
				return true, nil
			}
		}
	}
	return false, nil
}

// Messages implements Host with `journalctl -o json`, one run per unit. A
// template unit (name@.service) reads every instance (journalctl's
// `--unit=name@*.service`).
func (s System) Messages(units []string, since time.Time, max int) ([]string, error) {
	var all []string
	for _, u := range units {
		args := []string{"--no-pager", "-o", "json", "--output-fields=MESSAGE",
			"--since=@" + strconv.FormatInt(since.Unix(), 10), "-n", strconv.Itoa(max)}
		if base, ok := strings.CutSuffix(u, "@.service"); ok {
			args = append(args, "--unit="+base+"@*.service")
		} else {
			args = append(args, "_SYSTEMD_UNIT="+u)
		}
		var errBuf bytes.Buffer
		cmd := exec.Command("journalctl", args...)
		cmd.Stderr = &errBuf
		out, err := cmd.Output()
		if err != nil && strings.Contains(u, "@.") && strings.Contains(errBuf.String(), "No data available") {
			continue // no instance of the template in the journal
		}
		if err != nil {
			return nil, fmt.Errorf("journalctl: %w: %s", err, strings.TrimSpace(errBuf.String()))
		}
		if strings.Contains(errBuf.String(), "not seeing messages from other users") {
			// A user outside the journal's groups sees only their own
			// entries: "nothing written" would be wrong.
			return nil, errors.New("journalctl shows this user's entries only (run as root or as a member of group systemd-journal or adm)")
		}
		msgs, err := parseJSONMessages(out)
		if err != nil {
			return nil, err
		}
		all = append(all, msgs...)
	}
	if len(all) > max {
		all = all[len(all)-max:]
	}
	return all, nil
}

// parseJSONMessages returns the MESSAGE fields of `journalctl -o json`
// output (a string, or an array of bytes when it is not UTF-8).
func parseJSONMessages(out []byte) ([]string, error) {
	var msgs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e struct {
			Message json.RawMessage `json:"MESSAGE"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("reading journalctl's output: %w", err)
		}
		if len(e.Message) == 0 || string(e.Message) == "null" {
			continue // an entry without MESSAGE
		}
		var m string
		if err := json.Unmarshal(e.Message, &m); err != nil {
			var b []byte
			var ints []int
			if err2 := json.Unmarshal(e.Message, &ints); err2 != nil {
				return nil, fmt.Errorf("reading journalctl's output: MESSAGE %s: %w", e.Message, err2)
			}
			for _, i := range ints {
				b = append(b, byte(i))
			}
			m = string(b)
		}
		msgs = append(msgs, m)
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Join(errors.New("reading journalctl's output"), err)
	}
	return msgs, nil
}
