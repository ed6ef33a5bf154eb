package dbusapi

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
)

// Every message the daemon sends stays below the bus's message size
// limit: dbus-daemon disconnects a peer that sends a larger one instead of
// delivering it (org.jailkeeper then has no owner until the daemon
// reconnects, and a client that repeats the call knocks it off again).
// The daemon cannot ask the bus for its limit, so it assumes BusLimit
// (dbus-daemon's default for the system bus) unless told a lower one
// (Server.SetBusLimit), and measures what it sends:
//
//   - ListBans (Manager1 and Jail1) answers up to MaxListBans bans; with
//     more, or a reply larger than the reply budget, it fails with
//     ErrNameUseListBansPage instead.
//   - ListBansPage and ListHistory return fewer items than asked for when
//     the page would exceed the reply budget (at least one item); a client
//     pages on from offset plus the number of items it got.
//   - Status drops its lists of banned addresses (the counts stay) when
//     they would exceed the reply budget.
//   - BannedMany and UnbannedMany are sent in pieces of at most
//     SignalBudget bytes each (the same signal, fewer addresses).
//   - Every other reply and signal is bounded by the configuration (the
//     jails, their units) or by the call it answers.
//   - As a last guard, the daemon's connection (ConnectService) measures
//     every method reply that carries an array, a map or a long string
//     before it leaves, and sends ErrNameReplyTooLarge instead of one
//     larger than the bus's limit.
//
// Sizes are upper bounds of the marshalled body (each string counted with
// its length, terminator and the most padding it can need); messageSlack
// covers the header.
const (
	// BusLimit is the message size limit assumed of the bus: dbus-daemon's
	// default max_message_size for the system bus, 32 MiB.
	BusLimit = 32 << 20
	// MaxReply bounds the body of any reply, whatever the bus's limit.
	MaxReply = 4 << 20
	// SignalBudget bounds the body of a BannedMany or UnbannedMany signal
	// (about 1,000 IPv4 or 600 IPv6 addresses).
	SignalBudget = 32 << 10
	// MaxListBans is the most bans ListBans returns: 10,000 bans with
	// reasons of fleet's longest (256 bytes) and the longest jail names
	// and IPv6 networks stay below 3.5 MiB, within MaxReply.
	MaxListBans = 10_000
	// MinBusLimit is the lowest limit SetBusLimit accepts: dbus-daemon's
	// own floor is far below, but a bus that small cannot carry one
	// Banned signal with a long reason.
	MinBusLimit = 16 << 10
	// messageSlack is what a message's header and the body's framing
	// take at most besides the items counted.
	messageSlack = 4 << 10
)

// ErrNameReplyTooLarge is the D-Bus error sent instead of a reply larger
// than the bus's message size limit.
const ErrNameReplyTooLarge = "org.jailkeeper.Error.ReplyTooLarge"

// ErrNameUseListBansPage is the D-Bus error of a ListBans whose reply
// would be too large for one message.
const ErrNameUseListBansPage = "org.jailkeeper.Error.TooManyBansUseListBansPage"

// SetBusLimit tells the server the bus's max_message_size in bytes, when
// it is configured below BusLimit; n below MinBusLimit is taken as
// MinBusLimit, 0 restores BusLimit.
func (s *Server) SetBusLimit(n int) {
	if n == 0 {
		n = BusLimit
	}
	n = max(n, MinBusLimit)
	s.budget.Store(int64(replyBudget(n)))
	guardLimit.Store(int64(n))
}

// guardLimit is the bus's limit as guardReply applies it: the daemon's one
// connection takes it from the Server's SetBusLimit.
var guardLimit atomic.Int64

// guardReply is the outgoing interceptor of the daemon's connection: a
// method reply larger than the bus's limit becomes an ErrNameReplyTooLarge
// error (dbus-daemon would disconnect the daemon for the reply instead of
// delivering it). Only replies with an array, a map or a string over
// 1 KiB are measured (by marshalling them once more).
func guardReply(msg *dbus.Message) {
	if msg.Type != dbus.TypeMethodReply || !mayBeLarge(msg.Body) {
		return
	}
	limit := guardLimit.Load()
	if limit == 0 {
		limit = BusLimit
	}
	var n byteCounter
	if err := msg.EncodeTo(&n, binary.LittleEndian); err != nil || int64(n) <= limit {
		return
	}
	text := fmt.Sprintf("the reply would take %d bytes, more than the bus's message size limit of %d: ask for less (ListBansPage, ListHistory in pages)", n, limit)
	msg.Type = dbus.TypeError
	msg.Headers[dbus.FieldErrorName] = dbus.MakeVariant(ErrNameReplyTooLarge)
	msg.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(text))
	msg.Body = []any{text}
}

// mayBeLarge says whether a body holds an array, a map or a long string.
func mayBeLarge(body []any) bool {
	for _, v := range body {
		switch k := reflect.ValueOf(v); k.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map:
			return true
		case reflect.String:
			if k.Len() > 1024 {
				return true
			}
		}
	}
	return false
}

// byteCounter counts the bytes written to it.
type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}

// BusLimitEnv names the environment variable that tells the daemon the
// bus's max_message_size in bytes, when the bus is configured below
// BusLimit.
const BusLimitEnv = "JAILKEEPER_BUS_MAX_MESSAGE"

