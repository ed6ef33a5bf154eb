// Package fleet is the data model that `jailkeeper sync` shares between
// servers through a NATS JetStream key-value bucket: one key per ban,
// ban.<origin>.<jail>.<address>, whose value is a JSON Record and whose TTL
// is the ban's remaining time. It holds the rules for building and reading
// keys and values, and for turning a record of another server into a local
// ban (Decide). It is pure: no network client, no D-Bus, so the daemon and
// `jailkeeper check` can use its rules without linking the NATS client.
package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/jailkeeper/jailkeeper/pkg/firewall"
	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

// KeyPrefix is the first token of every ban key.
const KeyPrefix = "ban"

// Limits on what is read from the bucket: a value or a field beyond them is
// refused, never truncated.
const (
	MaxValueSize = 1024 // bytes of a value's JSON
	MaxReason    = 256  // bytes of a record's reason
	MaxOrigin    = 63   // bytes of an origin (a host name's label)

	// The widest networks a record may ban: one server's record cannot
	// refuse a whole address family.
	MinBits4 = 16
	MinBits6 = 32
)

var originRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// CheckOrigin reports whether s can be an origin: one key token of 1 to
// MaxOrigin letters, digits, - and _ (no dot: a dot separates the key's
// tokens).
func CheckOrigin(s string) error {
	if len(s) == 0 || len(s) > MaxOrigin || !originRE.MatchString(s) {
		return fmt.Errorf("bad origin %q: use 1 to %d letters, digits, - and _, starting with a letter or digit", s, MaxOrigin)
	}
	return nil
}

// OriginFromHostname returns the origin a server takes when none is
// configured: its host name's first label, with any character an origin
// cannot hold replaced by _.
func OriginFromHostname(host string) (string, error) {
	label, _, _ := strings.Cut(host, ".")
	o := strings.Map(func(r rune) rune {
		if r < unicode.MaxASCII && (r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return '_'
	}, label)
	if err := CheckOrigin(o); err != nil {
		return "", fmt.Errorf("origin from host name %q: %w", host, err)
	}
	return o, nil
}

// CheckReason reports whether s can be a ban's reason: printable UTF-8 of
// at most MaxReason bytes.
func CheckReason(s string) error {
	if len(s) > MaxReason {
		return fmt.Errorf("reason of %d bytes (at most %d)", len(s), MaxReason)
	}
	for _, c := range s {
		if c == unicode.ReplacementChar || !unicode.IsPrint(c) {
			return fmt.Errorf("reason %q holds a character that is not printable", s)
		}
	}
	return nil
}

// Key is what a ban key names.
type Key struct {
	Origin string
	Jail   string
	Prefix netip.Prefix
}

// String returns the key: ban.<origin>.<jail>.<address>, the address
// made key-safe (in IPv4 '.' becomes '_', in IPv6 ':' becomes '-'; a
// network keeps its '/').
func (k Key) String() string {
	return KeyPrefix + "." + k.Origin + "." + k.Jail + "." + EncodeAddress(k.Prefix)
}

// EncodeAddress returns p as one key token.
func EncodeAddress(p netip.Prefix) string {
	return strings.NewReplacer(".", "_", ":", "-").Replace(prefix.Format(p))
}

// DecodeAddress reads a token of EncodeAddress back. Only the normal form
// EncodeAddress writes is accepted.
func DecodeAddress(tok string) (netip.Prefix, error) {
	p, err := prefix.Parse(strings.NewReplacer("_", ".", "-", ":").Replace(tok))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address token %q: %w", tok, err)
	}
	if EncodeAddress(p) != tok {
		return netip.Prefix{}, fmt.Errorf("bad address token %q: not in normal form (%s)", tok, EncodeAddress(p))
	}
	return p, nil
}

// ParseKey reads a ban key.
func ParseKey(s string) (Key, error) {
	toks := strings.Split(s, ".")
	if len(toks) != 4 || toks[0] != KeyPrefix {
		return Key{}, fmt.Errorf("bad key %q: want %s.<origin>.<jail>.<address>", s, KeyPrefix)
	}
	if err := CheckOrigin(toks[1]); err != nil {
		return Key{}, fmt.Errorf("bad key %q: %w", s, err)
	}
	if err := firewall.CheckJailName(toks[2]); err != nil {
		return Key{}, fmt.Errorf("bad key %q: %w", s, err)
	}
	p, err := DecodeAddress(toks[3])
	if err != nil {
		return Key{}, fmt.Errorf("bad key %q: %w", s, err)
	}
	return Key{Origin: toks[1], Jail: toks[2], Prefix: p}, nil
}

