package actions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"

	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

// ErrConfig wraps the errors of a configuration that does not load.
var ErrConfig = errors.New("configuration does not load")

// ErrNoActions is returned by Run when the configuration has no actions.
var ErrNoActions = errors.New("no actions configured (add an actions: section to a drop-in)")

// NewDeliverer builds the deliverer of a, for the host named host.
func NewDeliverer(a config.ResolvedAction, host string, js []jails.Jail, log Logger) Deliverer {
	switch a.Type {
	case config.ActionMail:
		return NewMail(a, host, js)
	case config.ActionWebhook:
		return NewWebhook(a, host)
	default:
		return NewExec(a, host, log)
	}
}

// Run is `jailkeeper actions`: it loads the actions from the drop-ins of
// cfgDir, opens the store in stateDir, runs until SIGTERM or SIGINT, and
// tells systemd (sd_notify) when it is ready and stopping. A configuration
// that does not load is an error wrapping ErrConfig.
func Run(cfgDir, stateDir string, log Logger) error {
	cfg, err := config.Load(cfgDir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	acts, err := cfg.ResolveActions()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(acts) == 0 {
		return ErrNoActions
	}
	// The jails (units, findtime, compiled filter) are needed only to
	// quote journal lines in mails: compiling every filter costs memory.
	var js []jails.Jail
	for _, a := range acts {
		if a.Lines {
			rt, err := cfg.Resolve()
			if err != nil {
				return fmt.Errorf("%w: %w", ErrConfig, err)
			}
			js = rt.Jails
			break
		}
	}
	host, _ := os.Hostname()
	st, err := OpenStore(stateDir)
	if err != nil {
		return err
	}
	defer st.Close()
	dl := map[string]Deliverer{}
	for _, a := range acts {
		dl[a.Name] = NewDeliverer(a, host, js, log)
	}
	eng := New(Options{Actions: acts, Deliverers: dl, Store: st, Log: log})
	if err := eng.Start(); err != nil {
		return err
	}
	names := make([]string, len(acts))
	for i, a := range acts {
		names[i] = a.Name + " (" + a.Type + ")"
	}
	log.Log(journal.PriInfo, MsgStarted, fmt.Sprintf("jailkeeper actions started: %d actions: %v", len(acts), names), nil)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// SIGHUP would end the process: the configuration is read at start,
	// so say how to apply a change instead.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() { signal.Stop(hup); close(hup) }()
	go func() {
		for range hup {
			log.Log(journal.PriNotice, MsgStarted, "SIGHUP: the configuration is read at start; systemctl restart jailkeeper-actions applies a change without losing a ban", nil)
		}
	}()
	Follow(ctx, eng, log, func(status string) {
		_, _ = daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS="+status)
		// What loading and reconciling allocated is garbage now: hand it
		// back, so that the idle service holds only what it uses.
		debug.FreeOSMemory()
	})
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	log.Log(journal.PriInfo, MsgStarted, "jailkeeper actions stopping: finishing the jobs in flight, the queued ones stay pending", nil)
	eng.Stop()
	return nil
}
