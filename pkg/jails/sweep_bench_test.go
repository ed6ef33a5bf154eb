package jails

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/bans"
)

// takeOnly hides the engine's SweepState: the table then compacts the
// saved counts with one full dump.
type takeOnly struct{ e *Engine }

func (t takeOnly) TakeState(all bool, put func(k, v []byte)) bool { return t.e.TakeState(all, put) }

// BenchmarkFloodSaved: a flood of 1,000,000 distinct addresses (one failure
// each) through the engine, its counts saved with a cursor every 1,024
// entries in a ban table on disk, as the daemon does; it reports the
// slowest cursor write (the compaction's, when it is one dump) and the
// time per address.
func BenchmarkFloodSaved(b *testing.B) {
	const n = 1_000_000
	for _, swept := range []bool{false, true} {
		b.Run(fmt.Sprintf("swept=%v", swept), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				tb, err := bans.Open(filepath.Join(b.TempDir(), bans.FileName))
				if err != nil {
					b.Fatal(err)
				}
				e := newTestEngine(b, stateJail(b, "sshd", 5, 64))
				e.RestoreState(memState{}.each, t0)
				if swept {
					tb.AttachState(e)
				} else {
					tb.AttachState(takeOnly{e})
				}
				b.StartTimer()
				var slowest time.Duration
				for i := range n {
					v := uint32(0x0a000000 + i)
					a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
					e.Handle(entry(time.Duration(i)*time.Microsecond, "Failed password for root from %s port 22 ssh2", a))
					if i%1024 == 1023 {
						start := time.Now()
						if err := tb.SaveCursor(fmt.Sprint(i)); err != nil {
							b.Fatal(err)
						}
						slowest = max(slowest, time.Since(start))
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(slowest.Milliseconds()), "slowest-write-ms")
				tb.Close()
				b.StartTimer()
			}
		})
	}
}
