package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Permanent is the Duration value of "-1" and "permanent".
const Permanent Duration = -1

// Duration is a YAML duration: "10m", "1h30m", "1d", "1w", a plain number
// of seconds (fail2ban's habit), or "-1"/"permanent" for ever.
type Duration time.Duration

// ParseDuration parses the duration syntax of the configuration.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "-1", "permanent", "forever", "never":
		return Permanent, nil
	case "":
		return 0, fmt.Errorf("empty duration")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("bad duration %q: negative (use -1 or permanent for ever)", s)
		}
		if n > int64(MaxDuration/time.Second) {
			return 0, tooLong(s)
		}
		return Duration(time.Duration(n) * time.Second), nil
	} else if strings.Trim(s, "0123456789") == "" {
		return 0, tooLong(s) // digits only, beyond int64
	}
	// Go's syntax plus d (24h) and w (7d) units, summed in float64 so that
	// a huge value is a range error, not an overflow.
	var total float64
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("bad duration %q: want e.g. 10m, 1h, 1d, 1w, -1 or permanent", s)
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		mult, ok := durationUnits[unit]
		if !ok {
			return 0, fmt.Errorf("bad duration %q: want e.g. 10m, 1h, 1d, 1w, -1 or permanent", s)
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q: want e.g. 10m, 1h, 1d, 1w, -1 or permanent", s)
		}
		total += f * float64(mult)
		if total > float64(MaxDuration) {
			return 0, tooLong(s)
		}
	}
	return Duration(time.Duration(total)), nil
}

// MaxDuration is the longest duration the configuration, the CLI and the
// D-Bus API take (100 years); longer is a range error — "permanent" says
// for ever.
const MaxDuration = 100 * 365 * 24 * time.Hour

func tooLong(s string) error {
	return fmt.Errorf("bad duration %q: out of range, the longest is 100 years (36500d); use permanent for ever", s)
}

// durationUnits are the units a duration may use, in nanoseconds.
var durationUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond, "μs": time.Microsecond,
	"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour, "w": 7 * 24 * time.Hour,
}

// UnmarshalYAML decodes a duration scalar, naming the line on error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration must be a scalar such as 10m", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// Std returns the duration as a time.Duration (-1 for permanent).
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats like the input syntax.
func (d Duration) String() string {
	if d == Permanent {
		return "permanent"
	}
	return time.Duration(d).String()
}
