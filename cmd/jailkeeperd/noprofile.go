//go:build !profile

package main

import "errors"

// startCPUProfile refuses: runtime/pprof (about 0.2 MB of binary, so of
// resident memory) is linked only into a build with -tags profile.
func startCPUProfile(string) (func(), error) {
	return nil, errors.New("JAILKEEPER_CPUPROFILE: this jailkeeperd was built without -tags profile")
}