// BusLimitFromEnv returns the limit BusLimitEnv sets: 0 when it is unset
// or empty, an error when it is not a number of bytes of at least
// MinBusLimit.
func BusLimitFromEnv() (int, error) {
	v := os.Getenv(BusLimitEnv)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < MinBusLimit {
		return 0, fmt.Errorf("%s=%q: want the bus's max_message_size in bytes, at least %d", BusLimitEnv, v, MinBusLimit)
	}
	return n, nil
}

// replyBudget is the most body bytes of a reply on a bus of limit n.
func replyBudget(n int) int {
	return min(max(n, MinBusLimit)-messageSlack, MaxReply)
}

// replyLimit is the current reply budget.
func (s *Server) replyLimit() int {
	if b := s.budget.Load(); b > 0 {
		return int(b)
	}
	return replyBudget(BusLimit)
}

// signalLimit is the current budget of a BannedMany or UnbannedMany body.
func (s *Server) signalLimit() int { return min(SignalBudget, s.replyLimit()) }

// strSize bounds the marshalled size of a string (also an object path):
// 4 bytes of length, the bytes, the terminator, up to 3 bytes of padding.
func strSize(s string) int { return len(s) + 8 }

// banSize bounds the marshalled size of one BanInfo in an a(ssxxs): up to
// 7 bytes of struct padding, three strings, two int64 with their padding.
func banSize(b BanInfo) int {
	return 8 + strSize(b.Jail) + strSize(b.Prefix) + 2*8 + 8 + strSize(b.Reason)
}

// historySize bounds the marshalled size of one HistoryEntry in an
// a(xsssuxss).
func historySize(h HistoryEntry) int {
	return 8 + 8 + strSize(h.Kind) + strSize(h.Jail) + strSize(h.Prefix) + 4 + 8 + 8 + strSize(h.Reason) + strSize(h.Origin)
}

// statusSize bounds the marshalled size of a Status reply.
func statusSize(st []JailStatus) int {
	n := 8
	for _, j := range st {
		n += 8 + strSize(j.Name) + 4*4 + 8
		for _, a := range j.Banned {
			n += strSize(a)
		}
	}
	return n
}

// fitBans returns the longest head of b whose reply stays within budget,
// at least one ban.
func fitBans(b []BanInfo, budget int) []BanInfo {
	n := 8
	for i, x := range b {
		if n += banSize(x); n > budget && i > 0 {
			return b[:i]
		}
	}
	return b
}

// fitHistory is fitBans for history events.
func fitHistory(h []HistoryEntry, budget int) []HistoryEntry {
	n := 8
	for i, x := range h {
		if n += historySize(x); n > budget && i > 0 {
			return h[:i]
		}
	}
	return h
}

// tooManyBans is ListBans' refusal of n bans (of jail, when not "").
func tooManyBans(n int, jail string) *dbus.Error {
	what := fmt.Sprintf("%d bans", n)
	if jail != "" {
		what = fmt.Sprintf("%d bans in jail %s", n, jail)
	}
	return dbus.NewError(ErrNameUseListBansPage, []any{fmt.Sprintf(
		"%s are too many for one ListBans reply (at most %d, and one D-Bus message): use ListBansPage(offset, limit) to read them in pages", what, MaxListBans)})
}

// precheckListBans refuses a ListBans of jail ("" = all) before the list
// is built (a sorted copy of the table: about a second at a million
// bans) when the object model's counts, at most a second old, already
// say there are more than MaxListBans.
func (s *Server) precheckListBans(jail string) *dbus.Error {
	if s.objs == nil {
		return nil
	}
	s.objs.mu.Lock()
	n := 0
	for name, ji := range s.objs.jails {
		if jail == "" || name == jail {
			n += int(ji.CurrentlyBanned)
		}
	}
	s.objs.mu.Unlock()
	if n > MaxListBans {
		return tooManyBans(n, jail)
	}
	return nil
}

// checkListBans refuses a ListBans reply of b (bans of jail, "" = all)
// that holds more than MaxListBans bans or exceeds the reply budget.
func (s *Server) checkListBans(b []BanInfo, jail string) *dbus.Error {
	if len(b) > MaxListBans {
		return tooManyBans(len(b), jail)
	}
	n, budget := 8, s.replyLimit()
	for _, x := range b {
		if n += banSize(x); n > budget {
			return tooManyBans(len(b), jail)
		}
	}
	return nil
}

// addrSplit cuts addrs into pieces whose marshalled size (as, and 8 bytes
// per address more when the signal also carries an ax) stays within
// budget, at least one address a piece; it calls f with each piece's
// bounds.
func addrSplit(addrs []string, perAddr, budget int, f func(i, j int)) {
	start, n := 0, 0
	for i, a := range addrs {
		sz := strSize(a) + perAddr
		if n+sz > budget && i > start {
			f(start, i)
			start, n = i, 0
		}
		n += sz
	}
	if start < len(addrs) || len(addrs) == 0 {
		f(start, len(addrs))
	}
}

// expiriesOf is BannedMany's ax: Unix seconds, 0 for permanent.
func expiriesOf(ps []netip.Prefix, expires []time.Time) []int64 {
	exps := make([]int64, len(ps))
	for i := range ps {
		if i < len(expires) && !expires[i].IsZero() {
			exps[i] = expires[i].Unix()
		}
	}
	return exps
}
