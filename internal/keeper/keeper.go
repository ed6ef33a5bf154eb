// Package keeper is the daemon's core: it turns the engine's decisions and
// an administrator's requests into bans in the kernel and in the ban table
// (the kernel-before-disk ban path), validates bans, lifts and expires
// them, verifies the firewall layout, aggregates status, and swaps in a
// reloaded configuration. It implements dbusapi.Manager, and logs every
// event to the journal with a fixed MESSAGE_ID per kind (Logger), and
// keeps the ban history clients read (history.go). It starts no goroutine
// but the one that writes that history (at most one at a time) and, at
// Start, those that build the engine, restore its failure counts after
// Start returned, and report how the ban histories were read; it owns
// neither the journal reader nor the select loop nor sd_notify:
// cmd/jailkeeper wires it to those. Its methods are safe for
// concurrent use (one lock serialises the engine, the table's writes and
// the firewall).
package keeper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
	jjournal "github.com/jailkeeper/jailkeeper/pkg/journal"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// CursorEvery bounds how often the journal cursor is saved when no ban
// forces a save.
const CursorEvery = time.Second

// QuietSave is how long the journal must be quiet before the daemon saves
// the cursor and the counting state of the entries handled since the last
// save (SaveCursorIdle); IdleSaveGap is the least time between two such
// saves.
const (
	QuietSave   = 100 * time.Millisecond
	IdleSaveGap = 250 * time.Millisecond
)

// Announcer emits the D-Bus signals of ban changes (dbusapi.Server).
type Announcer interface {
	Banned(jail string, p netip.Prefix, expires time.Time, reason string) error
	BannedMany(jail string, ps []netip.Prefix, expires []time.Time) error
	Unbanned(jail string, p netip.Prefix) error
	UnbannedMany(jail string, ps []netip.Prefix) error
}

// Options are what a Keeper needs besides the configuration and the table.
type Options struct {
	// Log receives the events (bans, expiries, repairs, …). Required.
	Log *Logger
	// NetNS is the network namespace the firewall acts in ("" = the
	// caller's own; see firewall.Options).
	NetNS string
	// NewBackend opens a firewall backend; nil means firewall.New. Tests
	// pass one that returns fakes.
	NewBackend func(name string, opts firewall.Options) (firewall.Backend, error)
	// Notify receives sd_notify state lines ("STATUS=…"); nil drops them.
	Notify func(state string)
	// Reload serves the Reload method of dbusapi.Manager: the daemon
	// re-reads the configuration on its main loop, which owns the journal
	// reader, and calls Prepare and Swap. nil refuses reloads.
	Reload func() error
	// Own lists the machine's own addresses, which are never banned
	// (prefix.Refuse); nil means the addresses of the interfaces the
	// process sees. The Keeper asks again at most every ownEvery.
	Own func() ([]netip.Addr, error)
	// FromKernel: the table was started empty because its file was found
	// corrupt (bans.OpenRecovering); Start fills it with the bans the
	// kernel's sets still hold before it builds the layout.
	FromKernel bool
}

// ownEvery bounds how often the Keeper re-reads the machine's own
// addresses (an address can come and go while the daemon runs).
const ownEvery = 10 * time.Second

// Keeper holds the running configuration, the engine, the ban table and
// the firewall.
type Keeper struct {
	opts  Options
	log   *Logger
	table *bans.Table

	mu       sync.Mutex // serialises the engine, the table writes and the firewall
	rt       *config.Runtime
	engine   *jails.Engine
	fw       firewall.Backend
	bus      Announcer
	restored int
	counted  int // tracked addresses whose failures Start restored
	// countsIn is closed once the engine's failure counts are restored
	// and saved with the cursor from then on (Start restores them after
	// it returns); counted is set before.
	countsIn chan struct{}
	drift    *firewall.Watcher // watches fw; nil when it cannot be watched

	// urgent counts the callers of lockUrgent waiting for mu (the main
	// loop: the journal's batches, expiry, verify); a bulk step (lockBulk:
	// an import's, UnbanAll's) lets them go first. bulk queues the steps
	// of concurrent bulk calls, so that at most one of them waits for mu.
	urgent atomic.Int32
	bulk   sync.Mutex
	// wake is drift's Wake channel, read without mu: the main loop asks
	// for it on every turn.
	wake atomic.Pointer[<-chan struct{}]

	lastCursor  string
	cursorSaved time.Time

	// running is rt and engine for Status, which must not wait for the
	// lock: an import step or the watchdog's check of a million bans
	// holds it for up to a second.
	running atomic.Pointer[running]

	own   []netip.Addr // the machine's own addresses, as of ownAt
	ownAt time.Time

	// unsaved are the engine's bans in the kernel whose commit failed
	// (disk full…), retried with each batch and every CursorEvery; while
	// there are any, no cursor is saved past them, so a restart reads
	// their entries again. saveErr is the last failure.
	unsaved   []bans.Ban
	saveErr   error
	saveTried time.Time

	hist   historyState // the event history's flushes (history.go)
	meters meters       // counters for operators (metrics.go)
}

// running is a configuration and its engine, as swapped in together.
type running struct {
	rt     *config.Runtime
	engine *jails.Engine
}

// The engine's failure counts are compacted in parts (bans.StateSweeper).
var _ bans.StateSweeper = (*jails.Engine)(nil)

// maxUnsaved bounds the bans kept for a retry of their commit; beyond it
// the oldest are dropped from the retry (they stay in the kernel, and the
// unsaved cursor makes a restart decide them again).
const maxUnsaved = 100_000

