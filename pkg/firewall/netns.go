package firewall

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// nsPath turns a namespace name ("jk-srv-1a2b3c") into its bind-mount path
// under /run/netns; a path is returned as is.
func nsPath(ns string) string {
	if ns == "" || strings.Contains(ns, "/") {
		return ns
	}
	return "/run/netns/" + ns
}

// openNetNS opens the namespace at path; "" opens none (netns.None()).
func openNetNS(path string) (netns.NsHandle, error) {
	if path == "" {
		return netns.None(), nil
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	return h, nil
}

// inNetNS runs fn on an OS thread that has joined the network namespace at
// path, so that sockets fn creates and processes it starts (exec from the
// same locked thread) live in that namespace. With path "" fn runs in the
// caller's namespace. If the thread cannot return to its own namespace it
// stays locked and dies with its goroutine, so it never serves other code.
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("reading current network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening network namespace %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it terminates with this goroutine.
			errc <- fmt.Errorf("leaving network namespace %s: %w", path, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
