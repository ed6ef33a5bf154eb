// Package dbusapi is jailkeeper's D-Bus face: the org.jailkeeper service on
// the system bus (object /org/jailkeeper, interface org.jailkeeper.Manager1),
// the authorization of callers that change bans, and the client the CLI
// uses. It keeps no state of its own: every call goes to a Manager.
package dbusapi

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/jailkeeper/jailkeeper/pkg/fleet"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// Bus names of the service.
const (
	BusName   = "org.jailkeeper"
	Path      = dbus.ObjectPath("/org/jailkeeper")
	Interface = "org.jailkeeper.Manager1"
	// PolkitAction is checked for callers other than root.
	PolkitAction = "org.jailkeeper.manage"
)

// D-Bus error names.
const (
	ErrNamePermission  = "org.jailkeeper.Error.PermissionDenied"
	ErrNameUnknownJail = "org.jailkeeper.Error.UnknownJail"
	ErrNameBadAddress  = "org.jailkeeper.Error.BadAddress"
	ErrNameWhitelisted = "org.jailkeeper.Error.Whitelisted"
	ErrNameBadConfig   = "org.jailkeeper.Error.BadConfig"
	ErrNameBadDuration = "org.jailkeeper.Error.BadDuration"
	ErrNameFailed      = "org.jailkeeper.Error.Failed"
)

// Errors a Manager wraps so the caller sees a precise D-Bus error name.
var (
	ErrUnknownJail = errors.New("unknown jail")
	ErrBadAddress  = errors.New("bad address")
	ErrWhitelisted = errors.New("whitelisted")
	ErrBadConfig   = errors.New("configuration does not load")
	ErrBadDuration = errors.New("bad duration")
)

// JailStatus is one jail's counters, as Status returns them (a(suuuuas)).
type JailStatus struct {
	Name            string   `json:"name"`
	CurrentlyFailed uint32   `json:"currently_failed"`
	TotalFailed     uint32   `json:"total_failed"`
	CurrentlyBanned uint32   `json:"currently_banned"`
	TotalBanned     uint32   `json:"total_banned"`
	Banned          []string `json:"banned"`
}

// BanInfo is one active ban, as ListBans returns them (a(ssxxs)).
// Start and Expires are Unix seconds; Expires is 0 for a permanent ban.
type BanInfo struct {
	Jail    string `json:"jail"`
	Prefix  string `json:"address"`
	Start   int64  `json:"start"`
	Expires int64  `json:"expires"`
	Reason  string `json:"reason"`
}

// Manager is what the service exposes; the daemon implements it.
type Manager interface {
	// Ban bans every prefix in jail for d (0 = the jail's bantime, negative
	// = permanent), all or nothing. It returns how many bans were new or
	// extended.
	Ban(jail string, prefixes []netip.Prefix, d time.Duration) (int, error)
	// BanFrom bans, like Ban, the prefixes that no whitelist entry
	// overlaps and that are not refused (this machine's own addresses…);
	// the others are skipped and returned instead of refusing the batch.
	// The bans carry reason (default: "banned by <origin>", or by an
	// administrator when origin is empty too); origin names the server a
	// shared ban comes from ("" = this one).
	BanFrom(jail string, prefixes []netip.Prefix, d time.Duration, reason, origin string) (changed int, skipped []netip.Prefix, err error)
	// Unban lifts bans of p in jail ("" = every jail) and returns how many.
	Unban(jail string, p netip.Prefix) (int, error)
	// Status returns the counters of jail, or of every jail for "".
	Status(jail string) ([]JailStatus, error)
	// UnbanAll lifts every ban of jail in one batch and returns how many.
	UnbanAll(jail string) (int, error)
	// ListBans returns every active ban.
	ListBans() []BanInfo
	// ListBansPage returns at most limit active bans from the offset-th on,
	// in ListBans' order, and how many there are in all.
	ListBansPage(offset, limit int) ([]BanInfo, int)
	// Reload re-reads the configuration; on error the running one stays.
	Reload() error
}

