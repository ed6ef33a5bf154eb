package bans

import "time"

// ActiveCounts returns how many bans each jail has in force at now,
// without copying the bans (the D-Bus object model reads it every second).
func (t *Table) ActiveCounts(now time.Time) map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]int{}
	for k, b := range t.active {
		if !b.Expired(now) {
			out[k.jail]++
		}
	}
	return out
}
