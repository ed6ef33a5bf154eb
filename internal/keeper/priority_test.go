package keeper

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/bans"
	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

// gatedFake is a fake firewall whose Add of more than one ban (an import
// step) waits for gate, and which records what each Add was.
type gatedFake struct {
	*firewall.Fake
	gate    chan struct{}
	entered chan struct{} // gets a value when a step's Add starts
	mu      sync.Mutex
	adds    []string // "step" or the address of a single ban
}

func (g *gatedFake) Name() string { return "iptables" }

func (g *gatedFake) Add(bs []firewall.Ban) error {
	what := "step"
	if len(bs) == 1 {
		what = bs[0].Prefix.Addr().String()
	}
	g.mu.Lock()
	g.adds = append(g.adds, what)
	g.mu.Unlock()
	if len(bs) > 1 {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		<-g.gate
	}
	return g.Fake.Add(bs)
}

// addrList is n distinct addresses of 198.18.0.0/15 from the offset's.
func addrList(offset, n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		v := offset + i
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(v>>16&1), byte(v >> 8), byte(v)}), 32)
	}
	return out
}

// TestJournalBeforeImportSteps: while two imports run (as `ban -` keeps
// two BanMany calls in flight), a ban the journal decided waits for the
// import step in progress only, not for the other import's step queued
// before it: the main loop's work goes first.
func TestJournalBeforeImportSteps(t *testing.T) {
	fw := &gatedFake{Fake: &firewall.Fake{}, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	k, err := Start(testRuntime(t, "iptables", "sshd"), bans.NewMemory(), Options{
		Log:        &Logger{out: &bytes.Buffer{}},
		NewBackend: func(string, firewall.Options) (firewall.Backend, error) { return fw, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	var wg sync.WaitGroup
	imports := make(chan error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := k.Ban("sshd", addrList(i*2*importChunk, 2*importChunk), 0)
			imports <- err
		}()
	}
	// The first step is in the kernel; the other import queues behind it.
	<-fw.entered
	time.Sleep(100 * time.Millisecond)
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		k.HandleBatch([]journal.Entry{failure("203.0.113.9", ""), failure("203.0.113.9", "c=1")})
	}()
	time.Sleep(100 * time.Millisecond) // the batch waits for the lock too
	close(fw.gate)
	<-handled
	wg.Wait()
	close(imports)
	for err := range imports {
		if err != nil {
			t.Fatal(err)
		}
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if len(fw.adds) != 5 || fw.adds[1] != "203.0.113.9" {
		t.Fatalf("the kernel's adds: %q; want the journal's ban right after the first step, of 4", fw.adds)
	}
	for _, a := range []string{"203.0.113.9", "198.18.0.1", addrList(4*importChunk-1, 1)[0].Addr().String()} {
		if v := fw.Verdict(netip.MustParseAddr(a), firewall.ProtoTCP, 22); v != firewall.VerdictReject {
			t.Errorf("%s: %s, want reject", a, v)
		}
	}
}
