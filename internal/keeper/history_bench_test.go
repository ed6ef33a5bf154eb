package keeper

import (
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/bans"
)

// BenchmarkRecordImportStep is what the history costs one step of an
// import (importChunk bans of one jail: one event).
func BenchmarkRecordImportStep(b *testing.B) {
	k := &Keeper{table: bans.NewMemory()}
	step := make([]bans.Ban, importChunk)
	now := time.Now()
	for i, p := range importList(importChunk) {
		step[i] = bans.Ban{Jail: "sshd", Prefix: p, Start: now, Expires: now.Add(time.Hour), Reason: "banned by an administrator"}
	}
	b.ResetTimer()
	for range b.N {
		k.record(bans.EventBan, step, OriginAdmin)
	}
}

// BenchmarkRecordJournalBans is what the history costs 1,000 bans of the
// engine committed at once (an event each).
func BenchmarkRecordJournalBans(b *testing.B) {
	k := &Keeper{table: bans.NewMemory()}
	bs := make([]bans.Ban, 1000)
	now := time.Now()
	for i, p := range importList(len(bs)) {
		bs[i] = bans.Ban{Jail: "sshd", Prefix: p, Start: now, Expires: now.Add(time.Hour), Reason: `3 failures within 10m0s, last for user "root"`}
	}
	b.ResetTimer()
	for range b.N {
		k.table = bans.NewMemory() // an empty queue each time
		k.record(bans.EventBan, bs, OriginJournal)
	}
}
