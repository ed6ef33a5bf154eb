package dbusapi

// PageFunc is ListBansPage: at most limit bans from offset on, and how
// many there are in all.
type PageFunc func(offset, limit uint32) ([]BanInfo, uint32, error)

// ReadBans reads every active ban through page, MaxPage at a time: the
// way a client reads the whole table, which one ListBans reply cannot
// carry beyond MaxListBans bans. A page may hold fewer bans than asked
// for (the daemon cuts it to one message); the next one starts after the
// bans received. The pages overlap by one ban: when the overlapping ban
// differs, the table changed before the reading position between two
// calls (a ban skipped or read twice), and whole is false. Bans listed are
// active either way.
func ReadBans(page PageFunc) (bans []BanInfo, whole bool, err error) {
	whole = true
	var offset uint32
	var last *BanInfo
	for {
		got, total, err := page(offset, MaxPage)
		if err != nil {
			return nil, false, err
		}
		n := uint32(len(got))
		if last != nil {
			if n == 0 || got[0].Jail != last.Jail || got[0].Prefix != last.Prefix {
				whole = false
			} else {
				got = got[1:]
			}
		}
		bans = append(bans, got...)
		last = nil
		if len(got) > 0 {
			l := got[len(got)-1]
			last = &l
		}
		if n == 0 || offset+n >= total {
			return bans, whole, nil
		}
		if n == 1 {
			// A page of one ban leaves no room for the overlap: go on
			// without the check.
			offset++
			last = nil
			whole = false
			continue
		}
		offset += n - 1
	}
}
