package actions

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/jailkeeper/jailkeeper/pkg/config"
)

// Exec runs a command per event: argv with {field} placeholders (no
// shell), the same fields as JK_FIELD environment variables. What the
// command writes goes to the journal, one entry per line (at most 64 KiB).
type Exec struct {
	a    config.ResolvedAction
	host string
	log  Logger
}

// NewExec returns the deliverer of an exec action.
func NewExec(a config.ResolvedAction, host string, log Logger) *Exec {
	return &Exec{a: a, host: host, log: log}
}

// Deliver implements Deliverer. A non-zero exit is an error carrying the
// exit status.
func (x *Exec) Deliver(ctx context.Context, evs []Event) error {
	for _, ev := range evs {
		f := ev.Fields(x.host, x.a.Name)
		argv := make([]string, len(x.a.Argv))
		for i, a := range x.a.Argv {
			argv[i] = Expand(a, f, nil)
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = os.Environ()
		for _, k := range config.Placeholders {
			cmd.Env = append(cmd.Env, "JK_"+strings.ToUpper(k)+"="+f[k])
		}
		var out limitedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		killGroupOnCancel(cmd)
		err := cmd.Run()
		sc := bufio.NewScanner(bytes.NewReader(out.b.Bytes()))
		for sc.Scan() {
			x.log.Log(journal.PriInfo, MsgOutput, sc.Text(), map[string]string{
				"JAIL": ev.Jail, "ADDRESS": ev.Address(), "ACTION": x.a.Name, "EVENT": ev.Kind.String()})
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: killed after the timeout of %s", argv[0], x.a.Timeout)
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return fmt.Errorf("%s: exit status %d", argv[0], ee.ExitCode())
			}
			return fmt.Errorf("%w: running %s: %v", ErrPermanent, argv[0], err)
		}
	}
	return nil
}

// limitedBuffer keeps the first 64 KiB written to it.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// killGroupOnCancel runs cmd in a process group of its own and, when its
// context ends, kills the whole group: sendmail's postdrop or a script's
// children would otherwise outlive the timeout.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
}
