//go:build !race

package sdjournal

// raceEnabled is true under -race, where the detector's slowdown makes
// latency figures meaningless.
const raceEnabled = false
