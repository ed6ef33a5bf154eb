package dbusapi

import (
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// Server is the exported org.jailkeeper object.
type Server struct {
	conn *dbus.Conn
	m    Manager

	mu        sync.Mutex
	authorize func(Caller) error
	objs      *objects // the object model (objects.go); nil without a Model
}

// SetAuthorizer replaces the check of callers that change bans (nil
// restores the default: uid 0, or polkit's verdict on PolkitAction). An
// error refuses the call with ErrNamePermission and the error's text.
func (s *Server) SetAuthorizer(f func(Caller) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == nil {
		f = s.defaultAuthorize
	}
	s.authorize = f
}

// Serve exports m on conn at Path and takes BusName. It fails when another
// process owns the name (a second daemon).
func Serve(conn *dbus.Conn, m Manager) (*Server, error) {
	s := &Server{conn: conn, m: m}
	s.authorize = s.defaultAuthorize
	if err := conn.Export(methods{s}, Path, Interface); err != nil {
		return nil, fmt.Errorf("exporting %s: %w", Interface, err)
	}
	if err := conn.Export(introspect.Introspectable(introspectXML), Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return nil, fmt.Errorf("exporting introspection: %w", err)
	}
	if mdl, ok := m.(Model); ok {
		if err := s.exportObjects(mdl); err != nil {
			return nil, err
		}
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return nil, fmt.Errorf("requesting bus name %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner && reply != dbus.RequestNameReplyAlreadyOwner {
		return nil, fmt.Errorf("requesting bus name %s: already owned by another process (is another jailkeeper running?)", BusName)
	}
	return s, nil
}

// Banned emits the Banned signal. expires is zero for a permanent ban.
func (s *Server) Banned(jail string, p netip.Prefix, expires time.Time, reason string) error {
	s.touch()
	var exp int64
	if !expires.IsZero() {
		exp = expires.Unix()
	}
	return s.conn.Emit(Path, Interface+".Banned", jail, prefix.Format(p), exp, reason)
}

// Unbanned emits the Unbanned signal.
func (s *Server) Unbanned(jail string, p netip.Prefix) error {
	s.touch()
	return s.conn.Emit(Path, Interface+".Unbanned", jail, prefix.Format(p))
}

// BannedMany emits the BannedMany signal: bans of one jail made at once
// (a flood decided from one journal batch, a blocklist import), address i
// expiring at expires[i] (zero: permanent). The daemon sends it instead of
// one Banned per ban when more than a few bans happen at once: a signal
// costs the daemon and dbus-daemon a message each.
func (s *Server) BannedMany(jail string, ps []netip.Prefix, expires []time.Time) error {
	s.touch()
	addrs := make([]string, len(ps))
	exps := make([]int64, len(ps))
	for i, p := range ps {
		addrs[i] = prefix.Format(p)
		if i < len(expires) && !expires[i].IsZero() {
			exps[i] = expires[i].Unix()
		}
	}
	return s.conn.Emit(Path, Interface+".BannedMany", jail, addrs, exps)
}

// UnbannedMany emits the UnbannedMany signal: bans of one jail lifted at
// once (a mass expiry, an unban of a prefix), sent instead of one Unbanned
// each when more than a few go at once.
func (s *Server) UnbannedMany(jail string, ps []netip.Prefix) error {
	s.touch()
	addrs := make([]string, len(ps))
	for i, p := range ps {
		addrs[i] = prefix.Format(p)
	}
	return s.conn.Emit(Path, Interface+".UnbannedMany", jail, addrs)
}

func (s *Server) defaultAuthorize(c Caller) error {
	return authorize(busAuthority{s.conn}, c)
}

// check authorizes the caller of msg, a changing call.
func (s *Server) check(msg *dbus.Message) *dbus.Error {
	s.mu.Lock()
	auth := s.authorize
	s.mu.Unlock()
	if err := auth(callerOf(msg)); err != nil {
		return refusal(err)
	}
	return nil
}

func seconds(t uint64) time.Duration {
	if t == 0 {
		return 0
	}
	if t > uint64(math.MaxInt64/int64(time.Second)) {
		return -1
	}
	return time.Duration(t) * time.Second
}

// methods is the exported method set; kept apart from Server so that only
// these become D-Bus methods. A dbus.Message parameter receives the call
// itself (godbus fills it in; it is not part of the D-Bus signature): the
// changing methods read their caller and its flags from it.
type methods struct{ s *Server }

// Ban bans one address or CIDR in jail for seconds (0 = the jail's bantime).
func (x methods) Ban(msg dbus.Message, jail, address string, secs uint64) *dbus.Error {
	if e := x.s.check(&msg); e != nil {
		return e
	}
	p, err := ParsePrefix(address)
	if err != nil {
		return dbusErr(err)
	}
	_, err = x.s.m.Ban(jail, []netip.Prefix{p}, seconds(secs))
	return dbusErr(err)
}

// BanMany bans every address in one batch: all or nothing.
func (x methods) BanMany(msg dbus.Message, jail string, addresses []string, secs uint64) (uint32, *dbus.Error) {
	if e := x.s.check(&msg); e != nil {
		return 0, e
	}
	ps := make([]netip.Prefix, 0, len(addresses))
	for i, a := range addresses {
		p, err := ParsePrefix(a)
		if err != nil {
			return 0, dbusErr(fmt.Errorf("entry %d: %w", i+1, err))
		}
		ps = append(ps, p)
	}
	n, err := x.s.m.Ban(jail, ps, seconds(secs))
	return uint32(n), dbusErr(err)
}

// Unban lifts every ban of address, in every jail.
func (x methods) Unban(msg dbus.Message, address string) (uint32, *dbus.Error) {
	return x.UnbanJail(msg, "", address)
}

// UnbanJail lifts the ban of address in one jail ("" = every jail).
func (x methods) UnbanJail(msg dbus.Message, jail, address string) (uint32, *dbus.Error) {
	if e := x.s.check(&msg); e != nil {
		return 0, e
	}
	p, err := ParsePrefix(address)
	if err != nil {
		return 0, dbusErr(err)
	}
	n, err := x.s.m.Unban(jail, p)
	return uint32(n), dbusErr(err)
}

// UnbanAll lifts every ban of jail in one batch.
func (x methods) UnbanAll(msg dbus.Message, jail string) (uint32, *dbus.Error) {
	if e := x.s.check(&msg); e != nil {
		return 0, e
	}
	n, err := x.s.m.UnbanAll(jail)
	return uint32(n), dbusErr(err)
}

// Status returns the counters of jail, or of every jail for "".
func (x methods) Status(jail string) ([]JailStatus, *dbus.Error) {
	st, err := x.s.m.Status(jail)
	if st == nil {
		st = []JailStatus{}
	}
	return st, dbusErr(err)
}

// ListBans returns every active ban.
func (x methods) ListBans() ([]BanInfo, *dbus.Error) {
	b := x.s.m.ListBans()
	if b == nil {
		b = []BanInfo{}
	}
	return b, nil
}

// ListBansPage returns at most limit bans from offset on, and the total.
func (x methods) ListBansPage(offset, limit uint32) ([]BanInfo, uint32, *dbus.Error) {
	b, total := x.s.m.ListBansPage(int(offset), int(limit))
	if b == nil {
		b = []BanInfo{}
	}
	return b, uint32(total), nil
}

// Reload re-reads the configuration; on error the running one stays.
func (x methods) Reload(msg dbus.Message) *dbus.Error {
	if e := x.s.check(&msg); e != nil {
		return e
	}
	defer x.s.touch()
	return dbusErr(x.s.m.Reload())
}
