package testbed

import (
	"os/exec"
	"os/user"
	"testing"
)

// EnsureUser makes sure an unprivileged local user named name exists (a
// system user without home or login shell) and returns its UID as a
// string. A user created here is removed at cleanup.
func EnsureUser(t testing.TB, name string) string {
	t.Helper()
	if u, err := user.Lookup(name); err == nil {
		return u.Uid
	}
	Require(t, "useradd", "userdel")
	Run(t, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name)
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("looking up new user %s: %v", name, err)
	}
	return u.Uid
}