// Start builds a Keeper: it opens the firewall backend rt names, drops bans
// that expired while the daemon was down and bans of jails no longer
// configured, tears down any layout the other kernel backend left behind,
// builds the layout with every remaining ban in one batch, and starts the
// engine. table stays the caller's to close (after Close).
func Start(rt *config.Runtime, table *bans.Table, opts Options) (*Keeper, error) {
	if opts.NewBackend == nil {
		opts.NewBackend = firewall.New
	}
	if opts.Notify == nil {
		opts.Notify = func(string) {}
	}
	if opts.Own == nil {
		opts.Own = interfaceAddrs
	}
	k := &Keeper{opts: opts, log: opts.Log, table: table, lastCursor: table.Cursor()}
	// The stamp of the last clean stop, and the bans the table held then.
	stamp, stampErr := parseStamp(table.TakeStamp(), table.Len())
	start := k.lastCursor
	k.meters.cursor.Store(&start)
	fw, err := k.openBackend(rt)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if gone, err := table.Expire(now); err != nil {
		fw.Close()
		return nil, err
	} else if len(gone) > 0 {
		k.log.Infof(MsgExpire, "%d bans expired while jailkeeper was stopped", len(gone))
		k.record(bans.EventExpire, gone, "")
	}
	if opts.FromKernel {
		k.importKernel(fw, now)
	}
	active, dropped := k.keepConfigured(rt, activeFirewall(table, now))
	// The engine is built while the kernel takes the layout and the bans.
	// Its failure counts (a flood's million tracked addresses: about a
	// second) are restored after, in the background: READY=1 does not
	// wait for them, but everything that uses the engine does
	// (waitCounts), so no journal entry is counted before them.
	type built struct {
		engine *jails.Engine
		err    error
	}
	engineDone := make(chan built, 1)
	go func() {
		engine, err := jails.NewEngine(rt.Jails, rt.Whitelist, table)
		if err != nil {
			err = fmt.Errorf("starting jails: %w", err)
		}
		engineDone <- built{engine, err}
	}()
	k.tearDownOthers(fw.Name())
	setupErr := k.setup(fw, rt.Layout, active, stamp, stampErr)
	if setupErr == nil && len(dropped) > 0 {
		// The sets may hold them still (kept from the last stop, or
		// too large to be read back for stale bans).
		if err := fw.Remove(dropped); err != nil {
			k.log.Errorf(MsgUnban, "removing %d dropped bans from the kernel: %v", len(dropped), err)
		}
	}
	// The histories now, with the kernel's work done.
	table.ReadHistories()
	r := <-engineDone
	if setupErr != nil {
		fw.Close()
		return nil, fmt.Errorf("building firewall layout (%s): %w", fw.Name(), setupErr)
	}
	if r.err != nil {
		fw.Close()
		return nil, r.err
	}
	engine := r.engine
	k.countsIn = make(chan struct{})
	go func() {
		defer close(k.countsIn)
		// Failure counts survive restarts: restored from the table, then
		// saved with every cursor write (docs/daemon.md).
		counted, err := engine.RestoreState(table.EachState, now)
		if err != nil {
			k.log.Warnf("%v", err)
		}
		k.counted = counted
		table.AttachState(engine)
		if counted > 0 {
			k.log.Infof(MsgStarted, "failures of %d addresses restored", counted)
		}
	}()
	// The histories (increments) are read while the start goes on; the
	// ban path waits for them (bans.Table.HistoryErr).
	go func() {
		if err := table.HistoryErr(); err != nil {
			k.log.Event(journal.PriCrit, MsgRepair, err.Error())
		}
	}()
	k.rt, k.engine, k.fw, k.restored = rt, engine, fw, len(active)
	k.running.Store(&running{rt, engine})
	k.watchDrift()
	return k, nil
}

// setup builds fw's layout with the active bans: with a Stamper and the
// stamp of the last clean stop, the sets the kernel provably still holds
// are not filled again (firewall.Stamper).
func (k *Keeper) setup(fw firewall.Backend, l firewall.Layout, active []firewall.Ban, stamp []byte, stampErr error) error {
	st, ok := fw.(firewall.Stamper)
	if !ok {
		return fw.Setup(l, active)
	}
	if stampErr != nil {
		stamp = nil
	}
	filled, err := st.SetupFrom(l, active, stamp)
	switch {
	case err != nil:
	case filled == "":
		k.log.Infof(MsgStarted, "firewall: the kernel's sets still hold the %d bans of the last stop; not filled again", len(active))
	case stampErr != nil:
		k.log.Infof(MsgStarted, "firewall: sets filled again (%v)", stampErr)
	default:
		k.log.Infof(MsgStarted, "firewall: sets filled again (%s)", filled)
	}
	return err
}

// A keeper's stamp is the number of bans the table held at the stop
// (uvarint), then the backend's stamp.

// parseStamp returns the backend's part of a keeper's stamp, or why it
// cannot serve: none was saved, or the table does not hold the bans it
// held at the stop.
func parseStamp(b []byte, held int) ([]byte, error) {
	if b == nil {
		return nil, errors.New("no stamp of a clean stop")
	}
	n, used := binary.Uvarint(b)
	if used <= 0 {
		return nil, errors.New("a stamp of another format")
	}
	if n != uint64(held) {
		return nil, fmt.Errorf("the ban table holds %d bans, %d at the stop", held, n)
	}
	return b[used:], nil
}

// saveStamp records, at a clean stop, that the kernel's sets hold exactly
// the table's bans, when the backend can prove it and every ban the
// kernel got is saved; otherwise it says why not (the next start then
// fills the sets again). Called with k.mu held, before the drift watcher
// stops.
func (k *Keeper) saveStamp() error {
	st, ok := k.fw.(firewall.Stamper)
	if !ok {
		return nil
	}
	if len(k.unsaved) > 0 {
		return fmt.Errorf("%d bans in the kernel are not saved", len(k.unsaved))
	}
	fs, err := st.Stamp()
	if err != nil {
		return err
	}
	b := binary.AppendUvarint(nil, uint64(k.table.Len()))
	return k.table.SaveStamp(append(b, fs...))
}

// importKernel fills the table with the bans fw's sets hold: each set
// carries the jail, the prefix and the time left (ipset caps a timeout at
// about 24.8 days, so a longer ban comes back that long).
func (k *Keeper) importKernel(fw firewall.Backend, now time.Time) {
	held, err := fw.List()
	if err != nil {
		k.log.Event(journal.PriCrit, MsgRepair, fmt.Sprintf("reading the bans the kernel holds, to rebuild the ban table: %v", err))
		return
	}
	bs := make([]bans.Ban, 0, len(held))
	for _, b := range held {
		bs = append(bs, bans.Ban{Jail: b.Jail, Prefix: b.Prefix, Start: now, Expires: b.Expires,
			Reason: "restored from the kernel: the state file was corrupt"})
	}
	added, err := k.table.Add(bs...)
	if err != nil {
		k.log.Event(journal.PriCrit, MsgRepair, fmt.Sprintf("rebuilding the ban table from the kernel: %v", err))
		return
	}
	k.log.Event(journal.PriCrit, MsgRepair, fmt.Sprintf("ban table rebuilt from the kernel: %d bans", len(added)))
}

