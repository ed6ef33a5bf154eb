package dbusapi

import (
	"fmt"
	"testing"
)

// pageTable is a daemon's ListBansPage over a sorted list of bans, which
// change may alter before each call.
type pageTable struct {
	bans   []BanInfo
	calls  int
	change func(t *pageTable)
	cut    int // at most this many bans a page, when > 0 (a page cut to one message)
}

func (tb *pageTable) page(offset, limit uint32) ([]BanInfo, uint32, error) {
	if tb.change != nil {
		tb.change(tb)
	}
	tb.calls++
	if int(offset) >= len(tb.bans) {
		return nil, uint32(len(tb.bans)), nil
	}
	end := min(len(tb.bans), int(offset+limit))
	if tb.cut > 0 {
		end = min(end, int(offset)+tb.cut)
	}
	return append([]BanInfo(nil), tb.bans[offset:end]...), uint32(len(tb.bans)), nil
}

func banList(n int) []BanInfo {
	out := make([]BanInfo, n)
	for i := range out {
		out[i] = BanInfo{Jail: "sshd", Prefix: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)}
	}
	return out
}

// TestReadBans: the table read in overlapping pages; every ban once when
// it stands still, whatever its size; a change before the reading
// position between two pages makes the list not whole.
func TestReadBans(t *testing.T) {
	for _, n := range []int{0, 1, MaxPage - 1, MaxPage, MaxPage + 1, 3*MaxPage + 7} {
		tb := &pageTable{bans: banList(n)}
		got, whole, err := ReadBans(tb.page)
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
		if want := max(1, (n+MaxPage-3)/(MaxPage-1)); n > MaxPage && tb.calls != want {
			t.Errorf("%d bans: %d calls, want %d", n, tb.calls, want)
		}
	}

	// A ban before the reading position expires between two pages: one
	// ban would be skipped.
	tb := &pageTable{bans: banList(2*MaxPage + 10)}
	tb.change = func(tb *pageTable) {
		if tb.calls == 1 {
			tb.bans = tb.bans[1:]
		}
	}
	if got, whole, err := ReadBans(tb.page); err != nil || whole {
		t.Errorf("a ban removed before the position: whole %v (%d listed), %v; want not whole", whole, len(got), err)
	}
	// One added before it: one ban read twice.
	tb = &pageTable{bans: banList(2*MaxPage + 10)}
	tb.change = func(tb *pageTable) {
		if tb.calls == 1 {
			tb.bans = append([]BanInfo{{Jail: "a-first", Prefix: "203.0.113.1"}}, tb.bans...)
		}
	}
	if _, whole, err := ReadBans(tb.page); err != nil || whole {
		t.Errorf("a ban added before the position: whole %v, %v; want not whole", whole, err)
	}
	// Changes after the position are read as they are: whole.
	tb = &pageTable{bans: banList(2*MaxPage + 10)}
	tb.change = func(tb *pageTable) {
		if tb.calls == 1 {
			tb.bans = tb.bans[:len(tb.bans)-5]
		}
	}
	if got, whole, err := ReadBans(tb.page); err != nil || !whole || len(got) != 2*MaxPage+5 {
		t.Errorf("bans removed after the position: %d listed, whole %v, %v; want %d, whole", len(got), whole, err, 2*MaxPage+5)
	}

	// Pages cut short by the daemon (one message): every ban still, once.
	for _, cut := range []int{1, 2, 1000} {
		tb = &pageTable{bans: banList(3*MaxPage + 1), cut: cut}
		got, _, err := ReadBans(tb.page)
		seen := map[string]bool{}
		for _, b := range got {
			seen[b.Prefix] = true
		}
		if err != nil || len(got) != 3*MaxPage+1 || len(seen) != len(got) {
			t.Errorf("pages of %d: %d bans (%d distinct), %v; want %d", cut, len(got), len(seen), err, 3*MaxPage+1)
		}
	}
}