// introspectXML describes the object: the document type declaration
// first, then one node with the manager interface and the standard
// Introspectable and Peer interfaces (godbus answers Peer's methods).
const introspectXML = introspectDoctype + `<node>
  <interface name="org.jailkeeper.Manager1">
    <method name="Ban"><arg name="jail" type="s" direction="in"/><arg name="address" type="s" direction="in"/><arg name="seconds" type="t" direction="in"/></method>
    <method name="BanMany"><arg name="jail" type="s" direction="in"/><arg name="addresses" type="as" direction="in"/><arg name="seconds" type="t" direction="in"/><arg name="changed" type="u" direction="out"/></method>
    <method name="BanFrom"><arg name="jail" type="s" direction="in"/><arg name="addresses" type="as" direction="in"/><arg name="seconds" type="t" direction="in"/><arg name="reason" type="s" direction="in"/><arg name="origin" type="s" direction="in"/><arg name="changed" type="u" direction="out"/><arg name="skipped" type="as" direction="out"/></method>
    <method name="Unban"><arg name="address" type="s" direction="in"/><arg name="removed" type="u" direction="out"/></method>
    <method name="UnbanJail"><arg name="jail" type="s" direction="in"/><arg name="address" type="s" direction="in"/><arg name="removed" type="u" direction="out"/></method>
    <method name="Status"><arg name="jail" type="s" direction="in"/><arg name="jails" type="a(suuuuas)" direction="out"/></method>
    <method name="UnbanAll"><arg name="jail" type="s" direction="in"/><arg name="removed" type="u" direction="out"/></method>
    <method name="ListBans"><arg name="bans" type="a(ssxxs)" direction="out"/></method>
    <method name="ListBansPage"><arg name="offset" type="u" direction="in"/><arg name="limit" type="u" direction="in"/><arg name="bans" type="a(ssxxs)" direction="out"/><arg name="total" type="u" direction="out"/></method>
    <method name="ListHistory"><arg name="jail" type="s" direction="in"/><arg name="offset" type="u" direction="in"/><arg name="limit" type="u" direction="in"/><arg name="events" type="a(xsssuxss)" direction="out"/><arg name="total" type="u" direction="out"/></method>
    <method name="Reload"></method>
    <signal name="Banned"><arg name="jail" type="s"/><arg name="address" type="s"/><arg name="expires" type="x"/><arg name="reason" type="s"/></signal>
    <signal name="Unbanned"><arg name="jail" type="s"/><arg name="address" type="s"/></signal>
    <signal name="BannedMany"><arg name="jail" type="s"/><arg name="addresses" type="as"/><arg name="expires" type="ax"/></signal>
    <signal name="UnbannedMany"><arg name="jail" type="s"/><arg name="addresses" type="as"/></signal>
  </interface>` + introspect.IntrospectDataString + `  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"></method>
    <method name="GetMachineId"><arg name="machine_uuid" type="s" direction="out"/></method>
  </interface>
</node>`

const introspectDoctype = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
`

func dbusErr(err error) *dbus.Error {
	if err == nil {
		return nil
	}
	name := ErrNameFailed
	switch {
	case errors.Is(err, ErrUnknownJail):
		name = ErrNameUnknownJail
	case errors.Is(err, ErrBadAddress):
		name = ErrNameBadAddress
	case errors.Is(err, ErrWhitelisted):
		name = ErrNameWhitelisted
	case errors.Is(err, ErrBadConfig):
		name = ErrNameBadConfig
	case errors.Is(err, ErrBadDuration):
		name = ErrNameBadDuration
	}
	return dbus.NewError(name, []any{err.Error()})
}

// FromDBusError turns a D-Bus error from the service back into a plain error
// carrying only its message.
func FromDBusError(err error) error {
	var de dbus.Error
	if errors.As(err, &de) && len(de.Body) > 0 {
		if s, ok := de.Body[0].(string); ok {
			return errors.New(s)
		}
	}
	var dep *dbus.Error
	if errors.As(err, &dep) && len(dep.Body) > 0 {
		if s, ok := dep.Body[0].(string); ok {
			return errors.New(s)
		}
	}
	return err
}

// ParsePrefix parses an address or CIDR as the bus edge and the CLI take
// them (prefix.Parse: a bare address becomes a /32 or /128, IPv4-mapped
// IPv6 becomes IPv4, a zone is dropped); errors wrap ErrBadAddress.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := prefix.Parse(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w %v", ErrBadAddress, err)
	}
	return p, nil
}

// CheckReason validates BanFrom's reason (fleet.CheckReason: printable, at
// most fleet.MaxReason bytes) and origin (empty, or fleet.CheckOrigin).
func CheckReason(reason, origin string) error {
	if err := fleet.CheckReason(reason); err != nil {
		return err
	}
	if origin != "" {
		return fleet.CheckOrigin(origin)
	}
	return nil
}
