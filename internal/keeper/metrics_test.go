package keeper

import (
	"errors"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// TestDaemonMetrics: entries read and the lag follow the batches; a
// verification's time and result and the repairs follow Verify.
func TestDaemonMetrics(t *testing.T) {
	b := newBed(t, nil, testRuntime(t, "iptables", "sshd"))
	if m := b.k.DaemonMetrics(); m.JournalEntriesRead != 0 || !m.LastVerify.IsZero() || m.FirewallRepairs != 0 {
		t.Fatalf("fresh metrics %+v", m)
	}
	old := failure("203.0.113.9", "")
	old.Time = time.Now().Add(-30 * time.Second)
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.8", "")}, []journal.Entry{failure("203.0.113.7", ""), old})
	m := b.k.DaemonMetrics()
	if m.JournalEntriesRead != 3 {
		t.Errorf("entries read %d, want 3", m.JournalEntriesRead)
	}
	if m.JournalLag < 30*time.Second || m.JournalLag > time.Minute {
		t.Errorf("lag %v, want about 30 s (the last entry's age)", m.JournalLag)
	}
	b.k.HandleBatch([]journal.Entry{failure("203.0.113.6", "c=1")})
	if m := b.k.DaemonMetrics(); m.JournalEntriesRead != 4 || m.JournalLag > 10*time.Second {
		t.Errorf("after a fresh entry: %d read, lag %v", m.JournalEntriesRead, m.JournalLag)
	}

	before := time.Now()
	if err := b.k.Verify(); err != nil {
		t.Fatal(err)
	}
	if m := b.k.DaemonMetrics(); !m.LastVerifyOK || m.LastVerify.Before(before) || m.FirewallRepairs != 0 {
		t.Errorf("after a clean verification: %+v", m)
	}
	b.fws["iptables"].Drift(firewall.DriftFlushChain)
	if err := b.k.Verify(); err != nil {
		t.Fatal(err)
	}
	if m := b.k.DaemonMetrics(); !m.LastVerifyOK || m.FirewallRepairs != 1 {
		t.Errorf("after a repair: %+v, want 1 repair", m)
	}
	b.fws["iptables"].Fail = errors.New("netlink: operation not permitted")
	b.fws["iptables"].Drift(firewall.DriftDeleteJump)
	if err := b.k.Verify(); err == nil {
		t.Fatal("Verify with a failing repair returned nil")
	}
	if m := b.k.DaemonMetrics(); m.LastVerifyOK || m.FirewallRepairs != 1 {
		t.Errorf("after a failed repair: %+v, want not OK and still 1 repair", m)
	}
}
