// Command jailkeeperd is the ban service: `jailkeeper daemon` execs it
// (same PID, argv and environment), and the unit runs it that way. It
// wires the stages — journal reader, keeper (engine, ban table,
// firewall), D-Bus service — and owns sd_notify, the watchdog, reload and
// signals. It is an executable of its own so that none of the CLI's code
// is mapped into the daemon: its resident memory grows with its binary's
// size (docs/daemon.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"
	"golang.org/x/sys/unix"

	"github.com/jailkeeper/jailkeeper/internal/cliflag"
	"github.com/jailkeeper/jailkeeper/internal/keeper"
	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
	jjournal "github.com/jailkeeper/jailkeeper/pkg/journal"
	"github.com/jailkeeper/jailkeeper/pkg/journal/sdjournal"
)

const (
	defaultConfigDir = "/etc/jailkeeper.d"
	defaultStateDir  = "/var/lib/jailkeeper"
	// idleTrim is how long the journal must be quiet before the daemon
	// hands its free heap back to the OS.
	idleTrim = 30 * time.Second
	// maxGroup bounds the journal batches (of up to 1024 entries) handled
	// and committed together when the reader is ahead.
	maxGroup = 8
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run runs the daemon with args, the arguments of `jailkeeper daemon`
// (invoked through it, the first is "daemon").
func run(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "daemon" {
		args = args[1:]
	}
	fs := cliflag.NewFlagSet("daemon", "daemon [--config-dir DIR] [--state-dir DIR]", stderr)
	cfgDir := fs.String("config-dir", defaultConfigDir, "directory of *.yaml drop-ins")
	stateDir := fs.String("state-dir", "", "state directory (default $STATE_DIRECTORY or "+defaultStateDir+")")
	pos, err := cliflag.ParseInterspersed(fs, args)
	if err != nil {
		return cliflag.UsageStatus(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "jailkeeper daemon: unexpected argument %q\n", pos[0])
		return 2
	}
	if *stateDir == "" {
		*stateDir = defaultStateDir
		if s := os.Getenv("STATE_DIRECTORY"); s != "" {
			*stateDir = strings.Split(s, ":")[0]
		}
	}
	d := &daemon{cfgDir: *cfgDir, stateDir: *stateDir, log: keeper.NewLogger(stderr), reloads: make(chan chan error), resolved: make(chan struct{})}
	if d.busLimit, err = dbusapi.BusLimitFromEnv(); err != nil {
		fmt.Fprintf(stderr, "jailkeeper daemon: %v\n", err)
		return 1
	}
	if f := os.Getenv("JAILKEEPER_CPUPROFILE"); f != "" {
		stop, err := startCPUProfile(f)
		if err != nil {
			fmt.Fprintf(stderr, "jailkeeper daemon: %v\n", err)
			return 1
		}
		defer stop()
	}
	if err := d.run(); err != nil {
		// Under systemd stderr is the journal already, and it is the safer
		// way to say a last word: a native entry sent right before exit can
		// lose its _SYSTEMD_UNIT (journald reads the cgroup of a process
		// that is gone), the stream cannot. Say it once, at priority err.
		if toJournal, _ := journal.StderrIsJournalStream(); toJournal {
			fmt.Fprintf(stderr, "<%d>jailkeeper: %s\n", journal.PriErr, oneLine(err.Error()))
		} else {
			d.log.Errorf(keeper.MsgStopping, "jailkeeper: %v", err)
			if d.log.ToJournal() {
				fmt.Fprintf(stderr, "jailkeeper: %v\n", err)
			}
		}
		sddaemon.SdNotify(false, "STATUS=failed: "+oneLine(err.Error()))
		var ce configError
		if errors.As(err, &ce) {
			return exitConfig
		}
		return 1
	}
	return 0
}

// exitConfig is the exit status for a configuration that does not load
// (EX_CONFIG); the unit's RestartPreventExitStatus= stops systemd from
// restarting into the same error.
const exitConfig = 78

// configError marks errors of the configuration itself.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// daemon wires the stages: journal → engine → ban table → firewall, plus
// the D-Bus service, sd_notify and the watchdog.
type daemon struct {
	cfgDir, stateDir string
	log              *keeper.Logger
	k                *keeper.Keeper
	busLimit         int // the bus's message size limit; 0: dbusapi.BusLimit

	readerCancel context.CancelFunc
	readerDone   chan error
	reader       *sdjournal.Reader
	batches      chan []jjournal.Entry
	reloads      chan chan error

	// The D-Bus service, while connected; busErr says why not (STATUS=),
	// busNext when to try again and busWait the backoff after that.
	conn    *dbusapi.ServiceConn
	srv     *dbusapi.Server
	busErr  error
	busNext time.Time
	busWait time.Duration
	dropped uint64                 // signals dropped, as last logged
	busDown atomic.Pointer[string] // the STATUS= suffix while the bus is down, else nil

	// resolved receives when every whitelist host name that did not
	// resolve does (retryWhitelist); stopResolve stops that retry.
	resolved    chan struct{}
	stopResolve context.CancelFunc
}

// Whitelist host names that did not resolve are retried after
// resolveRetryMin, backing off to resolveRetryMax.
const (
	resolveRetryMin = 5 * time.Second
	resolveRetryMax = time.Minute
)

// retryWhitelist resolves names in the background until each has an
// address, then tells the main loop (d.resolved), which reloads: the
// reload resolves the whole whitelist again and swaps it in. A later call
// replaces the retry.
func (d *daemon) retryWhitelist(names []string) {
	if d.stopResolve != nil {
		d.stopResolve()
		d.stopResolve = nil
	}
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stopResolve = cancel
	go func() {
		for wait := resolveRetryMin; ; wait = min(2*wait, resolveRetryMax) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			ok := true
			for _, n := range names {
				lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := jails.LookupNetIP(lctx, "ip", n)
				lcancel()
				ok = ok && err == nil
			}
			if ok {
				select {
				case d.resolved <- struct{}{}:
				case <-ctx.Done():
				}
				return
			}
		}
	}()
}