// CountsRestored is the number of tracked addresses (IPv6: prefixes)
// whose failures Start restored; it waits until they are.
func (k *Keeper) CountsRestored() int {
	k.waitCounts()
	return k.counted
}

// waitCounts waits until the engine's failure counts are restored (Start
// restores them in the background). Everything that uses the engine
// calls it first, without holding k.mu.
func (k *Keeper) waitCounts() {
	if k.countsIn != nil {
		<-k.countsIn
	}
}

// watchDrift starts watching k.fw for drift, closing the watcher of a
// previous backend. Called with k.mu held, or before k is shared.
func (k *Keeper) watchDrift() {
	k.drift.Close()
	w, err := firewall.Watch(k.fw)
	if err != nil {
		k.log.Warnf("watching the firewall for drift: %v (the watchdog's check repairs what is not watched)", err)
	}
	k.drift = w
	wake := w.Wake()
	k.wake.Store(&wake)
}

// lockUrgent takes k.mu for the main loop's work, ahead of any bulk step
// waiting for it (lockBulk).
func (k *Keeper) lockUrgent() {
	k.urgent.Add(1)
	k.mu.Lock()
	k.urgent.Add(-1)
}

// bulkYield is how long a bulk step sleeps between its looks at whether
// urgent callers still wait.
const bulkYield = 500 * time.Microsecond

// lockBulk takes k.mu for one step of a bulk change (an import's, an
// UnbanAll's) once no urgent caller waits for it, so that the journal's
// bans wait for at most the step in progress, not for the steps of every
// import queued on the lock (two BanMany calls in flight, with the main
// loop's several takes of the lock per turn, held a live attacker's ban
// back by 1.7 s during a 1M import). Release it with unlockBulk.
func (k *Keeper) lockBulk() {
	k.bulk.Lock()
	for k.urgent.Load() > 0 {
		time.Sleep(bulkYield)
	}
	k.mu.Lock()
}

func (k *Keeper) unlockBulk() {
	k.mu.Unlock()
	k.bulk.Unlock()
}

// DriftWake returns a channel that receives a value when the firewall may
// have drifted (another program's change, a ban set found short): the
// caller then calls RepairDrift. A backend that cannot be watched gives a
// nil channel. Call it again after a reload: a backend switch changes it.
func (k *Keeper) DriftWake() <-chan struct{} {
	if c := k.wake.Load(); c != nil {
		return *c
	}
	return nil
}

// RepairDrift verifies the firewall now (as Verify) if its watcher says it
// may have drifted; otherwise it does nothing.
func (k *Keeper) RepairDrift() error {
	k.lockUrgent()
	w := k.drift
	drifted := w.Check()
	k.mu.Unlock()
	if !drifted {
		return nil
	}
	start := time.Now()
	err := k.Verify()
	w.Verified(time.Since(start))
	return err
}

// openBackend opens the backend rt names, with the Keeper's options.
func (k *Keeper) openBackend(rt *config.Runtime) (firewall.Backend, error) {
	fw, err := k.opts.NewBackend(rt.Backend, firewall.Options{
		NetNS:           k.opts.NetNS,
		KillConnections: rt.KillConnections,
		Logf: func(format string, args ...any) {
			k.log.Event(journal.PriInfo, MsgRepair, fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("firewall backend %s: %w", rt.Backend, err)
	}
	return fw, nil
}

// kernelBackends are the backends that leave a layout in the kernel.
var kernelBackends = []string{"iptables", "nftables"}

// tearDownOthers removes the layout of the kernel backend other than
// using, if one is there: after a change of backend (in the configuration,
// or by auto's choice) its chains and sets would otherwise keep refusing
// the bans they hold, and nobody could lift them. Under "none" the kernel
// is left alone. A backend that cannot be opened (its tools missing) has
// nothing to tear down.
func (k *Keeper) tearDownOthers(using string) {
	if using != "iptables" && using != "nftables" {
		return
	}
	for _, name := range kernelBackends {
		if name == using {
			continue
		}
		other, err := k.opts.NewBackend(name, firewall.Options{NetNS: k.opts.NetNS})
		if err != nil {
			continue
		}
		left, _ := other.List()
		if err := other.Teardown(); err != nil {
			k.log.Errorf(MsgRepair, "removing the %s layout of an earlier configuration: %v", name, err)
		} else if len(left) > 0 {
			k.log.Event(journal.PriNotice, MsgRepair, fmt.Sprintf("removed the %s layout of an earlier configuration (%d bans; the %s layout holds them now)", name, len(left), using))
		}
		other.Close()
	}
}

// SetAnnouncer sets where ban changes are announced (the D-Bus service);
// nil announces nothing.
func (k *Keeper) SetAnnouncer(a Announcer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.bus = a
}

// Restored is the number of bans Start loaded into the kernel.
func (k *Keeper) Restored() int { return k.restored }

// Backend is the name of the firewall backend in use.
func (k *Keeper) Backend() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fw.Name()
}

// Runtime is the running configuration.
func (k *Keeper) Runtime() *config.Runtime {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rt
}

// Units and Identifiers are what the journal reader must match for the
// running configuration.
func (k *Keeper) Units() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.engine.Units()
}

// ReadsJournal reports whether some jail reads the journal: a
// configuration of API-only jails alone needs no journal reader.
func (k *Keeper) ReadsJournal() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.engine.Units()) > 0 || len(k.engine.Identifiers()) > 0
}

// Identifiers: see Units.
func (k *Keeper) Identifiers() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.engine.Identifiers()
}

// Unitless returns the senders whose entries without _SYSTEMD_UNIT the
// reader gives to the jails' units (see jails.Engine.Unitless).
func (k *Keeper) Unitless() []jjournal.Unitless {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.engine.Unitless()
}

