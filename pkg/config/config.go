// Package config loads jailkeeper's YAML configuration: vendor defaults
// embedded in the binary, then every *.yaml drop-in of the configuration
// directory in lexical order, later files overriding earlier ones key by key
// (systemd drop-in habits). Decoding is strict: an unknown key, a bad
// duration, a bad address or an unknown filter is an error that names the
// file and line. Every configurable default is in the vendor file
// (defaults.yaml); the engine applies the same values to a jails.Jail left
// zero (its tests and benchmarks build jails directly), and a test here
// holds the two equal.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/jailkeeper/jailkeeper/pkg/prefix"
)

//go:embed defaults.yaml
var vendorDefaults []byte

// VendorFile is the name under which the embedded defaults appear in errors.
const VendorFile = "(built-in defaults)"

// Config is the merged configuration.
type Config struct {
	Whitelist  []Address           `yaml:"whitelist"`
	IgnoreSelf *bool               `yaml:"ignoreself"`
	Firewall   Firewall            `yaml:"firewall"`
	Defaults   Jail                `yaml:"defaults"`
	Filters    map[string]Filter   `yaml:"filters"`
	Jails      map[string]Jail     `yaml:"jails"`
	Actions    map[string]Action   `yaml:"actions"`
	Sync       *Sync               `yaml:"sync"`
	Files      []string            `yaml:"-"` // files read, in order
	pos        map[string]Position `yaml:"-"`
}

// Position is where a key was set.
type Position struct {
	File string
	Line int
}

func (p Position) String() string {
	if p.File == "" {
		return "(unknown)"
	}
	return fmt.Sprintf("%s: line %d", p.File, p.Line)
}

// Firewall selects and tunes the firewall backend.
type Firewall struct {
	Backend         string `yaml:"backend"`          // auto, iptables, nftables, none
	WhitelistAction string `yaml:"whitelist_action"` // return, accept
	KillConnections *bool  `yaml:"kill_connections"`
}

// Filter is a named filter definition (failregex, ignoreregex, units,
// and the per-process context regexes of jails.FilterDef).
type Filter struct {
	FailRegex   []string `yaml:"failregex"`
	IgnoreRegex []string `yaml:"ignoreregex"`
	Context     []string `yaml:"context"`
	ContextEnd  []string `yaml:"context_end"`
	Units       []string `yaml:"units"`
}

// Jail is one jail as written in YAML. Unset fields come from `defaults:`.
type Jail struct {
	Enabled          *bool             `yaml:"enabled"`
	Units            []string          `yaml:"units"`
	Identifiers      []string          `yaml:"identifiers"`
	Filter           string            `yaml:"filter"`
	Mode             string            `yaml:"mode"`
	FailRegex        []string          `yaml:"failregex"`
	IgnoreRegex      []string          `yaml:"ignoreregex"`
	MaxRetry         *int              `yaml:"maxretry"`
	FindTime         *Duration         `yaml:"findtime"`
	BanTime          *Duration         `yaml:"bantime"`
	Ports            []Port            `yaml:"ports"`
	Protocol         string            `yaml:"protocol"`
	Action           string            `yaml:"action"`
	IPv6Prefix       *int              `yaml:"ipv6_prefix"`
	BanTimeIncrement *Increment        `yaml:"bantime_increment"`
	Distributed      *Distributed      `yaml:"distributed"`
	SubnetEscalation *SubnetEscalation `yaml:"subnet_escalation"`
	MaxTracked       *int              `yaml:"max_tracked"`
	// APIOnly makes a jail that reads no journal (no filter, no units)
	// and takes bans only from the D-Bus API: `jailkeeper ban`, the
	// fleet's bans applied by `jailkeeper sync`, imports.
	APIOnly bool `yaml:"api_only"`
}

// Increment configures longer bans for repeat offenders.
type Increment struct {
	Enabled bool     `yaml:"enabled"`
	Factor  float64  `yaml:"factor"`
	Max     Duration `yaml:"max"`
	Window  Duration `yaml:"window"`
}

// Distributed configures detection of many addresses attacking one account.
type Distributed struct {
	Window       Duration `yaml:"window"`
	MinAddresses int      `yaml:"min_addresses"`
	MaxRetry     int      `yaml:"maxretry"`
}

// SubnetEscalation bans a whole subnet once enough of its addresses are banned.
type SubnetEscalation struct {
	Prefix4   int `yaml:"prefix4"`
	Prefix6   int `yaml:"prefix6"`
	Threshold int `yaml:"threshold"`
}

// Port is a TCP/UDP port number 1..65535.
type Port uint16

// UnmarshalYAML decodes a port, naming the line on error.
func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || v < 1 || v > 65535 {
		return fmt.Errorf("line %d: bad port %q: want a number 1..65535", n.Line, n.Value)
	}
	*p = Port(v)
	return nil
}

// Address is a whitelist entry: an address, a CIDR prefix or a host name.
type Address string

