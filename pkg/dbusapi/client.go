package dbusapi

import (
	"fmt"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// Client calls a running jailkeeper over the system bus
// ($DBUS_SYSTEM_BUS_ADDRESS when set).
type Client struct {
	conn *dbus.Conn
}

// Dial connects to the system bus.
func Dial() (*Client, error) {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return nil, fmt.Errorf("connecting to the system bus: %w", err)
	}
	return &Client{conn: conn}, nil
}

// Close closes the bus connection.
func (c *Client) Close() error { return c.conn.Close() }

// call calls method and stores its reply in out. Changing calls carry
// the ALLOW_INTERACTIVE_AUTHORIZATION flag, as busctl's do by default: a
// caller whom polkit lets in after authentication gets asked through its
// polkit agent instead of refused.
func (c *Client) call(method string, out []any, args ...any) error {
	var flags dbus.Flags
	if changing[method] {
		flags = dbus.FlagAllowInteractiveAuthorization
	}
	msg := &dbus.Message{
		Type:  dbus.TypeMethodCall,
		Flags: flags,
		Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldPath:        dbus.MakeVariant(Path),
			dbus.FieldDestination: dbus.MakeVariant(BusName),
			dbus.FieldInterface:   dbus.MakeVariant(Interface),
			dbus.FieldMember:      dbus.MakeVariant(method),
		},
		Body: args,
	}
	if len(args) > 0 {
		msg.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(args...))
	}
	call := <-c.conn.Send(msg, make(chan *dbus.Call, 1)).Done
	if call.Err != nil {
		if de, ok := call.Err.(dbus.Error); ok {
			switch {
			case de.Name == "org.freedesktop.DBus.Error.ServiceUnknown":
				return fmt.Errorf("jailkeeper is not running (no %s on the system bus)", BusName)
			case strings.HasPrefix(de.Name, "org.freedesktop.systemd1."), strings.HasPrefix(de.Name, "org.freedesktop.DBus.Error.Spawn"):
				// D-Bus activation failed, e.g. the unit is masked.
				return fmt.Errorf("jailkeeper is not running and the bus could not start it: %w", FromDBusError(call.Err))
			}
		}
		return FromDBusError(call.Err)
	}
	if len(out) > 0 {
		return call.Store(out...)
	}
	return nil
}

// changing names the methods that need authorization.
var changing = map[string]bool{"Ban": true, "BanMany": true, "BanFrom": true, "Unban": true, "UnbanJail": true, "UnbanAll": true, "Reload": true}

func secs(d time.Duration) uint64 {
	switch {
	case d < 0:
		return ^uint64(0)
	case d == 0:
		return 0
	}
	s := uint64(d / time.Second)
	if s == 0 {
		s = 1
	}
	return s
}

// Ban bans address (or CIDR) in jail for d (0 = jail's bantime, <0 = permanent).
func (c *Client) Ban(jail, address string, d time.Duration) error {
	return c.call("Ban", nil, jail, address, secs(d))
}

// BanMany bans all addresses in one batch.
func (c *Client) BanMany(jail string, addresses []string, d time.Duration) (uint32, error) {
	var n uint32
	err := c.call("BanMany", []any{&n}, jail, addresses, secs(d))
	return n, err
}

// BanFrom bans the addresses no whitelist entry overlaps, recording
// reason and origin, and returns how many bans were new or extended and
// the whitelisted addresses it skipped.
func (c *Client) BanFrom(jail string, addresses []string, d time.Duration, reason, origin string) (uint32, []string, error) {
	var n uint32
	var skipped []string
	err := c.call("BanFrom", []any{&n, &skipped}, jail, addresses, secs(d), reason, origin)
	return n, skipped, err
}

// Unban lifts bans of address in jail ("" = every jail).
func (c *Client) Unban(jail, address string) (uint32, error) {
	var n uint32
	var err error
	if jail == "" {
		err = c.call("Unban", []any{&n}, address)
	} else {
		err = c.call("UnbanJail", []any{&n}, jail, address)
	}
	return n, err
}

// Status returns the counters of jail ("" = all).
func (c *Client) Status(jail string) ([]JailStatus, error) {
	var st []JailStatus
	err := c.call("Status", []any{&st}, jail)
	return st, err
}

// ListBans returns every active ban, read in pages (ReadBans): whole
// is false when the table changed while it was read.
func (c *Client) ListBans() (bans []BanInfo, whole bool, err error) {
	return ReadBans(c.ListBansPage)
}

// UnbanAll lifts every ban of jail.
func (c *Client) UnbanAll(jail string) (uint32, error) {
	var n uint32
	err := c.call("UnbanAll", []any{&n}, jail)
	return n, err
}

// ListBansPage returns at most limit bans from offset on (ListBans'
// order) and how many bans there are in all.
func (c *Client) ListBansPage(offset, limit uint32) ([]BanInfo, uint32, error) {
	var b []BanInfo
	var total uint32
	err := c.call("ListBansPage", []any{&b, &total}, offset, limit)
	return b, total, err
}

// Reload asks the daemon to re-read its configuration.
func (c *Client) Reload() error { return c.call("Reload", nil) }
