package dbusapi

import "github.com/godbus/dbus/v5"

// HistoryEntry is one event of the ban history, as ListHistory returns
// them (a(xsssuxss)). Time and Expires are Unix seconds; Expires is 0 for
// a permanent ban and for events other than bans. Kind is "ban", "unban"
// or "expiry". Count is how many bans the event stands for: a change of
// many bans of a jail at once (an import, a mass expiry) is one event,
// whose Prefix, Expires and Reason are those of its first ban. Origin
// says who decided it: "journal" (the jail's filter), "admin" (a D-Bus
// caller), a fleet server's name, or "" for expiries.
type HistoryEntry struct {
	Time    int64  `json:"time"`
	Kind    string `json:"kind"`
	Jail    string `json:"jail"`
	Prefix  string `json:"address"`
	Count   uint32 `json:"count"`
	Expires int64  `json:"expires"`
	Reason  string `json:"reason"`
	Origin  string `json:"origin"`
}

// Historian is what a Manager implements to serve ListHistory.
type Historian interface {
	// ListHistory returns at most limit events of jail ("" = every jail),
	// newest first, from the offset-th on, and how many there are in all.
	ListHistory(jail string, offset, limit int) ([]HistoryEntry, int, error)
}

// listHistory serves ListHistory of Manager1 and Jail1: a costly read
// (rate-limited like ListBans), at most MaxPage events (limit 0 means
// MaxPage; fewer when they would not fit in the reply budget), user names
// in reasons hidden from callers other than root.
func (s *Server) listHistory(sender dbus.Sender, jail string, offset, limit uint32) ([]HistoryEntry, uint32, *dbus.Error) {
	h, ok := s.m.(Historian)
	if !ok {
		return []HistoryEntry{}, 0, dbus.NewError(ErrNameFailed, []any{"this jailkeeper keeps no ban history"})
	}
	release, e := s.startRead(sender)
	if e != nil {
		return []HistoryEntry{}, 0, e
	}
	defer release()
	if limit == 0 || limit > MaxPage {
		limit = MaxPage
	}
	out, total, err := h.ListHistory(jail, int(offset), int(limit))
	if err != nil {
		return []HistoryEntry{}, 0, dbusErr(err)
	}
	if out == nil {
		out = []HistoryEntry{}
	}
	if uid, ok := s.uidOf(sender); !ok || uid != 0 {
		for i := range out {
			out[i].Reason = HideUsers(out[i].Reason)
		}
	}
	out = fitHistory(out, s.replyLimit())
	return out, uint32(min(total, 1<<32-1)), nil
}

// ListHistory returns at most limit events of the ban history of jail (""
// = every jail), newest first, from the offset-th on, and how many there
// are in all.
func (x methods) ListHistory(sender dbus.Sender, jail string, offset, limit uint32) ([]HistoryEntry, uint32, *dbus.Error) {
	return x.s.listHistory(sender, jail, offset, limit)
}

// ListHistory is Manager1.ListHistory of this jail.
func (x jailMethods) ListHistory(sender dbus.Sender, offset, limit uint32) ([]HistoryEntry, uint32, *dbus.Error) {
	return x.o.s.listHistory(sender, x.name, offset, limit)
}
