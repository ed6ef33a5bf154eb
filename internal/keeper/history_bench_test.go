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