// LookBack is how far back a reader without a cursor starts: the longest
// findtime.
func (k *Keeper) LookBack() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	var lb time.Duration
	for _, j := range k.rt.Jails {
		lb = max(lb, j.FindTime)
	}
	return lb
}

// Cursor is the cursor after the last journal entry handled ("" before
// the first).
func (k *Keeper) Cursor() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastCursor
}

// Close saves the cursor and closes the firewall handles, leaving the
// layout and every ban in the kernel.
func (k *Keeper) Close() error {
	k.waitCounts()
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	if k.lastCursor != "" && len(k.unsaved) == 0 {
		if err := k.table.SaveCursor(k.lastCursor); err != nil {
			errs = append(errs, err)
		}
	}
	// The history's last events (waiting for a write under way first).
	if err := k.writeHistory(); err != nil {
		errs = append(errs, err)
	}
	if err := k.saveStamp(); err != nil {
		k.log.Infof(MsgStopping, "the next start fills the firewall's sets again: %v", err)
	}
	k.drift.Close()
	k.drift = nil
	k.wake.Store(nil)
	if err := k.fw.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing firewall: %w", err))
	}
	return errors.Join(errs...)
}

// interfaceAddrs are the addresses of the interfaces the process sees.
func interfaceAddrs() ([]netip.Addr, error) {
	ps, err := jails.SelfAddresses()
	out := make([]netip.Addr, len(ps))
	for i, p := range ps {
		out[i] = p.Addr()
	}
	return out, err
}

// refuse applies prefix.Refuse with the machine's own addresses. Callers
// hold k.mu (or own k before Start returns).
func (k *Keeper) refuse(p netip.Prefix) error {
	return prefix.Refuse(p, k.ownAddrs())
}

// ownAddrs returns the machine's own addresses, re-read at most every
// ownEvery. Callers hold k.mu (or own k before Start returns).
func (k *Keeper) ownAddrs() []netip.Addr {
	if now := time.Now(); k.ownAt.IsZero() || now.Sub(k.ownAt) >= ownEvery {
		own, err := k.opts.Own()
		if err != nil {
			k.log.Warnf("reading the machine's own addresses: %v", err)
		}
		if err == nil || k.ownAt.IsZero() {
			k.own = own
		}
		k.ownAt = now
	}
	return k.own
}

// keepConfigured drops (and logs) bans of jails no longer configured, and
// bans that must never be (prefix.Refuse: a ban of 0.0.0.0 recorded by an
// older version, say, which the kernel would refuse with every other ban
// of its batch). It filters active in place and returns it, and the bans
// it dropped from the table.
func (k *Keeper) keepConfigured(rt *config.Runtime, active []firewall.Ban) (keep, dropped []firewall.Ban) {
	known := map[string]bool{}
	for _, j := range rt.Jails {
		known[j.Name] = true
	}
	// The check of a million bans is half a second: read the own
	// addresses once, and check the halves on two cores.
	own := k.ownAddrs()
	refused := make([]bool, len(active))
	var wg sync.WaitGroup
	half := len(active) / 2
	for _, part := range [][2]int{{0, half}, {half, len(active)}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := part[0]; i < part[1]; i++ {
				refused[i] = prefix.Refuse(active[i].Prefix, own) != nil
			}
		}()
	}
	wg.Wait()
	keep = active[:0] // filtered in place: the caller's snapshot, 1M bans
	for i, b := range active {
		if !refused[i] && known[b.Jail] {
			keep = append(keep, b)
			continue
		}
		if rerr := prefix.Refuse(b.Prefix, own); rerr != nil {
			if _, err := k.table.Remove(b.Jail, b.Prefix); err != nil {
				k.log.Errorf(MsgUnban, "dropping ban of %s in jail %s: %v", prefix.Format(b.Prefix), b.Jail, err)
				continue
			}
			k.log.Event(journal.PriWarning, MsgUnban, fmt.Sprintf("dropped the recorded ban of %s in jail %s: %v", prefix.Format(b.Prefix), b.Jail, rerr),
				"JAIL", b.Jail, "ADDRESS", prefix.Format(b.Prefix))
			k.recordDropped(bans.Ban{Jail: b.Jail, Prefix: b.Prefix}, rerr.Error())
			if known[b.Jail] {
				// Sets of other jails are no longer referenced.
				dropped = append(dropped, b)
			}
			continue
		}
		if known[b.Jail] {
			keep = append(keep, b)
			continue
		}
		if _, err := k.table.Remove(b.Jail, b.Prefix); err != nil {
			k.log.Errorf(MsgUnban, "dropping ban of %s in removed jail %s: %v", prefix.Format(b.Prefix), b.Jail, err)
			continue
		}
		k.log.Event(journal.PriNotice, MsgUnban, fmt.Sprintf("unbanned %s: jail %s is no longer configured", prefix.Format(b.Prefix), b.Jail),
			"JAIL", b.Jail, "ADDRESS", prefix.Format(b.Prefix))
		k.recordDropped(bans.Ban{Jail: b.Jail, Prefix: b.Prefix}, "jail "+b.Jail+" is no longer configured")
	}
	return keep, dropped
}

