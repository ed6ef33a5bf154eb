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
		return Duration(time.Duration(n) * time.Second), nil
	}
	// Go's syntax plus d (24h) and w (7d) units: split on those first.
	var total time.Duration
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
		var mult time.Duration
		switch unit {
		case "d":
			mult = 24 * time.Hour
		case "w":
			mult = 7 * 24 * time.Hour
		default:
			d, err := time.ParseDuration(num + unit)
			if err != nil || unit == "" {
				return 0, fmt.Errorf("bad duration %q: want e.g. 10m, 1h, 1d, 1w, -1 or permanent", s)
			}
			total += d
			continue
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q: %w", s, err)
		}
		total += time.Duration(f * float64(mult))
	}
	return Duration(total), nil
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
