package bans

import (
	"path/filepath"
	"testing"
)

// BenchmarkFlushEvents writes 5,000 events (a flood's second) in one flush.
func BenchmarkFlushEvents(b *testing.B) {
	tb, err := Open(filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
	evs := make([]Event, 5000)
	for i := range evs {
		evs[i] = event(i, "sshd", EventBan)
	}
	b.ResetTimer()
	for range b.N {
		tb.RecordEvents(evs...)
		if err := tb.FlushEvents(t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvents reads the newest page of a full history (HistoryKeep
// events), of all jails and of one jail that holds a tenth of them.
func BenchmarkEvents(b *testing.B) {
	tb, err := Open(filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
	evs := make([]Event, HistoryKeep)
	for i := range evs {
		jail := "sshd"
		if i%10 == 0 {
			jail = "web"
		}
		evs[i] = event(i, jail, EventBan)
	}
	tb.RecordEvents(evs...)
	if err := tb.FlushEvents(t0); err != nil {
		b.Fatal(err)
	}
	for _, jail := range []string{"", "web"} {
		b.Run("jail="+jail, func(b *testing.B) {
			for range b.N {
				if page, total, err := tb.Events(jail, 0, 50); err != nil || len(page) != 50 || total == 0 {
					b.Fatal(page, total, err)
				}
			}
		})
	}
}
