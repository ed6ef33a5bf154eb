package dbusapi

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// Server is the exported org.jailkeeper object.
type Server struct {
	conn *dbus.Conn
	m    Manager

	mu        sync.Mutex
	authorize func(sender dbus.Sender) error
}

// SetAuthorizer replaces the check of callers that change bans (nil
// restores the default: uid 0, or polkit's verdict on PolkitAction).
func (s *Server) SetAuthorizer(f func(sender dbus.Sender) error) {
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
	var exp int64
	if !expires.IsZero() {
		exp = expires.Unix()
	}
	return s.conn.Emit(Path, Interface+".Banned", jail, prefix.Format(p), exp, reason)
}

// Unbanned emits the Unbanned signal.
func (s *Server) Unbanned(jail string, p netip.Prefix) error {
	return s.conn.Emit(Path, Interface+".Unbanned", jail, prefix.Format(p))
}

// BannedMany emits the BannedMany signal: bans of one jail made at once
// (a flood decided from one journal batch, a blocklist import), address i
// expiring at expires[i] (zero: permanent). The daemon sends it instead of
// one Banned per ban when more than a few bans happen at once: a signal
// costs the daemon and dbus-daemon a message each.
func (s *Server) BannedMany(jail string, ps []netip.Prefix, expires []time.Time) error {
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
	addrs := make([]string, len(ps))
	for i, p := range ps {
		addrs[i] = prefix.Format(p)
	}
	return s.conn.Emit(Path, Interface+".UnbannedMany", jail, addrs)
}

func (s *Server) defaultAuthorize(sender dbus.Sender) error {
	var uid uint32
	if err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid); err != nil {
		return fmt.Errorf("identifying caller %s: %w", sender, err)
	}
	if uid == 0 {
		return nil
	}
	subject := struct {
		Kind    string
		Details map[string]dbus.Variant
	}{"system-bus-name", map[string]dbus.Variant{"name": dbus.MakeVariant(string(sender))}}
	var res struct {
		IsAuthorized, IsChallenge bool
		Details                   map[string]string
	}
	err := s.conn.Object("org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority").Call(
		"org.freedesktop.PolicyKit1.Authority.CheckAuthorization", 0,
		subject, PolkitAction, map[string]string{}, uint32(1), "").Store(&res)
	if err == nil && res.IsAuthorized {
		return nil
	}
	return fmt.Errorf("uid %d may not change bans (needs root or polkit action %s)", uid, PolkitAction)
}

func (s *Server) check(sender dbus.Sender) *dbus.Error {
	s.mu.Lock()
	auth := s.authorize
	s.mu.Unlock()
	if err := auth(sender); err != nil {
		return dbus.NewError(ErrNamePermission, []any{err.Error()})
	}
	return nil
}

// seconds turns the seconds argument of Ban and BanMany into a duration:
// 0 is the jail's bantime, 2^64-1 permanent, and anything longer than
// config.MaxDuration a range error wrapping ErrBadDuration.
func seconds(t uint64) (time.Duration, error) {
	switch {
	case t == 0:
		return 0, nil
	case t == math.MaxUint64:
		return -1, nil
	case t > uint64(config.MaxDuration/time.Second):
		return 0, fmt.Errorf("%w: %d seconds is out of range, the longest is %d (100 years); 2^64-1 means permanent", ErrBadDuration, t, uint64(config.MaxDuration/time.Second))
	}
	return time.Duration(t) * time.Second, nil
}

// methods is the exported method set; kept apart from Server so that only
// these become D-Bus methods.
type methods struct{ s *Server }

// Ban bans one address or CIDR in jail for seconds (0 = the jail's bantime).
func (x methods) Ban(sender dbus.Sender, jail, address string, secs uint64) *dbus.Error {
	if e := x.s.check(sender); e != nil {
		return e
	}
	p, err := ParsePrefix(address)
	if err != nil {
		return dbusErr(err)
	}
	d, err := seconds(secs)
	if err != nil {
		return dbusErr(err)
	}
	_, err = x.s.m.Ban(jail, []netip.Prefix{p}, d)
	return dbusErr(err)
}

// BanMany bans every address in one batch: all or nothing.
func (x methods) BanMany(sender dbus.Sender, jail string, addresses []string, secs uint64) (uint32, *dbus.Error) {
	if e := x.s.check(sender); e != nil {
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
	d, err := seconds(secs)
	if err != nil {
		return 0, dbusErr(err)
	}
	n, err := x.s.m.Ban(jail, ps, d)
	return uint32(n), dbusErr(err)
}

// Unban lifts every ban of address, in every jail.
func (x methods) Unban(sender dbus.Sender, address string) (uint32, *dbus.Error) {
	return x.UnbanJail(sender, "", address)
}

// UnbanJail lifts the ban of address in one jail ("" = every jail).
func (x methods) UnbanJail(sender dbus.Sender, jail, address string) (uint32, *dbus.Error) {
	if e := x.s.check(sender); e != nil {
		return 0, e
	}
	p, err := ParsePrefix(address)
	if err != nil {
		return 0, dbusErr(err)
	}
	n, err := x.s.m.Unban(jail, p)
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

// ListBans returns every active ban. Only root sees the user names in the
// reasons (they can be mistyped passwords); other callers see them hidden.
func (x methods) ListBans(sender dbus.Sender) ([]BanInfo, *dbus.Error) {
	b := x.s.m.ListBans()
	if b == nil {
		b = []BanInfo{}
	}
	if !x.s.isRoot(sender) {
		for i := range b {
			b[i].Reason = HideUsers(b[i].Reason)
		}
	}
	return b, nil
}

// isRoot reports whether sender runs as uid 0 (false when the bus cannot
// tell).
func (s *Server) isRoot(sender dbus.Sender) bool {
	var uid uint32
	err := s.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid)
	return err == nil && uid == 0
}

// userInReason is a user name as ban reasons quote it (user "name").
var userInReason = regexp.MustCompile(`\buser "(?:[^"\\]|\\.)*"`)

// HideUsers replaces the user names quoted in a ban reason by "(hidden)":
// a failed login's user name can be a password typed in the wrong field.
func HideUsers(reason string) string {
	return userInReason.ReplaceAllLiteralString(reason, "user (hidden)")
}

// Reload re-reads the configuration; on error the running one stays.
func (x methods) Reload(sender dbus.Sender) *dbus.Error {
	if e := x.s.check(sender); e != nil {
		return e
	}
	return dbusErr(x.s.m.Reload())
}
