package main

import (
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/godbus/dbus/v5"

	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/firewall"
)

// teardownBackends are the backends `teardown` removes a layout of, in
// this order, whichever the configuration names: a layout left by an
// earlier configuration is removed too.
var teardownBackends = []string{"iptables", "nftables"}

// cmdTeardown removes jailkeeper's firewall layout from the kernel: the
// INPUT jumps, the JAILKEEPER chains and every jk-* ipset (iptables), and
// table inet jailkeeper (nftables). The ban table on disk stays, so a
// later start restores the bans. It refuses while a daemon holds
// org.jailkeeper, which would rebuild the layout at its next check.
func cmdTeardown(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("teardown", "teardown [--backend iptables|nftables|all] [--force]", stderr)
	backend := fs.String("backend", "all", "remove the layout of this backend only")
	force := fs.Bool("force", false, "tear down even while a daemon is running (it rebuilds the layout)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(pos) != 0 {
		fmt.Fprintln(stderr, "jailkeeper teardown: takes no arguments")
		return 2
	}
	names := teardownBackends
	switch *backend {
	case "all":
	case "iptables", "nftables":
		names = []string{*backend}
	default:
		fmt.Fprintf(stderr, "jailkeeper teardown: unknown --backend %q (want iptables, nftables or all)\n", *backend)
		return 2
	}
	if !*force {
		running, err := daemonRunning()
		if err != nil {
			fmt.Fprintf(stderr, "jailkeeper teardown: cannot tell whether jailkeeper runs (%v); going on\n", oneLine(err.Error()))
		}
		if running {
			return fail(stderr, "teardown", errors.New("jailkeeper is running and would rebuild the layout: "+
				"stop it first (systemctl disable --now jailkeeper; systemctl mask jailkeeper), or use --force"))
		}
	}
	failed := false
	for _, name := range names {
		done, err := teardownBackend(name)
		if err != nil {
			fmt.Fprintf(stderr, "jailkeeper teardown: %s: %s\n", name, oneLine(err.Error()))
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", name, done)
	}
	if failed {
		return 1
	}
	return 0
}

// teardownBackend removes the layout of one backend and says what it did.
// The iptables backend is skipped when iptables is not installed: it can
// have left nothing then.
func teardownBackend(name string) (string, error) {
	if name == "iptables" {
		if _, err := exec.LookPath("iptables"); err != nil {
			return "iptables is not installed; nothing to remove", nil
		}
	}
	b, err := firewall.New(name, firewall.Options{})
	if err != nil {
		return "", fmt.Errorf("opening the backend: %w", err)
	}
	defer b.Close()
	held, _ := b.List() // nothing to list is no error here
	if err := b.Teardown(); err != nil {
		return "", err
	}
	gone := "no table inet jailkeeper left"
	if name == "iptables" {
		gone = "no JAILKEEPER chain, INPUT jump or jk-* ipset left"
	}
	if len(held) > 0 {
		gone = fmt.Sprintf("%s (bans it held: %d)", gone, len(held))
	}
	return gone, nil
}

// daemonRunning reports whether org.jailkeeper has an owner on the system
// bus. It asks the bus daemon (NameHasOwner), which never starts a service
// the way a call to org.jailkeeper itself would.
func daemonRunning() (bool, error) {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return false, fmt.Errorf("connecting to the system bus: %w", err)
	}
	defer conn.Close()
	var has bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, dbusapi.BusName).Store(&has); err != nil {
		return false, fmt.Errorf("asking the bus about %s: %w", dbusapi.BusName, err)
	}
	return has, nil
}