// HandleBatch runs the engine over the entries of the batches, in order,
// and commits the bans decided with the cursor of the last entry that has
// one. The caller hands several batches at once when its reader is ahead
// (a backlog, a flood), so that the per-commit costs (the table's disk
// sync above all) are paid once per group, not per batch. The batches may
// be released (reused) once it returns.
func (k *Keeper) HandleBatch(batches ...[]jjournal.Entry) {
	k.waitCounts()
	k.meters.begin(batches)
	defer k.meters.end(batches)
	k.lockUrgent()
	defer k.mu.Unlock()
	var decisions []jails.Decision
	for _, b := range batches {
		if len(b) == 0 {
			continue
		}
		for _, e := range b {
			decisions = append(decisions, k.engine.Handle(e)...)
		}
		if c := b[len(b)-1].Cursor; c != "" {
			k.lastCursor = c
		}
	}
	retry := len(k.unsaved) > 0 && time.Since(k.saveTried) >= CursorEvery
	if len(decisions) > 0 || retry {
		bs := make([]bans.Ban, 0, len(k.unsaved)+len(decisions))
		bs = append(bs, k.unsaved...)
		for _, dec := range decisions {
			if err := k.refuse(dec.Prefix); err != nil {
				// Log lines naming 0.0.0.0, multicast, this machine…:
				// counted, never banned.
				k.log.Event(journal.PriWarning, MsgBan, fmt.Sprintf("not banning in jail %s: %v", dec.Jail, err),
					"JAIL", dec.Jail, "ADDRESS", prefix.Format(dec.Prefix))
				continue
			}
			bs = append(bs, banFromDecision(dec))
		}
		// The bans and the cursor after the entries that decided them go
		// into one transaction.
		k.commitEngine(bs)
		k.cursorSaved = time.Now()
	} else if len(k.unsaved) == 0 && time.Since(k.cursorSaved) >= CursorEvery {
		if err := k.table.SaveCursor(k.lastCursor); err != nil {
			k.log.Errorf(MsgJournal, "%v", err)
		}
		k.cursorSaved = time.Now()
	}
}

// sortByKey sorts the bans of one jail in the ban table's key order (the
// prefixes' text).
func sortByKey(bs []bans.Ban) {
	if len(bs) < 2 {
		return
	}
	type keyed struct {
		k string
		b bans.Ban
	}
	ks := make([]keyed, len(bs))
	for i, b := range bs {
		ks[i] = keyed{b.Prefix.Masked().String(), b}
	}
	slices.SortFunc(ks, func(x, y keyed) int { return strings.Compare(x.k, y.k) })
	for i := range ks {
		bs[i] = ks[i].b
	}
}

// forget drops the engine's tracked failures inside bs, per jail in one
// call.
func forget(e *jails.Engine, bs []bans.Ban) {
	byJail := map[string][]netip.Prefix{}
	for _, b := range bs {
		byJail[b.Jail] = append(byJail[b.Jail], b.Prefix)
	}
	for jail, ps := range byJail {
		e.ForgetMany(jail, ps)
	}
}

// commitEngine commits the engine's bans bs with the last cursor; when
// that fails, it keeps them for a retry (the cursor stays where it was
// saved) and says so once per failure spell. Callers hold k.mu.
func (k *Keeper) commitEngine(bs []bans.Ban) {
	k.saveTried = time.Now()
	if len(k.unsaved) > 0 {
		// A ban decided again while unsaved: the latest counts.
		idx := make(map[[2]any]int, len(bs))
		out := bs[:0]
		for _, b := range bs {
			key := [2]any{b.Jail, b.Prefix}
			if i, ok := idx[key]; ok {
				out[i] = b
				continue
			}
			idx[key] = len(out)
			out = append(out, b)
		}
		bs = out
	}
	if _, err := k.commit(k.lastCursor, bs, false, OriginJournal); err != nil {
		if len(bs) > maxUnsaved {
			bs = bs[len(bs)-maxUnsaved:]
		}
		if k.saveErr == nil {
			k.log.Errorf(MsgSave, "%d bans are in the kernel but not saved: %v; the journal cursor stays at the last saved entry, retrying every %s", len(bs), err, CursorEvery)
		}
		k.unsaved, k.saveErr = bs, err
		k.opts.Notify("STATUS=" + k.statusLocked())
		return
	}
	if k.saveErr != nil {
		k.log.Event(journal.PriNotice, MsgSave, fmt.Sprintf("saved the %d bans that could not be saved before", len(k.unsaved)))
		k.unsaved, k.saveErr = nil, nil
		k.opts.Notify("STATUS=" + k.statusLocked())
	}
}

// RetrySave retries the commit of bans that could not be saved, at most
// every CursorEvery (the daemon calls it every second).
func (k *Keeper) RetrySave() {
	k.lockUrgent()
	defer k.mu.Unlock()
	if len(k.unsaved) == 0 || time.Since(k.saveTried) < CursorEvery {
		return
	}
	k.commitEngine(append([]bans.Ban(nil), k.unsaved...))
}

// SaveCursorIdle saves the journal cursor, with the engine's counting
// state changed since the last save, when entries were handled after that
// save; the daemon calls it once the journal has been quiet for QuietSave.
// It saves at most every IdleSaveGap: sooner, it saves nothing and returns
// how long to wait (else 0). A batch saves them too, but only when the
// next batch comes and CursorEvery has passed: after a flood, the failures
// counted in its last second (100,000 and more) would wait for the next
// entry, and that entry (a live attacker's first failure) would wait for
// their write (0.3-0.9 s), and the attacker's next failures behind it.
func (k *Keeper) SaveCursorIdle() (wait time.Duration) {
	k.lockUrgent()
	defer k.mu.Unlock()
	if len(k.unsaved) > 0 || k.lastCursor == "" || k.lastCursor == k.table.Cursor() {
		return 0
	}
	if w := IdleSaveGap - time.Since(k.cursorSaved); w > 0 {
		return w
	}
	if err := k.table.SaveCursor(k.lastCursor); err != nil {
		k.log.Errorf(MsgJournal, "%v", err)
	}
	k.cursorSaved = time.Now()
	return 0
}

