package dbusapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

// fakeAuthority answers like the bus daemon and polkit would, and records
// what polkit was asked.
type fakeAuthority struct {
	uid                   uint32
	uidErr                error
	authorized, challenge bool
	polkitErr             error

	asked       int
	action      string
	interactive bool
}

func (f *fakeAuthority) UID(string) (uint32, error) { return f.uid, f.uidErr }

func (f *fakeAuthority) Check(name, action string, interactive bool) (bool, bool, error) {
	f.asked++
	f.action, f.interactive = action, interactive
	return f.authorized, f.challenge, f.polkitErr
}

func TestAuthorize(t *testing.T) {
	tests := []struct {
		name        string
		a           fakeAuthority
		interactive bool
		wantAsked   bool
		wantErr     string // "" = allowed; else the D-Bus error name and a part of its text
		wantText    string
	}{
		{name: "root, polkit not asked", a: fakeAuthority{uid: 0}},
		{name: "unknown caller", a: fakeAuthority{uidErr: errors.New("NameHasNoOwner")},
			wantErr: ErrNamePermission, wantText: "cannot identify the caller"},
		{name: "polkit grants", a: fakeAuthority{uid: 1000, authorized: true}, wantAsked: true},
		{name: "polkit grants after interactive authentication", a: fakeAuthority{uid: 1000, authorized: true}, interactive: true, wantAsked: true},
		{name: "polkit denies", a: fakeAuthority{uid: 1000}, wantAsked: true,
			wantErr: ErrNamePermission, wantText: "uid 1000 may not change bans: polkit does not grant org.jailkeeper.manage"},
		{name: "authentication needed, caller not interactive", a: fakeAuthority{uid: 1000, challenge: true}, wantAsked: true,
			wantErr: ErrNameInteractiveAuthorizationRequired, wantText: "uid 1000 needs to authenticate"},
		{name: "authentication failed", a: fakeAuthority{uid: 1000, challenge: true}, interactive: true, wantAsked: true,
			wantErr: ErrNamePermission, wantText: "uid 1000 did not authenticate"},
		{name: "no polkit", a: fakeAuthority{uid: 1000, polkitErr: errors.New("ServiceUnknown")}, wantAsked: true,
			wantErr: ErrNamePermission, wantText: "polkit did not answer: ServiceUnknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.a
			err := authorize(&a, Caller{Name: ":1.7", Interactive: tc.interactive})
			if (a.asked > 0) != tc.wantAsked {
				t.Errorf("polkit asked %d times, want asked = %v", a.asked, tc.wantAsked)
			}
			if a.asked > 0 && (a.action != PolkitAction || a.interactive != tc.interactive) {
				t.Errorf("polkit asked about %q interactive=%v, want %q interactive=%v", a.action, a.interactive, PolkitAction, tc.interactive)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("allowed")
			}
			de := refusal(err)
			if de.Name != tc.wantErr || !strings.Contains(de.Body[0].(string), tc.wantText) {
				t.Errorf("refusal %s %q, want %s containing %q", de.Name, de.Body[0], tc.wantErr, tc.wantText)
			}
		})
	}
}

func TestCallerOf(t *testing.T) {
	msg := &dbus.Message{Headers: map[dbus.HeaderField]dbus.Variant{dbus.FieldSender: dbus.MakeVariant(":1.42")}}
	if c := callerOf(msg); c != (Caller{Name: ":1.42"}) {
		t.Errorf("callerOf = %+v", c)
	}
	msg.Flags = dbus.FlagAllowInteractiveAuthorization | dbus.FlagNoAutoStart
	if c := callerOf(msg); c != (Caller{Name: ":1.42", Interactive: true}) {
		t.Errorf("callerOf with ALLOW_INTERACTIVE_AUTHORIZATION = %+v", c)
	}
}
