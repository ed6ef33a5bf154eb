package fleetsync

import (
	"fmt"
	"testing"

	"github.com/jailkeeper/jailkeeper/pkg/dbusapi"
)

// table is a daemon's ListBansPage over a sorted list of bans, which
// change may alter before each call.
type table struct {
	bans   []dbusapi.BanInfo
	calls  int
	change func(t *table)
}

func (tb *table) page(offset, limit uint32) ([]dbusapi.BanInfo, uint32, error) {
	if tb.change != nil {
		tb.change(tb)
	}
	tb.calls++
	if int(offset) >= len(tb.bans) {
		return nil, uint32(len(tb.bans)), nil
	}
	end := min(len(tb.bans), int(offset+limit))
	return append([]dbusapi.BanInfo(nil), tb.bans[offset:end]...), uint32(len(tb.bans)), nil
}

func banList(n int) []dbusapi.BanInfo {
	out := make([]dbusapi.BanInfo, n)
	for i := range out {
		out[i] = dbusapi.BanInfo{Jail: "sshd", Prefix: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)}
	}
	return out
}

// TestListBans: the table read in overlapping pages; every ban once when
// it stands still, whatever its size; a change before the reading
// position between two pages makes the list not whole.
func TestListBans(t *testing.T) {
	for _, n := range []int{0, 1, reconcilePage - 1, reconcilePage, reconcilePage + 1, 3*reconcilePage + 7} {
		tb := &table{bans: banList(n)}
		got, whole, err := listBans(tb.page)
		if err != nil || !whole || len(got) != n {
			t.Fatalf("%d bans: got %d, whole %v, %v", n, len(got), whole, err)
		}
		seen := map[string]bool{}
		for _, b := range got {
			if seen[b.Prefix] {
				t.Fatalf("%d bans: %s listed twice", n, b.Prefix)
			}
			seen[b.Prefix] = true
		}
		if want := max(1, (n+reconcilePage-3)/(reconcilePage-1)); n > reconcilePage && tb.calls != want {
			t.Errorf("%d bans: %d calls, want %d", n, tb.calls, want)
		}
	}

	// A ban before the reading position expires between two pages: one
	// ban would be skipped.
	tb := &table{bans: banList(2*reconcilePage + 10)}
	tb.change = func(tb *table) {
		if tb.calls == 1 {
			tb.bans = tb.bans[1:]
		}
	}
	if got, whole, err := listBans(tb.page); err != nil || whole {
		t.Errorf("a ban removed before the position: whole %v (%d listed), %v; want not whole", whole, len(got), err)
	}
	// One added before it: one ban read twice.
	tb = &table{bans: banList(2*reconcilePage + 10)}
	tb.change = func(tb *table) {
		if tb.calls == 1 {
			tb.bans = append([]dbusapi.BanInfo{{Jail: "a-first", Prefix: "203.0.113.1"}}, tb.bans...)
		}
	}
	if _, whole, err := listBans(tb.page); err != nil || whole {
		t.Errorf("a ban added before the position: whole %v, %v; want not whole", whole, err)
	}
	// Changes after the position are read as they are: whole.
	tb = &table{bans: banList(2*reconcilePage + 10)}
	tb.change = func(tb *table) {
		if tb.calls == 1 {
			tb.bans = tb.bans[:len(tb.bans)-5]
		}
	}
	if got, whole, err := listBans(tb.page); err != nil || !whole || len(got) != 2*reconcilePage+5 {
		t.Errorf("bans removed after the position: %d listed, whole %v, %v; want %d, whole", len(got), whole, err, 2*reconcilePage+5)
	}
}
