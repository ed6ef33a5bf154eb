package keeper

import (
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

var _ dbusapi.Model = (*Keeper)(nil)

// JailInfos implements dbusapi.Model: every configured jail with its
// effective settings and counters, in configuration order.
func (k *Keeper) JailInfos() []dbusapi.JailInfo {
	k.waitCounts()
	k.mu.Lock()
	rt, engine := k.rt, k.engine
	k.mu.Unlock()
	stats := map[string]jails.JailStats{}
	for _, s := range engine.Stats() {
		stats[s.Name] = s
	}
	active := k.table.ActiveCounts(time.Now())
	out := make([]dbusapi.JailInfo, 0, len(rt.Jails))
	for _, j := range rt.Jails {
		ji := dbusapi.JailInfo{
			Name:            j.Name,
			Units:           append([]string{}, j.Units...),
			Filter:          rt.Sources[j.Name].Filter,
			Mode:            rt.Sources[j.Name].Mode,
			MaxRetry:        uint32(orDefault(j.MaxRetry, jails.DefaultMaxRetry)),
			FindTime:        int64(orDefaultDur(j.FindTime, jails.DefaultFindTime) / time.Second),
			BanTime:         int64(orDefaultDur(j.BanTime, jails.DefaultBanTime) / time.Second),
			CurrentlyFailed: uint32(stats[j.Name].CurrentlyFailed),
			TotalFailed:     uint32(stats[j.Name].TotalFailed),
			CurrentlyBanned: uint32(active[j.Name]),
			TotalBanned:     uint32(k.table.Total(j.Name)),
		}
		if j.BanTime == jails.Permanent {
			ji.BanTime = -1
		}
		out = append(out, ji)
	}
	return out
}

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func orDefaultDur(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

// FailureCounts implements dbusapi.Model: each jail's CurrentlyFailed and
// TotalFailed, from the engine alone.
func (k *Keeper) FailureCounts() map[string][2]uint32 {
	k.waitCounts()
	k.mu.Lock()
	engine := k.engine
	k.mu.Unlock()
	out := map[string][2]uint32{}
	for _, s := range engine.Stats() {
		out[s.Name] = [2]uint32{uint32(s.CurrentlyFailed), uint32(s.TotalFailed)}
	}
	return out
}
