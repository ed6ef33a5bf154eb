// Package systemdtest checks jailkeeper as a real systemd service, the way
// the README tells users to run it: `make install` into a Debian bookworm
// root file system, `systemctl enable --now jailkeeper` under a real
// systemd 252 booted with systemd-nspawn inside a network namespace of the
// test, then the CLI, busctl, journalctl, polkit (a rule granting one
// user), a reboot with persisted bans probed from a banned source, reload,
// restart, D-Bus activation, the watchdog, `systemd-analyze security`,
// stopping for good (mask, teardown), `make uninstall` and `make purge`,
// and the Cockpit page behind Cockpit's own login (cockpit.socket).
// The root file system is built once with debootstrap and cached (see
// CacheDir); every run boots a copy of it. The package holds tests only; they need root
// and skip (or fail, when CI is set) without it.
package systemdtest

// CacheDir is where the debootstrapped root file systems are kept between
// runs, one directory per suite and package list. JAILKEEPER_TEST_CACHE
// overrides it.
const CacheDir = "/var/cache/jailkeeper-test"
