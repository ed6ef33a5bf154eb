package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Action is one entry of the `actions:` section, as written in YAML: what
// `jailkeeper actions` does when the daemon bans or unbans an address.
// Unset fields take the defaults of ResolveActions.
type Action struct {
	Type       string    `yaml:"type"`        // mail, webhook, exec
	On         []string  `yaml:"on"`          // ban, unban
	Jails      []string  `yaml:"jails"`       // only these jails (default: every jail)
	MinBanTime *Duration `yaml:"min_bantime"` // only bans at least this long
	Rate       *Rate     `yaml:"rate"`        // at most N events per period, the rest dropped and logged
	Timeout    *Duration `yaml:"timeout"`
	Retries    *int      `yaml:"retries"`
	Queue      *int      `yaml:"queue"`
	Workers    *int      `yaml:"concurrency"`

	// mail
	To          []string  `yaml:"to"`
	From        string    `yaml:"from"`
	Whois       bool      `yaml:"whois"`
	WhoisServer string    `yaml:"whois_server"`
	Lines       bool      `yaml:"lines"`
	Digest      *Duration `yaml:"digest"`
	SMTP        string    `yaml:"smtp"`     // host:port: SMTP instead of sendmail
	Sendmail    string    `yaml:"sendmail"` // path of the sendmail program

	// webhook
	URL      string            `yaml:"url"`
	Format   string            `yaml:"format"` // json, template
	Template string            `yaml:"template"`
	Headers  map[string]string `yaml:"headers"`

	// exec
	Argv []string `yaml:"argv"`
}

// Rate is "N/unit" (20/h, 5/m, 100/d, 1/10m): at most N per period.
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRate parses the rate syntax of the configuration.
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("bad rate %q: want N/period such as 20/h", s)
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 1 {
		return Rate{}, fmt.Errorf("bad rate %q: N must be a positive number", s)
	}
	switch per {
	case "s", "m", "h", "d", "w":
		per = "1" + per
	}
	d, err := ParseDuration(per)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("bad rate %q: want N/period such as 20/h", s)
	}
	return Rate{N: v, Per: d.Std()}, nil
}

// UnmarshalYAML decodes a rate scalar, naming the line on error.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a rate must be a scalar such as 20/h", n.Line)
	}
	v, err := ParseRate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*r = v
	return nil
}

func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Per) }

// Action types.
const (
	ActionMail    = "mail"
	ActionWebhook = "webhook"
	ActionExec    = "exec"
)

// AbuseRecipient in a mail action's `to:` stands for the abuse contact
// found in the whois record of the banned address.
const AbuseRecipient = "abuse"

// Placeholders are the fields an exec argv or a webhook template may name
// as {field}; exec actions also get them as JK_FIELD environment variables.
var Placeholders = []string{"event", "jail", "address", "expires", "bantime", "reason", "host", "action"}

// ResolvedAction is one action with every default applied, as
// `jailkeeper actions` runs it.
type ResolvedAction struct {
	Name        string
	Type        string
	OnBan       bool
	OnUnban     bool
	Jails       []string // empty: every jail
	MinBanTime  time.Duration
	Rate        Rate // zero N: unlimited
	Timeout     time.Duration
	Retries     int
	Queue       int
	Workers     int
	To          []string
	From        string
	Whois       bool
	WhoisServer string
	Lines       bool
	Digest      time.Duration // 0: one mail per event
	SMTP        string
	Sendmail    string
	URL         string
	Format      string
	Template    string
	Headers     map[string]string
	Argv        []string
}

// Defaults of the actions section: they live here and nowhere else.
const (
	DefaultActionQueue    = 10000
	DefaultSendmail       = "/usr/sbin/sendmail"
	DefaultMailTimeout    = 30 * time.Second
	DefaultWebhookTimeout = 10 * time.Second
	DefaultExecTimeout    = 10 * time.Second
)

