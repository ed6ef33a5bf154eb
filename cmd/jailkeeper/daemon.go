package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"
	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
	jjournal "github.com/jailkeeper/jailkeeper/pkg/journal"
)

const (
	defaultConfigDir = "/etc/jailkeeper.d"
	defaultStateDir  = "/var/lib/jailkeeper"
	// cursorEvery bounds how often the journal cursor is saved when no ban
	// forces a save.
	cursorEvery = time.Second
	// idleTrim is how long the journal must be quiet before the daemon
	// hands its free heap back to the OS.
	idleTrim = 30 * time.Second
	// maxGroup bounds the journal batches (of up to 1024 entries) handled
	// and committed together when the reader is ahead.
	maxGroup = 8
)

func cmdDaemon(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("daemon", "daemon [--config-dir DIR] [--state-dir DIR]", stderr)
	cfgDir := fs.String("config-dir", defaultConfigDir, "directory of *.yaml drop-ins")
	stateDir := fs.String("state-dir", "", "state directory (default $STATE_DIRECTORY or "+defaultStateDir+")")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
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
	d := &daemon{cfgDir: *cfgDir, stateDir: *stateDir, log: newLogger(stderr), reloads: make(chan chan error)}
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
			d.log.errorf(msgStopping, "jailkeeper: %v", err)
			if d.log.journal {
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
	log              *logger

	mu     sync.Mutex // serialises the engine, the table writes and the firewall
	cfg    *config.Config
	rt     *config.Runtime
	engine *jails.Engine
	table  *bans.Table
	fw     firewall.Backend
	bus    *dbusapi.Server

	lastCursor  string
	cursorSaved time.Time

	readerCancel context.CancelFunc
	readerDone   chan error
	reader       *jjournal.Reader
	batches      chan []jjournal.Entry
	reloads      chan chan error
}

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
		d.log.warnf("%s", w)
	}
	if err := os.MkdirAll(d.stateDir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	table, err := bans.Open(filepath.Join(d.stateDir, bans.FileName))
	if err != nil {
		return err
	}
	defer table.Close()
	d.table = table

	fw, err := firewall.New(rt.Backend, firewall.Options{
		KillConnections: rt.KillConnections,
		Logf: func(format string, args ...any) {
			d.log.event(journal.PriInfo, msgRepair, fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		return fmt.Errorf("firewall backend %s: %w", rt.Backend, err)
	}
	d.fw = fw
	now := time.Now()
	if gone, err := table.Expire(now); err != nil {
		return err
	} else if len(gone) > 0 {
		d.log.infof(msgExpire, "%d bans expired while jailkeeper was stopped", len(gone))
	}
	active := d.keepConfigured(rt, table.Active(now))
	if err := fw.Setup(rt.Layout, toFirewall(active)); err != nil {
		return fmt.Errorf("building firewall layout (%s): %w", fw.Name(), err)
	}
	engine, err := jails.NewEngine(rt.Jails, rt.Whitelist, table)
	if err != nil {
		return fmt.Errorf("starting jails: %w", err)
	}
	// Failure counts and totals survive restarts: restored from the table,
	// then saved with the journal cursor (docs/daemon.md).
	counted, err := engine.RestoreState(table.EachState, now)
	if err != nil {
		d.log.warnf("%v", err)
	}
	table.AttachState(engine)
	d.cfg, d.rt, d.engine = cfg, rt, engine

	if err := d.connectBus(); err != nil {
		d.log.warnf("D-Bus unavailable, running without org.jailkeeper: %v", err)
	}

	d.batches = make(chan []jjournal.Entry, maxGroup)
	d.lastCursor = table.Cursor()
	if err := d.startReader(); err != nil {
		return err
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	d.log.event(journal.PriNotice, msgStarted, fmt.Sprintf("jailkeeper %s started: backend %s, %d jails (%s), %d bans restored, failures of %d addresses restored",
		version, fw.Name(), len(rt.Jails), strings.Join(cfg.JailNames(), ", "), len(active), counted))
	sddaemon.SdNotify(false, "READY=1\nSTATUS="+d.status())

	var wdTick <-chan time.Time
	if iv, err := sddaemon.SdWatchdogEnabled(false); err == nil && iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		wdTick = t.C
	}
	expiry := time.NewTicker(time.Second)
	defer expiry.Stop()
	// Drift between watchdog periods (another program's nftables change,
	// an emptied ipset) is noticed by the firewall's Watcher and repaired
	// at once.
	drift, err := firewall.Watch(fw)
	if err != nil {
		d.log.warnf("not watching the firewall for drift, the watchdog alone repairs it: %v", err)
	}
	defer drift.Close()

	// Return the start's garbage (config, filters, restore) to the OS, and
	// a burst's once the journal has been quiet for idleTrim: the Go heap
	// otherwise keeps it resident until its next collection.
	debug.FreeOSMemory()
	lastBatch, trimmed := time.Now(), true

	for {
		select {
		case batch := <-d.batches:
			d.handleBatch(batch, d.queued()...)
			lastBatch, trimmed = time.Now(), false
		case err := <-d.readerDone:
			// The reader never stops by itself; restart it where it was.
			d.log.errorf(msgJournal, "journal reader stopped: %v; restarting", err)
			time.Sleep(time.Second)
			if err := d.startReader(); err != nil {
				d.log.errorf(msgJournal, "restarting journal reader: %v", err)
			}
		case resp := <-d.reloads:
			resp <- d.reload()
		case <-expiry.C:
			d.expire()
			if !trimmed && time.Since(lastBatch) >= idleTrim {
				debug.FreeOSMemory()
				trimmed = true
			}
		case <-wdTick:
			d.watchdog()
		case <-drift.Wake():
			d.repairDrift(drift)
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload()
				continue
			}
			sddaemon.SdNotify(false, "STOPPING=1\nSTATUS=stopping")
			d.log.event(journal.PriNotice, msgStopping, "jailkeeper stopping on "+s.String()+"; firewall layout and bans stay in place")
			return d.stop()
		}
	}
}

// keepConfigured drops (and logs) bans of jails no longer configured.
func (d *daemon) keepConfigured(rt *config.Runtime, active []bans.Ban) []bans.Ban {
	known := map[string]bool{}
	for _, j := range rt.Jails {
		known[j.Name] = true
	}
	var keep []bans.Ban
	for _, b := range active {
		if known[b.Jail] {
			keep = append(keep, b)
			continue
		}
		if _, err := d.table.Remove(b.Jail, b.Prefix); err != nil {
			d.log.errorf(msgUnban, "dropping ban of %s in removed jail %s: %v", b.Prefix, b.Jail, err)
			continue
		}
		d.log.event(journal.PriNotice, msgUnban, fmt.Sprintf("unbanned %s: jail %s is no longer configured", b.Prefix, b.Jail),
			"JAIL", b.Jail, "ADDRESS", bannedString(b.Prefix))
	}
	return keep
}

func (d *daemon) connectBus() error {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return err
	}
	srv, err := dbusapi.Serve(conn, d)
	if err != nil {
		conn.Close()
		return err
	}
	d.bus = srv
	return nil
}

func (d *daemon) startReader() error {
	var lookBack time.Duration
	for _, j := range d.rt.Jails {
		lookBack = max(lookBack, j.FindTime)
	}
	r, err := jjournal.Open(jjournal.Options{
		Units:       d.engine.Units(),
		Identifiers: d.engine.Identifiers(),
		Cursor:      d.lastCursor,
		LookBack:    lookBack,
		Logf: func(format string, args ...any) {
			d.log.event(journal.PriNotice, msgJournal, fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		return fmt.Errorf("opening the journal: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, d.batches) }()
	d.reader, d.readerCancel, d.readerDone = r, cancel, done
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
			d.handleBatch(b)
			continue
		case <-d.readerDone:
		}
		break
	}
	d.reader.Close()
	d.readerCancel, d.readerDone, d.reader = nil, nil, nil
}

func (d *daemon) stop() error {
	d.stopReader()
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if d.lastCursor != "" {
		if err := d.table.SaveCursor(d.lastCursor); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.fw.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing firewall: %w", err))
	}
	return errors.Join(errs...)
}

// queued takes the batches the reader has already queued, up to
// maxGroup-1: while it is ahead (a backlog, a flood), they are handled with
// the one just received and committed together, so the per-commit costs
// (the table's disk sync above all) are paid once per group, not per batch.
// When the reader keeps up, nothing is queued and nothing waits.
func (d *daemon) queued() [][]jjournal.Entry {
	var more [][]jjournal.Entry
	for len(more) < maxGroup-1 {
		select {
		case b := <-d.batches:
			more = append(more, b)
		default:
			return more
		}
	}
	return more
}

// handleBatch runs the engine over the entries of batch and more, in
// order, and commits the bans decided with the cursor of the last entry.
func (d *daemon) handleBatch(batch []jjournal.Entry, more ...[]jjournal.Entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var decisions []jails.Decision
	for _, b := range append([][]jjournal.Entry{batch}, more...) {
		if len(b) == 0 {
			continue
		}
		for _, e := range b {
			decisions = append(decisions, d.engine.Handle(e)...)
		}
		if c := b[len(b)-1].Cursor; c != "" {
			d.lastCursor = c
		}
		jjournal.Release(b)
	}
	if len(decisions) > 0 {
		var bs []bans.Ban
		for _, dec := range decisions {
			bs = append(bs, banFromDecision(dec))
		}
		// The bans and the cursor after the entries that decided them go
		// into one transaction.
		d.commit(d.lastCursor, bs, false)
		d.cursorSaved = time.Now()
	} else if time.Since(d.cursorSaved) >= cursorEvery {
		if err := d.table.SaveCursor(d.lastCursor); err != nil {
			d.log.errorf(msgJournal, "%v", err)
		}
		d.cursorSaved = time.Now()
	}
}

func banFromDecision(dec jails.Decision) bans.Ban {
	b := bans.Ban{Jail: dec.Jail, Prefix: dec.Prefix, Start: dec.Time, Reason: dec.Reason}
	if b.Start.IsZero() {
		b.Start = time.Now()
	}
	if dec.Duration != jails.Permanent {
		// Count from now, not from the failure: a ban applied late (after a
		// restart) still lasts its full time.
		b.Expires = time.Now().Add(dec.Duration)
	}
	return b
}

// push adds bans to the firewall; an error is logged (the watchdog's
// Verify adds what the table holds and the kernel misses).
func (d *daemon) push(bs []bans.Ban) {
	if err := d.fw.Add(toFirewall(bs)); err != nil {
		d.log.errorf(msgBan, "adding %d bans to the firewall: %v (the watchdog will retry)", len(bs), err)
	}
}

// apply is commit without a cursor: bans an administrator made.
func (d *daemon) apply(bs []bans.Ban, manual bool) (int, error) {
	return d.commit("", bs, manual)
}

// commit pushes the new or extended bans among bs to the firewall, then
// records them in the table, with the journal cursor when it is not ""
// (one transaction). For the engine's decisions the kernel comes first,
// so that a ban takes effect without waiting for the disk; a crash in
// between loses nothing: the cursor is not saved either, so the restarted
// daemon reads the entries that decided the bans again and decides them
// again. manual marks bans made by an administrator: they are recorded
// first (a failure to record them is the caller's error and leaves the
// kernel alone), and the engine forgets the failures it tracked inside
// them (its own decisions already reset the counters they needed to, and
// forgetting would also drop the addresses from an ongoing
// distributed-attack count). Callers hold d.mu.
func (d *daemon) commit(cursor string, bs []bans.Ban, manual bool) (int, error) {
	pushed := false
	if !manual {
		if pending := d.table.Changes(bs...); len(pending) > 0 {
			d.push(pending)
			pushed = true
		}
	}
	var changed []bans.Ban
	var err error
	if cursor != "" {
		changed, err = d.table.Commit(cursor, bs...)
	} else {
		changed, err = d.table.Add(bs...)
	}
	if err != nil {
		d.log.errorf(msgBan, "%v", err)
		return 0, err
	}
	if len(changed) == 0 {
		return 0, nil
	}
	if !pushed {
		d.push(changed)
	}
	d.log.logBans(evBanned, changed)
	if manual {
		for _, b := range changed {
			d.engine.Forget(b.Jail, b.Prefix)
		}
	}
	if d.bus != nil {
		announceBanned(d.bus, changed)
	}
	sddaemon.SdNotify(false, "STATUS="+d.statusLocked())
	return len(changed), nil
}

func (d *daemon) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	gone, err := d.table.Expire(time.Now())
	if err != nil {
		d.log.errorf(msgExpire, "%v", err)
		return
	}
	if len(gone) == 0 {
		return
	}
	if err := d.fw.Remove(toFirewall(gone)); err != nil {
		d.log.errorf(msgExpire, "removing %d expired bans from the firewall: %v", len(gone), err)
	}
	d.log.logBans(evExpired, gone)
	if d.bus != nil {
		announceUnbanned(d.bus, gone)
	}
	sddaemon.SdNotify(false, "STATUS="+d.statusLocked())
}

// verifyFirewall verifies the firewall against the table, repairing and
// logging (once) any drift.
func (d *daemon) verifyFirewall() error {
	d.mu.Lock()
	found, err := d.fw.Verify(d.rt.Layout, toFirewall(d.table.Active(time.Now())))
	d.mu.Unlock()
	if len(found) > 0 {
		d.log.event(journal.PriWarning, msgRepair, fmt.Sprintf("firewall drift repaired: %s", strings.Join(found, "; ")))
	}
	return err
}

// repairDrift verifies the firewall now if the watcher says it may have
// drifted.
func (d *daemon) repairDrift(w *firewall.Watcher) {
	d.mu.Lock()
	drifted := w.Check()
	d.mu.Unlock()
	if drifted {
		if err := d.verifyFirewall(); err != nil {
			d.log.errorf(msgRepair, "firewall repair failed: %v", err)
		}
	}
}

// watchdog verifies the firewall (repairing drift) and the journal loop,
// and pings WATCHDOG=1 only when both are healthy.
func (d *daemon) watchdog() {
	if err := d.verifyFirewall(); err != nil {
		d.log.errorf(msgRepair, "firewall repair failed, withholding watchdog ping: %v", err)
		return
	}
	iv, _ := sddaemon.SdWatchdogEnabled(false)
	if r := d.reader; r != nil && iv > 0 && time.Since(r.Alive()) > iv {
		d.log.errorf(msgJournal, "journal loop stalled since %s, withholding watchdog ping", r.Alive().Format(time.RFC3339))
		return
	}
	sddaemon.SdNotify(false, "WATCHDOG=1")
}

func (d *daemon) status() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.statusLocked()
}

func (d *daemon) statusLocked() string {
	names := d.cfg.JailNames()
	return fmt.Sprintf("%d jails (%s), %d bans", len(names), strings.Join(names, ", "), d.table.Len())
}

func toFirewall(bs []bans.Ban) []firewall.Ban {
	out := make([]firewall.Ban, len(bs))
	for i, b := range bs {
		out[i] = firewall.Ban{Jail: b.Jail, Prefix: b.Prefix, Expires: b.Expires}
	}
	return out
}

// --- dbusapi.Manager ---

func (d *daemon) jailByName(name string) (jails.Jail, bool) {
	for _, j := range d.rt.Jails {
		if j.Name == name {
			return j, true
		}
	}
	return jails.Jail{}, false
}

// Ban implements dbusapi.Manager.
func (d *daemon) Ban(jail string, prefixes []netip.Prefix, dur time.Duration) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	j, ok := d.jailByName(jail)
	if !ok {
		return 0, fmt.Errorf("%w %q (jails: %s)", dbusapi.ErrUnknownJail, jail, strings.Join(d.cfg.JailNames(), ", "))
	}
	if dur == 0 {
		dur = j.BanTime
	}
	now := time.Now()
	bs := make([]bans.Ban, 0, len(prefixes))
	for _, p := range prefixes {
		if d.rt.Whitelist.Overlaps(p) {
			return 0, fmt.Errorf("%w: %s overlaps the whitelist; nothing banned", dbusapi.ErrWhitelisted, p)
		}
		b := bans.Ban{Jail: jail, Prefix: p, Start: now, Reason: "banned by an administrator"}
		if dur > 0 {
			b.Expires = now.Add(dur)
		}
		bs = append(bs, b)
	}
	return d.apply(bs, true)
}

// Unban implements dbusapi.Manager.
func (d *daemon) Unban(jail string, p netip.Prefix) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if jail != "" {
		if _, ok := d.jailByName(jail); !ok {
			return 0, fmt.Errorf("%w %q", dbusapi.ErrUnknownJail, jail)
		}
	}
	gone, err := d.table.Remove(jail, p)
	if err != nil {
		return 0, err
	}
	if len(gone) > 0 {
		if err := d.fw.Remove(toFirewall(gone)); err != nil {
			return 0, fmt.Errorf("removing from the firewall: %w", err)
		}
	}
	d.log.logBans(evUnbanned, gone)
	for _, b := range gone {
		d.engine.Forget(b.Jail, b.Prefix)
	}
	if d.bus != nil {
		announceUnbanned(d.bus, gone)
	}
	if len(gone) > 0 {
		sddaemon.SdNotify(false, "STATUS="+d.statusLocked())
	}
	return len(gone), nil
}

