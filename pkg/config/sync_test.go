package config

import (
	"strings"
	"testing"
	"time"
)

const fleetJail = `jails:
  fleet:
    api_only: true
    bantime: 1d
`

const issueSync = `sync:
  servers: [nats://198.51.100.1:4222, nats://198.51.100.2:4222, tls://198.51.100.3:4222]
  creds: /etc/jailkeeper/nats.creds
  bucket: jailkeeper-bans
  share: [sshd]
  apply: true
  max_bantime: 1d
`

func TestSyncOfTheIssue(t *testing.T) {
	cfg, err := LoadBytes([2]string{"10-sshd.yaml", issueDropIn}, [2]string{"15-fleet.yaml", fleetJail},
		[2]string{"40-sync.yaml", issueSync})
	if err != nil {
		t.Fatal(err)
	}
	s, ok, err := cfg.ResolveSync()
	if err != nil || !ok {
		t.Fatalf("ResolveSync: %v, %v", ok, err)
	}
	if len(s.Servers) != 3 || s.Creds != "/etc/jailkeeper/nats.creds" || s.Bucket != DefaultSyncBucket || !s.Apply ||
		s.Jail != DefaultSyncJail || s.MaxBanTime != 24*time.Hour || strings.Join(s.Share, ",") != "sshd" || s.Origin != "" {
		t.Errorf("sync = %+v", s)
	}
	if p := cfg.Pos("sync.share"); p.File != "40-sync.yaml" || p.Line != 5 {
		t.Errorf("position of sync.share = %v", p)
	}
	// A later drop-in overrides key by key.
	cfg, err = LoadBytes([2]string{"10-sshd.yaml", issueDropIn}, [2]string{"40-sync.yaml", issueSync},
		[2]string{"50-local.yaml", "sync: {apply: false, origin: web1, max_bantime: permanent, tls: {ca: /etc/ssl/nats-ca.pem}}\n"})
	if err != nil {
		t.Fatal(err)
	}
	if s, _, err = cfg.ResolveSync(); err != nil || s.Apply || s.Origin != "web1" || s.MaxBanTime != 0 ||
		s.TLSCA != "/etc/ssl/nats-ca.pem" || len(s.Servers) != 3 {
		t.Errorf("merged sync = %+v, %v", s, err)
	}
	cfg, err = LoadBytes([2]string{"10-sshd.yaml", issueDropIn})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := cfg.ResolveSync(); ok || err != nil {
		t.Errorf("no sync section: %v, %v", ok, err)
	}
}

func TestSyncRefuses(t *testing.T) {
	for _, c := range []struct{ sync, want string }{
		{"sync: {share: [sshd]}\n", "40-sync.yaml: line 1: sync: no servers"},
		{"sync:\n  servers: [http://198.51.100.1:4222]\n", "line 2: sync: bad server \"http://198.51.100.1:4222\""},
		{"sync:\n  servers: [\"nats://u:p@198.51.100.1:4222\"]\n", "line 2: sync: bad server"},
		{"sync:\n  servers: [nats://198.51.100.1]\n  creds: nats.creds\n", "line 3: sync: creds must be an absolute path"},
		{"sync:\n  servers: [nats://198.51.100.1]\n  tls: {cert: /etc/c.pem}\n", "line 3: sync: tls needs both cert and key"},
		{"sync:\n  servers: [nats://198.51.100.1]\n  tls: {ca: ca.pem}\n", "sync: tls ca must be an absolute path"},
		{"sync:\n  servers: [nats://198.51.100.1]\n  bucket: jk.bans\n", "line 3: sync: bad bucket"},
		{"sync:\n  servers: [nats://198.51.100.1]\n  origin: web1.example.org\n", "line 3: sync: bad origin"},
		{"sync:\n  servers: [nats://198.51.100.1]\n  share: [nginx]\n", "line 3: sync: unknown jail \"nginx\""},
		{"sync:\n  servers: [nats://198.51.100.1]\n  share: [sshd, fleet]\n", "sync: jail \"fleet\" holds the fleet's bans"},
		{"sync:\n  servers: [nats://198.51.100.1]\n  share: [sshd, sshd]\n", "sync: jail \"sshd\" named twice"},
		{"sync:\n  servers: [nats://198.51.100.1]\n  max_bantime: 0\n", "line 3: sync: max_bantime must be positive"},
		{"sync:\n  servers: [nats://198.51.100.1]\n  shared: [sshd]\n", "40-sync.yaml: line 3: unknown key \"shared\""},
		{"sync:\n  servers: [nats://198.51.100.1]\n  apply: true\n  jail: elsewhere\n", "line 4: sync: the fleet's bans are applied into jail \"elsewhere\", which is not configured"},
	} {
		_, err := LoadBytes([2]string{"10-sshd.yaml", issueDropIn}, [2]string{"15-fleet.yaml", fleetJail}, [2]string{"40-sync.yaml", c.sync})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.sync, err, c.want)
		}
	}
	// Without a fleet jail, apply: false is the way to only publish.
	if _, err := LoadBytes([2]string{"10-sshd.yaml", issueDropIn},
		[2]string{"40-sync.yaml", "sync: {servers: [nats://198.51.100.1:4222], share: [sshd], apply: false}\n"}); err != nil {
		t.Errorf("publish only: %v", err)
	}
}
