package keeper

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// TestJailInfos: the object model's values are the jails' settings and the
// same counters Status gives.
func TestJailInfos(t *testing.T) {
	rt := testRuntime(t, "iptables", "sshd", "web")
	rt.Sources = map[string]config.JailSource{"sshd": {Filter: "sshd", Mode: "aggressive"}}
	rt.Jails[1].BanTime, rt.Jails[1].MaxRetry = -1, 0
	b := newBed(t, nil, rt)
	if _, err := b.k.Ban("web", []netip.Prefix{pfx("203.0.113.0/24"), pfx("2001:db8::1")}, 0); err != nil {
		t.Fatal(err)
	}
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.9", "c=1")})
	infos := b.k.JailInfos()
	if len(infos) != 2 {
		t.Fatalf("JailInfos = %+v", infos)
	}
	s, w := infos[0], infos[1]
	if s.Name != "sshd" || s.Filter != "sshd" || s.Mode != "aggressive" || s.MaxRetry != 2 || s.FindTime != 600 || s.BanTime != 3600 ||
		!slices.Equal(s.Units, []string{"sshd.service"}) || s.CurrentlyFailed != 1 || s.TotalFailed != 1 || s.CurrentlyBanned != 0 {
		t.Errorf("sshd = %+v", s)
	}
	if fc := b.k.FailureCounts(); len(fc) != 2 || fc["sshd"] != [2]uint32{1, 1} || fc["web"] != [2]uint32{1, 1} /* web reads sshd.service too */ {
		t.Errorf("FailureCounts = %v", fc)
	}
	st, _ := b.k.Status("web")
	if w.Name != "web" || w.Filter != "" || w.MaxRetry != 5 || w.BanTime != -1 ||
		w.CurrentlyBanned != 2 || w.CurrentlyBanned != st[0].CurrentlyBanned || w.TotalBanned != st[0].TotalBanned {
		t.Errorf("web = %+v (Status %+v)", w, st[0])
	}
}