// Reconnecting to the bus backs off from busRetryMin to busRetryMax.
const (
	busRetryMin = time.Second
	busRetryMax = 10 * time.Second
)

func (d *daemon) run() error {
	cfg, err := config.Load(d.cfgDir)
	if err != nil {
		return configError{err}
	}
	rt, err := cfg.Resolve()
	if err != nil {
		return configError{err}
	}
	for _, w := range rt.Warnings {
		d.log.Warnf("%s", w)
	}
	if err := os.MkdirAll(d.stateDir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	// A corrupt state file is moved aside; the keeper then starts from
	// the bans the kernel still holds.
	table, broken, err := bans.OpenRecovering(filepath.Join(d.stateDir, bans.FileName))
	if err != nil {
		return err
	}
	defer table.Close()
	if broken != nil {
		d.log.Event(journal.PriCrit, keeper.MsgRepair, fmt.Sprintf("%v; moved to %s, starting from the bans the kernel holds", broken.Cause, broken.MovedTo))
	}

	k, err := keeper.Start(rt, table, keeper.Options{
		Log: d.log,
		Notify: func(state string) {
			// The keeper's STATUS= lines carry the bus's state too.
			if p := d.busDown.Load(); p != nil && strings.HasPrefix(state, "STATUS=") {
				state += *p
			}
			sddaemon.SdNotify(false, state)
		},
		Reload:     d.requestReload,
		FromKernel: broken != nil,
	})
	if err != nil {
		return err
	}
	d.k = k

	if err := d.connectBus(); err != nil {
		// At boot the daemon starts before the system bus (the unit is
		// ordered like a firewall, before network-pre.target): checkBus
		// keeps trying and takes org.jailkeeper once dbus is up.
		d.log.Warnf("D-Bus unavailable, running without org.jailkeeper until the system bus is up: %v", err)
		d.busFailed(err)
	}

	d.batches = make(chan []jjournal.Entry, maxGroup)
	if err := d.startReader(); err != nil {
		return err
	}

	d.retryWhitelist(rt.Unresolved)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// The failure counts are restored in the background: the keeper logs
	// them when they are in.
	d.log.Event(journal.PriNotice, keeper.MsgStarted, fmt.Sprintf("jailkeeper %s started: backend %s, %d jails (%s), %d bans restored",
		version, k.Backend(), len(rt.Jails), strings.Join(cfg.JailNames(), ", "), k.Restored()))
	sddaemon.SdNotify(false, "READY=1\nSTATUS="+d.statusLine())

	var wdTick <-chan time.Time
	if iv, err := sddaemon.SdWatchdogEnabled(false); err == nil && iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		wdTick = t.C
	}
	expiry := time.NewTicker(time.Second)
	defer expiry.Stop()

	// Return the start's garbage (config, filters, restore) to the OS, and
	// a burst's once the journal has been quiet for idleTrim: the Go heap
	// otherwise keeps it resident until its next collection.
	debug.FreeOSMemory()
	lastBatch, trimmed := time.Now(), true
	// Armed by each batch: once the journal is quiet, what the batches
	// counted is saved (SaveCursorIdle), not left for the next entry.
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()

	for {
		select {
		case batch := <-d.batches:
			d.handle(d.queued(batch)...)
			quiet.Reset(keeper.QuietSave)
			lastBatch, trimmed = time.Now(), false
		case err := <-d.readerDone:
			// The reader never stops by itself; restart it where it was.
			d.log.Errorf(keeper.MsgJournal, "journal reader stopped: %v; restarting", err)
			time.Sleep(time.Second)
			if err := d.startReader(); err != nil {
				d.log.Errorf(keeper.MsgJournal, "restarting journal reader: %v", err)
			}
		case <-d.resolved:
			d.log.Infof(keeper.MsgConfig, "whitelist host names %s resolve now: reloading", strings.Join(d.k.Runtime().Unresolved, ", "))
			d.reload()
		case resp := <-d.reloads:
			resp <- d.reload()
		case <-expiry.C:
			if d.k.Expire() {
				// More are due (a mass expiry, lifted in steps): the
				// next step right after the journal's batches.
				expiry.Reset(10 * time.Millisecond)
				continue
			}
			expiry.Reset(time.Second)
			d.k.RetrySave()
			d.checkBus()
			if !trimmed && time.Since(lastBatch) >= idleTrim {
				debug.FreeOSMemory()
				trimmed = true
			}
		case <-quiet.C:
			if w := d.k.SaveCursorIdle(); w > 0 {
				quiet.Reset(w)
			}
		case <-wdTick:
			d.watchdog()
		case <-d.k.DriftWake():
			// Drift between watchdog periods: repaired at once.
			if err := d.k.RepairDrift(); err != nil {
				d.log.Errorf(keeper.MsgRepair, "%v", err)
			}
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload()
				continue
			}
			sddaemon.SdNotify(false, "STOPPING=1\nSTATUS=stopping")
			d.log.Event(journal.PriNotice, keeper.MsgStopping, "jailkeeper stopping on "+s.String()+"; firewall layout and bans stay in place")
			return d.stop()
		}
	}
}