// Status implements dbusapi.Manager.
func (d *daemon) Status(jail string) ([]dbusapi.JailStatus, error) {
	d.mu.Lock()
	names := d.cfg.JailNames()
	engine := d.engine
	d.mu.Unlock()
	stats := map[string]jails.JailStats{}
	for _, s := range engine.Stats() {
		stats[s.Name] = s
	}
	if jail != "" {
		found := false
		for _, n := range names {
			found = found || n == jail
		}
		if !found {
			return nil, fmt.Errorf("%w %q (jails: %s)", dbusapi.ErrUnknownJail, jail, strings.Join(names, ", "))
		}
		names = []string{jail}
	}
	active := d.table.Active(time.Now())
	out := make([]dbusapi.JailStatus, 0, len(names))
	for _, n := range names {
		st := dbusapi.JailStatus{
			Name:            n,
			CurrentlyFailed: uint32(stats[n].CurrentlyFailed),
			TotalFailed:     uint32(stats[n].TotalFailed),
			TotalBanned:     uint32(d.table.Total(n)),
			Banned:          []string{},
		}
		for _, b := range active {
			if b.Jail == n {
				st.Banned = append(st.Banned, bannedString(b.Prefix))
			}
		}
		st.CurrentlyBanned = uint32(len(st.Banned))
		out = append(out, st)
	}
	return out, nil
}