var hostnameRE = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$`)

// UnmarshalYAML validates the entry, naming the line on error.
func (a *Address) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a whitelist entry must be an address, CIDR or host name", n.Line)
	}
	if err := checkAddress(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*a = Address(n.Value)
	return nil
}

func checkAddress(s string) error {
	looksNumeric := strings.Trim(s, "0123456789abcdefABCDEF.:/%") == "" &&
		(strings.Contains(s, ":") || strings.Trim(s, "0123456789./") == "")
	if strings.Contains(s, "/") || looksNumeric {
		if _, err := prefix.Parse(s); err != nil {
			return fmt.Errorf("bad address %q: %w", s, err)
		}
		return nil
	}
	if !hostnameRE.MatchString(s) {
		return fmt.Errorf("bad address %q: not an address, CIDR or host name", s)
	}
	return nil
}

// Load reads the vendor defaults and every *.yaml file of dir in lexical
// order. A missing dir is not an error (defaults only).
func Load(dir string) (*Config, error) {
	var files []string
	if dir != "" {
		if err := checkPerms(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reading config directory %s: %w", dir, err)
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			files = append(files, filepath.Join(dir, e.Name()))
		}
		sort.Strings(files)
	}
	srcs := []source{{VendorFile, vendorDefaults}}
	for _, f := range files {
		if err := checkPerms(f); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", f, err)
		}
		srcs = append(srcs, source{f, b})
	}
	return load(srcs)
}

// checkPerms refuses a configuration directory or drop-in that someone
// other than root (or the user the process runs as) may change, as sshd's
// StrictModes does: a world-writable drop-in lets any local user whitelist
// themselves or ban the administrator. A missing path is returned as is
// (wrapping os.ErrNotExist).
func checkPerms(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("checking %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("refusing %s: it is world-writable (mode %04o); chmod o-w it", path, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("refusing %s: owned by uid %d, not root; chown root it", path, st.Uid)
	}
	return nil
}

// LoadBytes loads the vendor defaults plus the given named documents, in
// order (for tests and `jailkeeper check FILE`).
func LoadBytes(named ...[2]string) (*Config, error) {
	srcs := []source{{VendorFile, vendorDefaults}}
	for _, n := range named {
		srcs = append(srcs, source{n[0], []byte(n[1])})
	}
	return load(srcs)
}

type source struct {
	name string
	data []byte
}

func load(srcs []source) (*Config, error) {
	var merged *yaml.Node
	origin := map[*yaml.Node]string{}
	var files []string
	for _, s := range srcs {
		doc, err := parseStrict(s.name, s.data)
		if err != nil {
			return nil, err
		}
		if s.name != VendorFile {
			files = append(files, s.name)
		}
		if doc == nil {
			continue
		}
		markOrigin(doc, s.name, origin)
		if merged == nil {
			merged = doc
		} else {
			mergeNode(merged, doc)
		}
	}
	c := &Config{}
	if merged != nil {
		if err := merged.Decode(c); err != nil {
			return nil, fmt.Errorf("merging configuration: %w", err)
		}
	}
	c.Files = files
	c.pos = map[string]Position{}
	if merged != nil {
		recordPositions(merged, "", origin, c.pos)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

var unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

// parseStrict decodes one file strictly (unknown keys and bad values are
// errors with file and line) and returns its top-level mapping node, or nil
// for an empty file.
func parseStrict(name string, data []byte) (*yaml.Node, error) {
	var check Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&check); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = unknownFieldRE.ReplaceAllString(m, `unknown key "$1"`)
			}
			return nil, fmt.Errorf("loading %s: %s", name, strings.Join(msgs, "; "))
		}
		return nil, fmt.Errorf("loading %s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("loading %s: only one YAML document per file is allowed", name)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("loading %s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("loading %s: line %d: the top level must be a mapping", name, root.Line)
	}
	return root, nil
}

func markOrigin(n *yaml.Node, file string, origin map[*yaml.Node]string) {
	origin[n] = file
	for _, c := range n.Content {
		markOrigin(c, file, origin)
	}
}

// mergeNode merges src into dst: mappings merge key by key, recursively;
// anything else (scalars, sequences) is replaced by the later value.
func mergeNode(dst, src *yaml.Node) {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		found := false
		for j := 0; j+1 < len(dst.Content); j += 2 {
			if dst.Content[j].Value != k.Value {
				continue
			}
			found = true
			if dv := dst.Content[j+1]; dv.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode {
				mergeNode(dv, v)
			} else {
				dst.Content[j], dst.Content[j+1] = k, v
			}
			break
		}
		if !found {
			dst.Content = append(dst.Content, k, v)
		}
	}
}

func recordPositions(n *yaml.Node, path string, origin map[*yaml.Node]string, pos map[string]Position) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		pos[p] = Position{origin[k], k.Line}
		recordPositions(v, p, origin, pos)
	}
}

// Pos returns where the dotted key path (e.g. "jails.sshd.filter") was set.
func (c *Config) Pos(path string) Position { return c.pos[path] }

// errAt is an error at the key path, or at the nearest key above it that
// a file set (a "firewall:" left empty drops the vendor's backend: the
// error names that line).
func (c *Config) errAt(path, format string, args ...any) error {
	p := c.Pos(path)
	for k := path; p.File == "" && strings.Contains(k, "."); {
		k = k[:strings.LastIndex(k, ".")]
		p = c.Pos(k)
	}
	if p.File == "" {
		return fmt.Errorf(format, args...)
	}
	return fmt.Errorf("loading %s: line %d: %s", p.File, p.Line, fmt.Sprintf(format, args...))
}