func (d *daemon) connectBus() error {
	conn, err := dbusapi.ConnectService()
	if err != nil {
		return err
	}
	srv, err := dbusapi.Serve(conn.Conn, d.k)
	if err != nil {
		conn.Abort()
		return err
	}
	srv.SetVersion(version)
	srv.SetBusLimit(d.busLimit)
	d.k.SetAnnouncer(srv)
	d.conn, d.srv, d.busErr, d.busWait = conn, srv, nil, 0
	d.busDown.Store(nil)
	return nil
}

// busFailed records why the bus is unavailable and when to try again.
func (d *daemon) busFailed(err error) {
	d.busErr = err
	suffix := fmt.Sprintf("; D-Bus API down, retrying (%s)", oneLine(err.Error()))
	d.busDown.Store(&suffix)
	d.busWait = min(max(2*d.busWait, busRetryMin), busRetryMax)
	d.busNext = time.Now().Add(d.busWait)
	sddaemon.SdNotify(false, "STATUS="+d.statusLine())
}

// checkBus runs every second on the main loop: it drops a connection that
// is lost or that the bus no longer reads from (Server.Health; closing
// the socket frees whatever was blocked writing to it), reconnects with
// backoff and re-exports the service, and logs signals the queue had to
// drop. The ban path never waits for any of it.
func (d *daemon) checkBus() {
	if d.srv != nil {
		if n := d.srv.Dropped(); n != d.dropped {
			d.log.Warnf("D-Bus: %d ban signals dropped (a slow bus or subscriber); ListBansPage has every ban", n-d.dropped)
			d.dropped = n
		}
		err := d.srv.Health()
		if err == nil {
			return
		}
		d.log.Errorf(keeper.MsgStopping, "%v; reconnecting", err)
		d.k.SetAnnouncer(nil)
		d.srv.Close()
		d.conn.Abort()
		d.conn, d.srv, d.dropped = nil, nil, 0
		d.busFailed(err)
	}
	if time.Now().Before(d.busNext) {
		return
	}
	if err := d.connectBus(); err != nil {
		d.busFailed(err)
		return
	}
	d.log.Infof(keeper.MsgStarted, "system bus up: took %s", dbusapi.BusName)
	sddaemon.SdNotify(false, "STATUS="+d.statusLine())
}

// statusLine is the keeper's STATUS= line, plus the bus's state while the
// D-Bus service is down.
func (d *daemon) statusLine() string {
	line := d.k.StatusLine()
	if p := d.busDown.Load(); p != nil {
		line += *p
	}
	return line
}