// AddressFilter returns the key pattern that matches every origin's and
// every jail's key for p: what a fleet-wide unban deletes.
func AddressFilter(p netip.Prefix) string {
	return KeyPrefix + ".*.*." + EncodeAddress(p)
}

// OriginFilter returns the key pattern of every key one origin may write:
// the subject a NATS permission confines that server to is
// $KV.<bucket>.<OriginFilter>.
func OriginFilter(origin string) string {
	return KeyPrefix + "." + origin + ".>"
}

// Record is a ban as stored in the bucket.
type Record struct {
	Prefix  netip.Prefix `json:"prefix"`
	Jail    string       `json:"jail"`
	Reason  string       `json:"reason"`
	Start   time.Time    `json:"start"`
	Expires time.Time    `json:"expires"` // zero: permanent
	Origin  string       `json:"origin"`
}

// Key returns the record's key.
func (r Record) Key() Key { return Key{Origin: r.Origin, Jail: r.Jail, Prefix: r.Prefix} }

// TTL returns the key's time to live at now: the ban's remaining time, zero
// for a permanent ban (the key lives until deleted), negative once expired.
func (r Record) TTL(now time.Time) time.Duration {
	if r.Expires.IsZero() {
		return 0
	}
	return r.Expires.Sub(now)
}

// Check validates a record on its own.
func (r Record) Check() error {
	if !r.Prefix.IsValid() || prefix.Norm(r.Prefix) != r.Prefix {
		return fmt.Errorf("prefix %v is not a network in normal form", r.Prefix)
	}
	if min := map[bool]int{true: MinBits4, false: MinBits6}[r.Prefix.Addr().Is4()]; r.Prefix.Bits() < min {
		return fmt.Errorf("prefix %v is wider than /%d", r.Prefix, min)
	}
	if err := CheckOrigin(r.Origin); err != nil {
		return err
	}
	if err := firewall.CheckJailName(r.Jail); err != nil {
		return err
	}
	if err := CheckReason(r.Reason); err != nil {
		return err
	}
	if r.Start.IsZero() {
		return errors.New("no start")
	}
	if !r.Expires.IsZero() && !r.Expires.After(r.Start) {
		return fmt.Errorf("expires %v is not after start %v", r.Expires, r.Start)
	}
	return nil
}

// Encode returns a record's value.
func (r Record) Encode() ([]byte, error) {
	if err := r.Check(); err != nil {
		return nil, fmt.Errorf("encoding the ban of %s: %w", prefix.Format(r.Prefix), err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding the ban of %s: %w", prefix.Format(r.Prefix), err)
	}
	if len(b) > MaxValueSize {
		return nil, fmt.Errorf("encoding the ban of %s: value of %d bytes (at most %d)", prefix.Format(r.Prefix), len(b), MaxValueSize)
	}
	return b, nil
}

// Decode reads the value of key: strictly (unknown fields refused), at most
// MaxValueSize bytes, and only if the value agrees with its key (a server
// that may write only under its own origin cannot speak for another one
// through the value).
func Decode(key string, value []byte) (Record, error) {
	var r Record
	if len(value) > MaxValueSize {
		return r, fmt.Errorf("value of %s: %d bytes (at most %d)", key, len(value), MaxValueSize)
	}
	k, err := ParseKey(key)
	if err != nil {
		return r, err
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("value of %s: %w", key, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("value of %s: data after the JSON object", key)
	}
	if err := r.Check(); err != nil {
		return Record{}, fmt.Errorf("value of %s: %w", key, err)
	}
	if r.Key() != k {
		return Record{}, fmt.Errorf("value of %s: names %s", key, r.Key())
	}
	return r, nil
}

// LocalReason is the reason a record's ban carries on the servers that apply
// it: "fleet: <jail> on <origin>".
func (r Record) LocalReason() string {
	return "fleet: " + r.Jail + " on " + r.Origin
}

// Policy is how a server applies the fleet's records.
type Policy struct {
	Self       string        // this server's origin: its own records are never applied
	MaxBanTime time.Duration // cap of an applied ban; 0: no cap
}

// Decide returns how long the ban of r should last here at now, and false
// if r is not to be applied (this server's own record, or expired). A
// permanent record gives MaxBanTime when capped, 0 (permanent) otherwise.
func (p Policy) Decide(r Record, now time.Time) (time.Duration, bool) {
	if r.Origin == p.Self {
		return 0, false
	}
	d := r.TTL(now)
	if !r.Expires.IsZero() && d <= 0 {
		return 0, false
	}
	if p.MaxBanTime > 0 && (r.Expires.IsZero() || d > p.MaxBanTime) {
		d = p.MaxBanTime
	}
	return d, true
}
