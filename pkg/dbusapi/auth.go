package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"
)

// Authorization of the changing methods (Ban, BanMany, BanFrom, Unban, UnbanJail, UnbanAll,
// Reload). The bus policy lets every caller reach them; the daemon decides,
// as systemd's own services do: the caller's UID as the bus daemon reports
// it is 0, or polkit grants PolkitAction to the caller's bus name. Reading
// (Status, ListBans, introspection) needs no authorization.

// D-Bus error names of a refused call, besides ErrNamePermission.
const (
	// ErrNameInteractiveAuthorizationRequired is the standard error of a
	// call that polkit would allow after authentication, sent when the
	// caller did not set the ALLOW_INTERACTIVE_AUTHORIZATION flag: the
	// caller may retry with the flag (and a polkit agent running).
	ErrNameInteractiveAuthorizationRequired = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
)

// Caller is the sender of a changing call, as the authorization sees it.
type Caller struct {
	// Name is the sender's unique bus name (":1.42").
	Name string
	// Interactive says the call carries the ALLOW_INTERACTIVE_AUTHORIZATION
	// flag: the caller is prepared to wait while polkit asks its agent for
	// a password.
	Interactive bool
}

// callerOf reads the caller of a method call from its message.
func callerOf(msg *dbus.Message) Caller {
	var c Caller
	if v, ok := msg.Headers[dbus.FieldSender]; ok {
		c.Name, _ = v.Value().(string)
	}
	c.Interactive = msg.Flags&dbus.FlagAllowInteractiveAuthorization != 0
	return c
}

// polkitTimeout bounds a non-interactive CheckAuthorization; an interactive
// one waits for a person typing a password, up to polkitInteractiveTimeout.
const (
	polkitTimeout            = 10 * time.Second
	polkitInteractiveTimeout = 5 * time.Minute
)

// authority is what the authorization asks: the bus daemon for a caller's
// UID, polkit for its verdict. busAuthority is the real one; unit tests
// use a fake.
type authority interface {
	// UID returns the Unix user ID of the connection name.
	UID(name string) (uint32, error)
	// Check asks polkit whether name may perform action; interactive lets
	// polkit authenticate the caller through its agent.
	Check(name, action string, interactive bool) (authorized, challenge bool, err error)
}

// busAuthority asks over conn: org.freedesktop.DBus for UIDs,
// org.freedesktop.PolicyKit1 for authorizations.
type busAuthority struct{ conn *dbus.Conn }

func (a busAuthority) UID(name string) (uint32, error) {
	var uid uint32
	if err := a.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, name).Store(&uid); err != nil {
		return 0, fmt.Errorf("asking the bus for the UID of %s: %w", name, err)
	}
	return uid, nil
}

// polkitSubject is polkit's (sa{sv}) subject: a system bus name, which
// polkit resolves to the process and user behind it itself.
type polkitSubject struct {
	Kind    string
	Details map[string]dbus.Variant
}

// polkitResult is polkit's (bba{ss}) authorization result.
type polkitResult struct {
	IsAuthorized, IsChallenge bool
	Details                   map[string]string
}

// checkAllowUserInteraction is CheckAuthorization's flag
// POLKIT_CHECK_AUTHORIZATION_FLAGS_ALLOW_USER_INTERACTION.
const checkAllowUserInteraction uint32 = 1

func (a busAuthority) Check(name, action string, interactive bool) (bool, bool, error) {
	var flags uint32
	timeout := polkitTimeout
	if interactive {
		flags = checkAllowUserInteraction
		timeout = polkitInteractiveTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	subject := polkitSubject{"system-bus-name", map[string]dbus.Variant{"name": dbus.MakeVariant(name)}}
	var res polkitResult
	err := a.conn.Object("org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority").CallWithContext(ctx,
		"org.freedesktop.PolicyKit1.Authority.CheckAuthorization", 0,
		subject, action, map[string]string{}, flags, "").Store(&res)
	if err != nil {
		return false, false, fmt.Errorf("asking polkit: %w", err)
	}
	return res.IsAuthorized, res.IsChallenge, nil
}

// authError is a refusal with the D-Bus error name the caller gets.
type authError struct {
	name string
	msg  string
}

func (e *authError) Error() string { return e.msg }

// refusal returns err as the D-Bus error of a refused call.
func refusal(err error) *dbus.Error {
	var ae *authError
	if errors.As(err, &ae) {
		return dbus.NewError(ae.name, []any{ae.msg})
	}
	return dbus.NewError(ErrNamePermission, []any{err.Error()})
}

// authorize lets c change bans when its UID is 0 or polkit grants it
// PolkitAction, and otherwise returns an error saying why not.
func authorize(a authority, c Caller) error {
	uid, err := a.UID(c.Name)
	if err != nil {
		return &authError{ErrNamePermission, fmt.Sprintf("permission denied: cannot identify the caller: %v", err)}
	}
	if uid == 0 {
		return nil
	}
	ok, challenge, err := a.Check(c.Name, PolkitAction, c.Interactive)
	switch {
	case err != nil:
		return &authError{ErrNamePermission, fmt.Sprintf(
			"permission denied: uid %d may not change bans: it needs root or polkit's authorization for %s, and polkit did not answer: %v",
			uid, PolkitAction, err)}
	case ok:
		return nil
	case challenge && !c.Interactive:
		return &authError{ErrNameInteractiveAuthorizationRequired, fmt.Sprintf(
			"permission denied: uid %d needs to authenticate for %s (polkit); call with interactive authorization allowed and a polkit agent running, or as root",
			uid, PolkitAction)}
	case challenge:
		return &authError{ErrNamePermission, fmt.Sprintf(
			"permission denied: uid %d did not authenticate for %s: polkit asked for a password and got none (no polkit agent in the caller's session, or it was dismissed)",
			uid, PolkitAction)}
	default:
		return &authError{ErrNamePermission, fmt.Sprintf(
			"permission denied: uid %d may not change bans: polkit does not grant %s to it (root may; a polkit rule can grant it)",
			uid, PolkitAction)}
	}
}