var (
	placeholderRE = regexp.MustCompile(`\{([a-z_]*)\}`)
	mailRecipRE   = regexp.MustCompile(`^[A-Za-z0-9._%+=-]+(@[A-Za-z0-9.-]+)?$`)
	headerNameRE  = regexp.MustCompile(`^[A-Za-z0-9-]+$`)
)

// ActionNames returns the configured actions' names, sorted.
func (c *Config) ActionNames() []string {
	names := make([]string, 0, len(c.Actions))
	for n := range c.Actions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ResolveActions validates the actions section and returns every action
// with its defaults applied, sorted by name. Errors name the file and line.
func (c *Config) ResolveActions() ([]ResolvedAction, error) {
	var out []ResolvedAction
	for _, name := range c.ActionNames() {
		r, err := c.resolveAction(name)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (c *Config) validateActions() error {
	_, err := c.ResolveActions()
	return err
}

func (c *Config) resolveAction(name string) (ResolvedAction, error) {
	a := c.Actions[name]
	at := "actions." + name
	r := ResolvedAction{Name: name, Type: a.Type, Jails: a.Jails, To: a.To, From: a.From, Whois: a.Whois,
		WhoisServer: a.WhoisServer, Lines: a.Lines, SMTP: a.SMTP, Sendmail: a.Sendmail, URL: a.URL,
		Format: a.Format, Template: a.Template, Headers: a.Headers, Argv: a.Argv, Queue: DefaultActionQueue}
	// Action names have the shape of filter names.
	if !filterNameRE.MatchString(name) {
		return r, c.errAt(at, "bad action name %q: use lower-case letters, digits, - and _", name)
	}
	errf := func(key, format string, args ...any) error {
		// An unset key (a missing to:) is reported at the action.
		if key = at + "." + key; c.Pos(key).File == "" {
			key = at
		}
		return c.errAt(key, "action %s: %s", name, fmt.Sprintf(format, args...))
	}
	on := a.On
	if on == nil {
		on = []string{"ban"}
	}
	for _, e := range on {
		switch e {
		case "ban":
			r.OnBan = true
		case "unban":
			r.OnUnban = true
		default:
			return r, errf("on", "bad event %q: want ban or unban", e)
		}
	}
	for _, j := range a.Jails {
		if _, ok := c.Jails[j]; !ok {
			return r, errf("jails", "unknown jail %q", j)
		}
	}
	if a.MinBanTime != nil {
		if *a.MinBanTime <= 0 && *a.MinBanTime != Permanent {
			return r, errf("min_bantime", "min_bantime must be positive or permanent")
		}
		r.MinBanTime = a.MinBanTime.Std()
	}
	if a.Rate != nil {
		r.Rate = *a.Rate
	}
	if a.Queue != nil {
		if *a.Queue < 1 || *a.Queue > 1000000 {
			return r, errf("queue", "queue must be 1..1000000")
		}
		r.Queue = *a.Queue
	}
	if a.Retries != nil && (*a.Retries < 0 || *a.Retries > 20) {
		return r, errf("retries", "retries must be 0..20")
	}
	if a.Workers != nil && (*a.Workers < 1 || *a.Workers > 64) {
		return r, errf("concurrency", "concurrency must be 1..64")
	}
	if a.Timeout != nil && *a.Timeout <= 0 {
		return r, errf("timeout", "timeout must be positive")
	}
	notFor := func(key string, set bool) error {
		if set {
			return errf(key, "%s does not apply to a %s action", key, a.Type)
		}
		return nil
	}
	var retries, workers int
	switch a.Type {
	case ActionMail:
		r.Timeout, retries, workers = DefaultMailTimeout, 2, 1
		if len(a.To) == 0 {
			return r, errf("to", "a mail action needs to: (addresses, or abuse)")
		}
		for _, to := range a.To {
			if !mailRecipRE.MatchString(to) {
				return r, errf("to", "bad recipient %q", to)
			}
		}
		if a.From != "" && !mailRecipRE.MatchString(a.From) {
			return r, errf("from", "bad sender %q", a.From)
		}
		if a.WhoisServer != "" && (strings.ContainsAny(a.WhoisServer, " \t\n/") || strings.HasPrefix(a.WhoisServer, "-")) {
			return r, errf("whois_server", "bad whois server %q", a.WhoisServer)
		}
		if a.Digest != nil {
			if *a.Digest <= 0 {
				return r, errf("digest", "digest must be a positive period such as 10m")
			}
			r.Digest = a.Digest.Std()
			for _, to := range a.To {
				if to == AbuseRecipient {
					return r, errf("digest", "a digest cannot go to abuse contacts (each address has its own)")
				}
			}
		}
		if r.Sendmail == "" {
			r.Sendmail = DefaultSendmail
		} else if !filepath.IsAbs(r.Sendmail) {
			return r, errf("sendmail", "sendmail must be an absolute path")
		}
		if a.SMTP != "" && !strings.Contains(a.SMTP, ":") {
			return r, errf("smtp", "smtp must be host:port such as localhost:25")
		}
		for _, e := range []error{notFor("url", a.URL != ""), notFor("format", a.Format != ""), notFor("template", a.Template != ""),
			notFor("headers", a.Headers != nil), notFor("argv", a.Argv != nil)} {
			if e != nil {
				return r, e
			}
		}
	case ActionWebhook:
		r.Timeout, retries, workers = DefaultWebhookTimeout, 3, 4
		u, err := url.Parse(a.URL)
		if a.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return r, errf("url", "a webhook action needs url: http(s)://host/path")
		}
		switch a.Format {
		case "", "json":
			r.Format = "json"
			if a.Template != "" {
				return r, errf("template", "template needs format: template")
			}
		case "template":
			if a.Template == "" {
				return r, errf("template", "format template needs template:")
			}
			if err := checkPlaceholders(a.Template); err != nil {
				return r, errf("template", "%v", err)
			}
		default:
			return r, errf("format", "bad format %q: want json or template", a.Format)
		}
		for k, v := range a.Headers {
			if !headerNameRE.MatchString(k) || strings.ContainsAny(v, "\r\n") {
				return r, errf("headers", "bad header %q", k)
			}
		}
		for _, e := range []error{notFor("to", a.To != nil), notFor("digest", a.Digest != nil), notFor("whois", a.Whois),
			notFor("lines", a.Lines), notFor("argv", a.Argv != nil)} {
			if e != nil {
				return r, e
			}
		}
	case ActionExec:
		r.Timeout, retries, workers = DefaultExecTimeout, 0, 2
		if len(a.Argv) == 0 || !filepath.IsAbs(a.Argv[0]) {
			return r, errf("argv", "an exec action needs argv: [/absolute/program, args…] (no shell)")
		}
		for _, arg := range a.Argv {
			if err := checkPlaceholders(arg); err != nil {
				return r, errf("argv", "%v", err)
			}
		}
		for _, e := range []error{notFor("to", a.To != nil), notFor("digest", a.Digest != nil), notFor("url", a.URL != ""),
			notFor("whois", a.Whois), notFor("lines", a.Lines)} {
			if e != nil {
				return r, e
			}
		}
	case "":
		return r, errf("", "no type: want mail, webhook or exec")
	default:
		return r, errf("type", "bad type %q: want mail, webhook or exec", a.Type)
	}
	if a.Timeout != nil {
		r.Timeout = a.Timeout.Std()
	}
	r.Retries, r.Workers = retries, workers
	if a.Retries != nil {
		r.Retries = *a.Retries
	}
	if a.Workers != nil {
		r.Workers = *a.Workers
	}
	return r, nil
}

func checkPlaceholders(s string) error {
	for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
		known := false
		for _, p := range Placeholders {
			known = known || p == m[1]
		}
		if !known {
			return fmt.Errorf("unknown placeholder {%s} (known: %s)", m[1], strings.Join(Placeholders, ", "))
		}
	}
	return nil
}
