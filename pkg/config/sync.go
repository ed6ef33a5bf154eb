package config

import (
	"net/url"
	"path/filepath"
	"regexp"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/fleet"
)

// Sync is the `sync:` section, as written in YAML: how `jailkeeper sync`
// shares bans with the other servers through a NATS JetStream key-value
// bucket. Unset fields take the defaults of ResolveSync.
type Sync struct {
	Servers    []string  `yaml:"servers"` // nats://host:port or tls://host:port
	Creds      string    `yaml:"creds"`   // NATS credentials file (JWT and NKey seed)
	TLS        *SyncTLS  `yaml:"tls"`
	Bucket     string    `yaml:"bucket"`
	Origin     string    `yaml:"origin"` // this server's name in keys (default: its host name's first label)
	Share      []string  `yaml:"share"`  // local jails whose bans are published
	Apply      *bool     `yaml:"apply"`  // apply the other servers' bans here
	Jail       string    `yaml:"jail"`   // the local jail they are applied into
	MaxBanTime *Duration `yaml:"max_bantime"`
}

// SyncTLS are the TLS files of the NATS connection.
type SyncTLS struct {
	CA   string `yaml:"ca"`   // CA bundle that signed the servers' certificates
	Cert string `yaml:"cert"` // client certificate (with key), for servers that verify clients
	Key  string `yaml:"key"`
}

// ResolvedSync is the sync section with every default applied.
type ResolvedSync struct {
	Servers    []string
	Creds      string
	TLSCA      string
	TLSCert    string
	TLSKey     string
	Bucket     string
	Origin     string // empty: the host name's first label (fleet.OriginFromHostname)
	Share      []string
	Apply      bool
	Jail       string
	MaxBanTime time.Duration // 0: no cap
}

// Defaults of the sync section: they live here and nowhere else.
const (
	DefaultSyncBucket     = "jailkeeper-bans"
	DefaultSyncJail       = "fleet"
	DefaultSyncMaxBanTime = 24 * time.Hour
)

// bucketRE is the shape of a JetStream key-value bucket's name.
var bucketRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ResolveSync validates the sync section and returns it with its defaults
// applied, or false when there is none. Errors name the file and line.
func (c *Config) ResolveSync() (ResolvedSync, bool, error) {
	s := c.Sync
	if s == nil {
		return ResolvedSync{}, false, nil
	}
	r := ResolvedSync{Servers: s.Servers, Creds: s.Creds, Bucket: s.Bucket, Origin: s.Origin, Share: s.Share,
		Apply: s.Apply == nil || *s.Apply, Jail: s.Jail, MaxBanTime: DefaultSyncMaxBanTime}
	errf := func(key, format string, args ...any) error {
		// An unset key (missing servers:) is reported at the section.
		if key = "sync." + key; c.Pos(key).File == "" {
			key = "sync"
		}
		return c.errAt(key, "sync: "+format, args...)
	}
	if len(s.Servers) == 0 {
		return r, false, errf("servers", "no servers: want e.g. [nats://198.51.100.1:4222]")
	}
	for _, srv := range s.Servers {
		u, err := url.Parse(srv)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
			return r, false, errf("servers", "bad server %q: want nats://host:port or tls://host:port (credentials go in creds:)", srv)
		}
	}
	if s.Creds != "" && !filepath.IsAbs(s.Creds) {
		return r, false, errf("creds", "creds must be an absolute path")
	}
	if t := s.TLS; t != nil {
		r.TLSCA, r.TLSCert, r.TLSKey = t.CA, t.Cert, t.Key
		for k, p := range map[string]string{"ca": t.CA, "cert": t.Cert, "key": t.Key} {
			if p != "" && !filepath.IsAbs(p) {
				return r, false, errf("tls."+k, "tls %s must be an absolute path", k)
			}
		}
		if (t.Cert == "") != (t.Key == "") {
			return r, false, errf("tls", "tls needs both cert and key, or neither")
		}
	}
	if r.Bucket == "" {
		r.Bucket = DefaultSyncBucket
	} else if !bucketRE.MatchString(r.Bucket) {
		return r, false, errf("bucket", "bad bucket %q: use 1 to 64 letters, digits, - and _", r.Bucket)
	}
	if r.Origin != "" {
		if err := fleet.CheckOrigin(r.Origin); err != nil {
			return r, false, errf("origin", "%v", err)
		}
	}
	if r.Jail == "" {
		r.Jail = DefaultSyncJail
	}
	if r.Apply {
		if _, ok := c.Jails[r.Jail]; !ok {
			return r, false, errf("jail", "the fleet's bans are applied into jail %q, which is not configured (define it, e.g. with api_only: true, or set apply: false)", r.Jail)
		}
	}
	seen := map[string]bool{}
	for _, j := range s.Share {
		if _, ok := c.Jails[j]; !ok {
			return r, false, errf("share", "unknown jail %q", j)
		}
		if j == r.Jail && r.Apply {
			return r, false, errf("share", "jail %q holds the fleet's bans: sharing it would send them back", j)
		}
		if seen[j] {
			return r, false, errf("share", "jail %q named twice", j)
		}
		seen[j] = true
	}
	if s.MaxBanTime != nil {
		switch {
		case *s.MaxBanTime == Permanent:
			r.MaxBanTime = 0
		case *s.MaxBanTime > 0:
			r.MaxBanTime = s.MaxBanTime.Std()
		default:
			return r, false, errf("max_bantime", "max_bantime must be positive, -1 or permanent")
		}
	}
	return r, true, nil
}

func (c *Config) validateSync() error {
	_, _, err := c.ResolveSync()
	return err
}