// Health is nil while every ban the kernel got is saved, else why not
// (the daemon withholds WATCHDOG=1 meanwhile).
func (k *Keeper) Health() error {
	k.lockUrgent()
	defer k.mu.Unlock()
	if k.saveErr != nil {
		return fmt.Errorf("%d bans not saved: %w", len(k.unsaved), k.saveErr)
	}
	return nil
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
func (k *Keeper) push(bs []bans.Ban) {
	if err := k.fw.Add(toFirewall(bs)); err != nil {
		k.log.Errorf(MsgBan, "adding %d bans to the firewall: %v (the watchdog will retry)", len(bs), err)
	}
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
// distributed-attack count). Callers hold k.mu.
func (k *Keeper) commit(cursor string, bs []bans.Ban, manual bool, origin string) (int, error) {
	pushed := false
	if !manual {
		if pending := k.table.Changes(bs...); len(pending) > 0 {
			k.push(pending)
			pushed = true
		}
	}
	var changed []bans.Ban
	var err error
	if cursor != "" {
		changed, err = k.table.Commit(cursor, bs...)
	} else {
		changed, err = k.table.Add(bs...)
	}
	if err != nil {
		if manual { // the engine's failures: commitEngine
			k.log.Errorf(MsgBan, "%v", err)
		}
		return 0, err
	}
	if len(changed) == 0 {
		return 0, nil
	}
	if !pushed {
		k.push(changed)
	}
	if manual {
		logBulk(k.log, evBanned, changed, origin)
	} else {
		logBans(k.log, evBanned, changed)
	}
	k.record(bans.EventBan, changed, origin)
	if manual {
		forget(k.engine, changed)
	}
	if k.bus != nil {
		announceBanned(k.bus, changed)
	}
	k.opts.Notify("STATUS=" + k.statusLocked())
	return len(changed), nil
}

// expireChunk bounds the expired bans lifted in one step; between steps
// the lock is free (a million bans imported with one --for expire at
// once).
const expireChunk = 20_000

// expireBudget bounds the time one Expire call spends lifting bans (a
// variable for tests).
var expireBudget = 200 * time.Millisecond

// Expire lifts the bans whose time is up from the table and the kernel (the
// kernel's own timeouts have let the addresses in already), in steps of
// expireChunk with the lock free between them, then writes the
// event history recorded since its last call (the daemon calls it every
// second). After expireBudget it stops and returns true when more are due:
// the caller then calls again once its other work (the journal's batches)
// has had a turn, instead of waiting for its next tick.
func (k *Keeper) Expire() (more bool) {
	defer k.flushHistory()
	start := time.Now()
	for k.expireStep() == expireChunk {
		if time.Since(start) >= expireBudget {
			return true
		}
	}
	return false
}

// expireStep lifts up to expireChunk expired bans and returns how many.
func (k *Keeper) expireStep() int {
	k.lockUrgent()
	defer k.mu.Unlock()
	gone, err := k.table.ExpireSome(time.Now(), expireChunk)
	if err != nil {
		k.log.Errorf(MsgExpire, "%v", err)
		return 0
	}
	if len(gone) == 0 {
		return 0
	}
	// The kernel's elements carry the bans' timeouts and are gone from
	// lookups already; removing them keeps the sets free of elements
	// waiting for the kernel's garbage collection, which nftables' Verify
	// would otherwise read back (a run that left them: the watchdog's
	// Verify spent 10 s in set dumps during the next import).
	if err := k.fw.Remove(toFirewall(gone)); err != nil {
		k.log.Errorf(MsgExpire, "removing %d expired bans from the firewall: %v", len(gone), err)
	}
	logBans(k.log, evExpired, gone)
	k.record(bans.EventExpire, gone, "")
	if k.bus != nil {
		announceUnbanned(k.bus, gone)
	}
	k.opts.Notify("STATUS=" + k.statusLocked())
	return len(gone)
}

// Verify compares the kernel with the layout and the active bans and
// repairs drift, logging what it found. An error means the repair failed.
func (k *Keeper) Verify() error {
	k.lockUrgent()
	// The bans as the firewall takes them, in one pass: the table's Bans
	// in between (reasons, starts) were 60 % of a Verify at 1M bans.
	found, err := k.fw.Verify(k.rt.Layout, activeFirewall(k.table, time.Now()))
	k.mu.Unlock()
	k.meters.verified(time.Now(), found, err)
	if err != nil {
		// Not "repaired": the caller logs the failure, and the next
		// check (the drift watcher's, or the watchdog's) tries again.
		if len(found) > 0 {
			return fmt.Errorf("firewall drift found (%s), repair failed: %w", strings.Join(found, "; "), err)
		}
		return fmt.Errorf("firewall repair failed: %w", err)
	}
	if len(found) > 0 {
		k.log.Event(journal.PriWarning, MsgRepair, fmt.Sprintf("firewall drift repaired: %s", strings.Join(found, "; ")))
	}
	return nil
}

// StatusLine is the one-line STATUS= of sd_notify.
func (k *Keeper) StatusLine() string {
	k.lockUrgent()
	defer k.mu.Unlock()
	return k.statusLocked()
}

func (k *Keeper) statusLocked() string {
	names := jailNames(k.rt)
	line := fmt.Sprintf("%d jails (%s), %d bans", len(names), strings.Join(names, ", "), k.table.Len())
	if k.saveErr != nil {
		line += fmt.Sprintf("; %d more in the kernel NOT SAVED (%v), retrying", len(k.unsaved), k.saveErr)
	}
	return line
}

// jailNames are the running jails' names, in configuration order (sorted).
func jailNames(rt *config.Runtime) []string {
	names := make([]string, len(rt.Jails))
	for i, j := range rt.Jails {
		names[i] = j.Name
	}
	return names
}

// activeFirewall returns the bans in force at now as the firewall takes
// them, without the table's Bans in between (a million: 110 MB).
func activeFirewall(t *bans.Table, now time.Time) []firewall.Ban {
	out := make([]firewall.Ban, 0, t.Len())
	t.EachActive(now, func(jail string, p netip.Prefix, expires time.Time) {
		out = append(out, firewall.Ban{Jail: jail, Prefix: p, Expires: expires})
	})
	return out
}

func toFirewall(bs []bans.Ban) []firewall.Ban {
	out := make([]firewall.Ban, len(bs))
	for i, b := range bs {
		out[i] = firewall.Ban{Jail: b.Jail, Prefix: b.Prefix, Expires: b.Expires}
	}
	return out
}

func (k *Keeper) jailByName(name string) (jails.Jail, bool) {
	for _, j := range k.rt.Jails {
		if j.Name == name {
			return j, true
		}
	}
	return jails.Jail{}, false
}

// importChunk bounds the bans one step of an administrator's import
// commits while holding the lock: between steps the journal's batches,
// the watchdog's check and status calls get their turn. A step of 5,000
// took up to 74 ms in TestLargeImport (bbolt table, fake firewall; the
// kernel's share comes on top), 10,000 up to 137 ms.
const importChunk = 5_000

// Ban implements dbusapi.Manager: an administrator's bans. The prefixes
// are all checked first (an unknown jail or a whitelisted prefix bans
// nothing), then committed in steps of importChunk; an error in a later
// step (the disk) leaves the steps before it in place and says how many
// were banned.
func (k *Keeper) Ban(jail string, prefixes []netip.Prefix, dur time.Duration) (int, error) {
	n, _, err := k.ban(jail, prefixes, dur, "", "", false)
	return n, err
}

// BanFrom implements dbusapi.Manager: Ban that skips and returns the
// whitelisted prefixes (and those prefix.Refuse refuses: this machine's
// own addresses, loopback…), with a reason and an origin.
func (k *Keeper) BanFrom(jail string, prefixes []netip.Prefix, dur time.Duration, reason, origin string) (int, []netip.Prefix, error) {
	return k.ban(jail, prefixes, dur, reason, origin, true)
}

// ban is Ban (partial false: a whitelisted or refused prefix refuses the
// batch) and BanFrom (partial true: it is skipped and returned).
func (k *Keeper) ban(jail string, prefixes []netip.Prefix, dur time.Duration, reason, origin string, partial bool) (int, []netip.Prefix, error) {
	k.waitCounts()
	k.mu.Lock()
	j, ok := k.jailByName(jail)
	if !ok {
		defer k.mu.Unlock()
		return 0, nil, fmt.Errorf("%w %q (jails: %s)", dbusapi.ErrUnknownJail, jail, strings.Join(jailNames(k.rt), ", "))
	}
	wl := k.rt.Whitelist
	own := k.ownAddrs() // read under k.mu (it may re-read them)
	k.mu.Unlock()
	if dur == 0 {
		dur = j.BanTime
	}
	switch {
	case reason != "":
	case origin != "":
		reason = "banned by " + origin
	default:
		reason = "banned by an administrator"
	}
	if origin == "" {
		origin = OriginAdmin
	}
	now := time.Now()
	bs := make([]bans.Ban, 0, len(prefixes))
	var skipped []netip.Prefix
	seen := make(map[netip.Prefix]bool, len(prefixes))
	for _, p := range prefixes {
		// Copies of one address are one ban: counted once in the totals
		// and the history (which raises the next bantime).
		if p = prefix.Norm(p); seen[p] {
			continue
		}
		seen[p] = true
		if err := prefix.Refuse(p, own); err != nil {
			if partial {
				skipped = append(skipped, p)
				continue
			}
			return 0, nil, fmt.Errorf("%w: %v; nothing banned", dbusapi.ErrBadAddress, err)
		}
		if wl.Overlaps(p) {
			if partial {
				skipped = append(skipped, p)
				continue
			}
			return 0, nil, fmt.Errorf("%w: %s overlaps the whitelist; nothing banned", dbusapi.ErrWhitelisted, prefix.Format(p))
		}
		b := bans.Ban{Jail: jail, Prefix: p, Start: now, Reason: reason}
		if dur > 0 {
			b.Expires = now.Add(dur)
		}
		bs = append(bs, b)
	}
	// In the table's key order, each step's bans fall into few pages of
	// the ban database; in the list's order each step rewrote pages all
	// over it.
	sortByKey(bs)
	total := 0
	for len(bs) > 0 {
		step := bs[:min(len(bs), importChunk)]
		bs = bs[len(step):]
		k.lockBulk()
		if _, ok := k.jailByName(jail); !ok {
			k.unlockBulk()
			return total, skipped, fmt.Errorf("%w %q: removed by a reload after %d bans", dbusapi.ErrUnknownJail, jail, total)
		}
		// commit without a cursor: bans an administrator or a client made.
		n, err := k.commit("", step, true, origin)
		k.unlockBulk()
		total += n
		if err != nil {
			if total > 0 {
				return total, skipped, fmt.Errorf("%w (after %d bans)", err, total)
			}
			return 0, skipped, err
		}
	}
	return total, skipped, nil
}

// Unban implements dbusapi.Manager.
func (k *Keeper) Unban(jail string, p netip.Prefix) (int, error) {
	k.waitCounts()
	k.mu.Lock()
	defer k.mu.Unlock()
	if jail != "" {
		if _, ok := k.jailByName(jail); !ok {
			return 0, fmt.Errorf("%w %q", dbusapi.ErrUnknownJail, jail)
		}
	}
	gone, err := k.table.Remove(jail, p)
	if err != nil {
		return 0, err
	}
	if len(gone) > 0 {
		if err := k.fw.Remove(toFirewall(gone)); err != nil {
			return 0, fmt.Errorf("removing from the firewall: %w", err)
		}
	}
	logBans(k.log, evUnbanned, gone)
	k.record(bans.EventUnban, gone, OriginAdmin)
	forget(k.engine, gone)
	if k.bus != nil {
		announceUnbanned(k.bus, gone)
	}
	if len(gone) > 0 {
		k.opts.Notify("STATUS=" + k.statusLocked())
	}
	return len(gone), nil
}

// UnbanAll implements dbusapi.Manager: every ban the jail holds when the
// call starts is lifted, in steps of expireChunk with the lock free in
// between (as an import).
func (k *Keeper) UnbanAll(jail string) (int, error) {
	k.waitCounts()
	k.mu.Lock()
	_, ok := k.jailByName(jail)
	names := jailNames(k.rt)
	k.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("%w %q (jails: %s)", dbusapi.ErrUnknownJail, jail, strings.Join(names, ", "))
	}
	var held []bans.Ban
	for _, b := range k.table.Snapshot(time.Time{}) {
		if b.Jail == jail {
			held = append(held, b)
		}
	}
	sortByKey(held)
	total := 0
	for len(held) > 0 {
		step := held[:min(len(held), expireChunk)]
		held = held[len(step):]
		n, err := k.unbanStep(step)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// unbanStep lifts those of bs the table still holds.
func (k *Keeper) unbanStep(bs []bans.Ban) (int, error) {
	k.lockBulk()
	defer k.unlockBulk()
	gone, err := k.table.RemoveBans(bs)
	if err != nil {
		return 0, err
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if err := k.fw.Remove(toFirewall(gone)); err != nil {
		return 0, fmt.Errorf("removing from the firewall: %w", err)
	}
	logBulk(k.log, evUnbanned, gone, OriginAdmin)
	k.record(bans.EventUnban, gone, OriginAdmin)
	forget(k.engine, gone)
	if k.bus != nil {
		announceUnbanned(k.bus, gone)
	}
	k.opts.Notify("STATUS=" + k.statusLocked())
	return len(gone), nil
}

// Status implements dbusapi.Manager.
func (k *Keeper) Status(jail string) ([]dbusapi.JailStatus, error) {
	k.waitCounts() // counts as restored, never a partial restore
	cur := k.running.Load()
	names := jailNames(cur.rt)
	engine := cur.engine
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
	counts := k.table.Counts()
	total := 0
	for _, n := range counts {
		total += n
	}
	// Up to StatusListMax bans Status lists them; beyond, only the counts
	// (a list of a million addresses would take seconds to build and
	// send): ListBans pages through them.
	var active []bans.Ban
	if total <= StatusListMax {
		active = k.table.Active(time.Now())
		counts = map[string]int{}
		for _, b := range active {
			counts[b.Jail]++
		}
	}
	out := make([]dbusapi.JailStatus, 0, len(names))
	for _, n := range names {
		st := dbusapi.JailStatus{
			Name:            n,
			CurrentlyFailed: uint32(stats[n].CurrentlyFailed),
			TotalFailed:     uint32(stats[n].TotalFailed),
			TotalBanned:     uint32(k.table.Total(n)),
			CurrentlyBanned: uint32(counts[n]),
			Banned:          []string{},
		}
		for _, b := range active {
			if b.Jail == n {
				st.Banned = append(st.Banned, prefix.Format(b.Prefix))
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// StatusListMax is the number of bans up to which Status lists the banned
// addresses of each jail; with more, its lists are empty and only the
// counts say how many there are.
const StatusListMax = 10_000

// ListBans implements dbusapi.Manager.
func (k *Keeper) ListBans() []dbusapi.BanInfo {
	return banInfos(k.table.Active(time.Now()))
}

// ListBansPage implements dbusapi.Manager. A page costs the page, not
// the table (bans.Table.Page); the keeper's lock is not held.
func (k *Keeper) ListBansPage(offset, limit int) ([]dbusapi.BanInfo, int) {
	page, total := k.table.Page(time.Now(), offset, limit)
	return banInfos(page), total
}

func banInfos(bs []bans.Ban) []dbusapi.BanInfo {
	out := make([]dbusapi.BanInfo, len(bs))
	for i, b := range bs {
		out[i] = dbusapi.BanInfo{Jail: b.Jail, Prefix: prefix.Format(b.Prefix), Start: b.Start.Unix(), Reason: b.Reason}
		if !b.Permanent() {
			out[i].Expires = b.Expires.Unix()
		}
	}
	return out
}

// Reload implements dbusapi.Manager through Options.Reload.
func (k *Keeper) Reload() error {
	if k.opts.Reload == nil {
		return errors.New("reload is not available")
	}
	return k.opts.Reload()
}

// Next is a checked configuration waiting to be swapped in (Prepare).
type Next struct {
	rt     *config.Runtime
	engine *jails.Engine
	fw     firewall.Backend // a newly opened backend when rt switches backends, else nil
}

// Prepare checks a reloaded configuration as far as it can without
// touching the running one: it builds the new engine and, when the backend
// changes, opens the new backend. The caller then stops its journal reader
// (handing the batches still queued to HandleBatch) and calls Swap.
func (k *Keeper) Prepare(rt *config.Runtime) (*Next, error) {
	engine, err := jails.NewEngine(rt.Jails, rt.Whitelist, k.table)
	if err != nil {
		return nil, err
	}
	n := &Next{rt: rt, engine: engine}
	k.mu.Lock()
	cur := k.fw.Name()
	k.mu.Unlock()
	if rt.Backend != cur && !(rt.Backend == "auto" && (cur == "iptables" || cur == "nftables")) {
		if n.fw, err = k.openBackend(rt); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Swap puts a prepared configuration in place: it rebuilds the layout with
// every active ban (bans of jails removed are lifted and logged), and the
// jails that stay keep what they counted. On a change of backend the bans
// move into the new backend's layout, and only then is the old layout torn
// down. When the new layout cannot be built, the running configuration and
// layout stay and the error says why.
func (k *Keeper) Swap(n *Next) error {
	k.waitCounts() // the new engine adopts them
	k.mu.Lock()
	defer k.mu.Unlock()
	fw := k.fw
	if n.fw != nil {
		fw = n.fw
	}
	active, _ := k.keepConfigured(n.rt, activeFirewall(k.table, time.Now()))
	if err := fw.Setup(n.rt.Layout, active); err != nil {
		if n.fw != nil {
			// The old layout was never touched.
			n.fw.Teardown()
			n.fw.Close()
		} else {
			// Put the old layout back: never lose protection on a bad reload.
			k.fw.Setup(k.rt.Layout, toFirewall(k.table.Snapshot(time.Now())))
		}
		return fmt.Errorf("building firewall layout (%s): %w", fw.Name(), err)
	}
	if n.fw != nil {
		old := k.fw
		if err := old.Teardown(); err != nil {
			k.log.Errorf(MsgRepair, "removing the %s layout after switching to %s: %v", old.Name(), fw.Name(), err)
		}
		old.Close()
		k.log.Event(journal.PriNotice, MsgConfig, fmt.Sprintf("firewall backend switched from %s to %s with %d bans", old.Name(), fw.Name(), len(active)))
		k.fw = fw
		k.watchDrift()
	}
	for _, w := range n.rt.Warnings {
		k.log.Warnf("%s", w)
	}
	// The reader resumes after the last entry handled, so the failures
	// counted so far must come along: a reload gives no attacker a fresh
	// count.
	n.engine.Adopt(k.engine)
	k.table.AttachState(n.engine)
	k.rt, k.engine = n.rt, n.engine
	k.running.Store(&running{n.rt, n.engine})
	return nil
}

// Discard releases what Prepare opened for a configuration not swapped in.
func (n *Next) Discard() {
	if n != nil && n.fw != nil {
		n.fw.Close()
		n.fw = nil
	}
}