// bannedString prints single addresses without their /32 or /128.
func bannedString(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// ListBans implements dbusapi.Manager.
func (d *daemon) ListBans() []dbusapi.BanInfo {
	active := d.table.Active(time.Now())
	out := make([]dbusapi.BanInfo, len(active))
	for i, b := range active {
		out[i] = dbusapi.BanInfo{Jail: b.Jail, Prefix: bannedString(b.Prefix), Start: b.Start.Unix(), Reason: b.Reason}
		if !b.Permanent() {
			out[i].Expires = b.Expires.Unix()
		}
	}
	return out
}

// Reload implements dbusapi.Manager. The reload runs on the daemon's main
// loop, which owns the journal reader.
func (d *daemon) Reload() error {
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
			err = d.swap(cfg, rt)
		}
	}
	if err != nil {
		d.log.errorf(msgConfig, "reload refused, running configuration kept: %v", err)
		return fmt.Errorf("%w: %v", dbusapi.ErrBadConfig, err)
	}
	d.log.event(journal.PriNotice, msgConfig, "configuration reloaded: "+d.status())
	return nil
}

func (d *daemon) swap(cfg *config.Config, rt *config.Runtime) error {
	engine, err := jails.NewEngine(rt.Jails, rt.Whitelist, d.table)
	if err != nil {
		return err
	}
	d.stopReader()
	d.mu.Lock()
	active := d.keepConfigured(rt, d.table.Active(time.Now()))
	if err := d.fw.Setup(rt.Layout, toFirewall(active)); err != nil {
		// Put the old layout back: never lose protection on a bad reload.
		d.fw.Setup(d.rt.Layout, toFirewall(d.table.Active(time.Now())))
		d.mu.Unlock()
		if rerr := d.startReader(); rerr != nil {
			d.log.errorf(msgJournal, "%v", rerr)
		}
		return fmt.Errorf("building firewall layout: %w", err)
	}
	for _, w := range rt.Warnings {
		d.log.warnf("%s", w)
	}
	// The reader resumes after the last entry handled, so the failures
	// counted so far must come along: a reload gives no attacker a fresh
	// count.
	engine.Adopt(d.engine)
	d.table.AttachState(engine)
	d.cfg, d.rt, d.engine = cfg, rt, engine
	d.mu.Unlock()
	return d.startReader()
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

// startCPUProfile writes a CPU profile of the daemon to file until the
// returned function runs (on exit): JAILKEEPER_CPUPROFILE=FILE, a
// debugging aid for `make bench` and for users who report slowness.
// Unlike perf with call graphs, it costs the daemon little.
func startCPUProfile(file string) (func(), error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("creating CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