func (d *daemon) startReader() error {
	if !d.k.ReadsJournal() {
		return nil // API-only jails: nothing to read
	}
	r, err := sdjournal.Open(sdjournal.Options{
		Units:       d.k.Units(),
		Identifiers: d.k.Identifiers(),
		Unitless:    d.k.Unitless(),
		Cursor:      d.k.Cursor(),
		LookBack:    d.k.LookBack(),
		Logf: func(format string, args ...any) {
			d.log.Event(journal.PriNotice, keeper.MsgJournal, fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		return fmt.Errorf("opening the journal: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, d.batches) }()
	d.reader, d.readerCancel, d.readerDone = r, cancel, done
	d.k.SetJournalTail(r)
	return nil
}

func (d *daemon) stopReader() {
	if d.readerCancel == nil {
		return
	}
	d.readerCancel()
	// Drain batches the reader may still be sending, then wait for it.
	for {
		select {
		case b := <-d.batches:
			d.handle(b)
			continue
		case <-d.readerDone:
		}
		break
	}
	d.k.SetJournalTail(nil)
	d.reader.Close()
	d.readerCancel, d.readerDone, d.reader = nil, nil, nil
}

func (d *daemon) stop() error {
	d.stopReader()
	return d.k.Close()
}

// queued takes the batches the reader has already queued, up to
// maxGroup-1: while it is ahead (a backlog, a flood), they are handled with
// the one just received and committed together, so the per-commit costs
// (the table's disk sync above all) are paid once per group, not per batch.
// When the reader keeps up, nothing is queued and nothing waits.
func (d *daemon) queued(first []jjournal.Entry) [][]jjournal.Entry {
	group := [][]jjournal.Entry{first}
	for len(group) < maxGroup {
		select {
		case b := <-d.batches:
			group = append(group, b)
		default:
			return group
		}
	}
	return group
}

// handle hands a group of batches to the keeper and the batches back to
// the reader for reuse.
func (d *daemon) handle(group ...[]jjournal.Entry) {
	d.k.HandleBatch(group...)
	for _, b := range group {
		sdjournal.Release(b)
	}
}

// watchdog verifies the firewall (repairing drift) and the journal loop,
// and pings WATCHDOG=1 only when both are healthy.
func (d *daemon) watchdog() {
	if err := d.k.Verify(); err != nil {
		d.log.Errorf(keeper.MsgRepair, "%v, withholding watchdog ping", err)
		return
	}
	// Bans in the kernel but not on disk (logged once, in STATUS=): no
	// ping until they are saved.
	if err := d.k.Health(); err != nil {
		return
	}
	iv, _ := sddaemon.SdWatchdogEnabled(false)
	if r := d.reader; r != nil && iv > 0 && time.Since(r.Alive()) > iv {
		d.log.Errorf(keeper.MsgJournal, "journal loop stalled since %s, withholding watchdog ping", r.Alive().Format(time.RFC3339))
		return
	}
	sddaemon.SdNotify(false, "WATCHDOG=1")
}

// requestReload serves the keeper's Reload (D-Bus): the reload runs on the
// daemon's main loop, which owns the journal reader.
func (d *daemon) requestReload() error {
	resp := make(chan error, 1)
	d.reloads <- resp
	return <-resp
}

// reload re-reads the configuration: the new one replaces the running one
// only when it loads completely. Runs on the main loop.
func (d *daemon) reload() error {
	sddaemon.SdNotify(false, fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	defer sddaemon.SdNotify(false, "READY=1")
	cfg, err := config.Load(d.cfgDir)
	if err == nil {
		var rt *config.Runtime
		if rt, err = cfg.Resolve(); err == nil {
			err = d.swap(rt)
		}
	}
	if err != nil {
		d.log.Errorf(keeper.MsgConfig, "reload refused, running configuration kept: %v", err)
		return fmt.Errorf("%w: %v", dbusapi.ErrBadConfig, err)
	}
	d.log.Event(journal.PriNotice, keeper.MsgConfig, "configuration reloaded: "+d.k.StatusLine())
	d.retryWhitelist(d.k.Runtime().Unresolved)
	return nil
}

// swap stops the reader (its queued batches are handled under the running
// configuration), swaps the keeper's configuration and restarts the reader
// at the last entry handled, whether the swap worked or not.
func (d *daemon) swap(rt *config.Runtime) error {
	next, err := d.k.Prepare(rt)
	if err != nil {
		return err
	}
	d.stopReader()
	err = d.k.Swap(next)
	if rerr := d.startReader(); rerr != nil {
		if err != nil {
			d.log.Errorf(keeper.MsgJournal, "%v", rerr)
			return err
		}
		return rerr
	}
	return err
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}

func oneLine(s string) string {
	return strings.ReplaceAll(s, "\n", " ")
}
