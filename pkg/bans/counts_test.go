package bans

import (
	"fmt"
	"testing"
	"time"
)

// TestActiveCounts: up to activeCountsScan bans the counts leave out the
// expired ones not yet lifted; above, they are the held counts.
func TestActiveCounts(t *testing.T) {
	tb := NewMemory()
	bs := []Ban{ban("sshd", "198.51.100.1/32", t0, time.Minute), ban("sshd", "198.51.100.2/32", t0, time.Hour), ban("web", "198.51.100.1/32", t0, 0)}
	if _, err := tb.Add(bs...); err != nil {
		t.Fatal(err)
	}
	if c := tb.ActiveCounts(t0.Add(2 * time.Minute)); c["sshd"] != 1 || c["web"] != 1 {
		t.Fatalf("ActiveCounts = %v, want sshd 1 (one expired), web 1", c)
	}
	bs = bs[:0]
	for i := range activeCountsScan {
		bs = append(bs, ban("web", fmt.Sprintf("10.0.%d.%d/32", i>>8, i&0xff), t0, time.Hour))
	}
	if _, err := tb.Add(bs...); err != nil {
		t.Fatal(err)
	}
	if c := tb.ActiveCounts(t0.Add(2 * time.Minute)); c["sshd"] != 2 || c["web"] != 1+activeCountsScan {
		t.Fatalf("ActiveCounts above %d bans = %v, want the held counts", activeCountsScan, c)
	}
}
