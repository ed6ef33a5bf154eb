package main

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeBans records BanMany calls: how many ran at once, and fails the
// call whose first address is failAt.
type fakeBans struct {
	mu               sync.Mutex
	got              map[string]int
	calls, now, most int
	failAt           string
	failed           bool // the failing call has returned
	afterFail        int  // calls that started after it returned
}

func (f *fakeBans) BanMany(jail string, addrs []string, d time.Duration) (uint32, error) {
	f.mu.Lock()
	f.calls++
	if f.failed {
		f.afterFail++
	}
	f.now++
	f.most = max(f.most, f.now)
	f.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // the daemon at work: the next call overlaps
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now--
	if len(addrs) > 0 && addrs[0] == f.failAt {
		f.failed = true
		return 0, errors.New("refused")
	}
	for _, a := range addrs {
		f.got[a]++
	}
	return uint32(len(addrs)), nil
}

func TestBanChunks(t *testing.T) {
	addrs := make([]string, 5*banChunk+7)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("a%07d", i)
	}
	f := &fakeBans{got: map[string]int{}}
	var progress []int
	n, sent, err := banChunks(f, "sshd", addrs, 0, func(s int) { progress = append(progress, s) })
	if err != nil || n != uint32(len(addrs)) || sent != len(addrs) {
		t.Fatalf("banChunks = %d, %d, %v; want %d each", n, sent, err, len(addrs))
	}
	if len(f.got) != len(addrs) {
		t.Fatalf("the daemon got %d distinct addresses, want %d", len(f.got), len(addrs))
	}
	for a, c := range f.got {
		if c != 1 {
			t.Fatalf("%s sent %d times", a, c)
		}
	}
	if f.calls != 6 || f.most != banInFlight {
		t.Errorf("%d calls, at most %d at once; want 6 and %d", f.calls, f.most, banInFlight)
	}
	if len(progress) != 6 || progress[5] != len(addrs) {
		t.Errorf("progress %v", progress)
	}

	// A failing call: the first error, no chunk sent after it, the
	// addresses of the calls that succeeded counted. Calls started
	// before it returned may end after it (or before: a later chunk can
	// overtake the failing one), and count. Between its return and the
	// CLI reading its result, the results queued before it (at most
	// banInFlight-1) may each start one more call; none after that.
	f = &fakeBans{got: map[string]int{}, failAt: addrs[2*banChunk]}
	n, sent, err = banChunks(f, "sshd", addrs, 0, func(int) {})
	if err == nil || err.Error() != "refused" {
		t.Fatalf("err = %v", err)
	}
	if f.afterFail > banInFlight-1 || sent != len(f.got) || n != uint32(sent) || sent < 2*banChunk || sent > len(addrs)-banChunk {
		t.Errorf("after a failure: %d calls (%d started after it), %d sent, %d banned, the daemon got %d", f.calls, f.afterFail, sent, n, len(f.got))
	}

	// No address: one call (the daemon says how many of nothing).
	f = &fakeBans{got: map[string]int{}}
	if n, sent, err := banChunks(f, "sshd", nil, 0, func(int) {}); err != nil || n != 0 || sent != 0 || f.calls != 1 {
		t.Errorf("empty list: %d, %d, %v after %d calls", n, sent, err, f.calls)
	}
}
