package config

import (
	"strings"
	"testing"
	"time"
)

const issueActions = `actions:
  mail-admin: {type: mail, to: [root], whois: true, lines: true, on: [ban], digest: 10m}
  chat:       {type: webhook, url: "http://198.51.100.1:8080/hook", format: json, on: [ban, unban], jails: [sshd]}
  blackhole:  {type: exec, on: [ban, unban], argv: [/usr/local/sbin/jk-route, "{event}", "{address}", "{jail}"], timeout: 10s}
  abuse:      {type: mail, to: [abuse], whois: true, lines: true, min_bantime: 1d, rate: 20/h}
`

func TestActionsOfTheIssue(t *testing.T) {
	cfg, err := LoadBytes([2]string{"10-sshd.yaml", issueDropIn}, [2]string{"20-actions.yaml", issueActions})
	if err != nil {
		t.Fatal(err)
	}
	acts, err := cfg.ResolveActions()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]ResolvedAction{}
	for _, a := range acts {
		byName[a.Name] = a
	}
	if len(acts) != 4 || acts[0].Name != "abuse" {
		t.Fatalf("actions = %+v", acts)
	}
	m := byName["mail-admin"]
	if !m.OnBan || m.OnUnban || m.Digest != 10*time.Minute || !m.Whois || !m.Lines || m.Sendmail != DefaultSendmail ||
		m.Timeout != DefaultMailTimeout || m.Queue != DefaultActionQueue || m.Workers != 1 {
		t.Errorf("mail-admin = %+v", m)
	}
	c := byName["chat"]
	if !c.OnBan || !c.OnUnban || c.Format != "json" || c.Retries != 3 || c.Timeout != DefaultWebhookTimeout || len(c.Jails) != 1 {
		t.Errorf("chat = %+v", c)
	}
	b := byName["blackhole"]
	if b.Retries != 0 || b.Timeout != 10*time.Second || len(b.Argv) != 4 || b.Argv[1] != "{event}" {
		t.Errorf("blackhole = %+v", b)
	}
	a := byName["abuse"]
	if a.MinBanTime != 24*time.Hour || a.Rate != (Rate{20, time.Hour}) || a.To[0] != AbuseRecipient || !a.OnBan || a.OnUnban {
		t.Errorf("abuse = %+v", a)
	}
	if p := cfg.Pos("actions.chat.url"); p.Line != 3 || p.File != "20-actions.yaml" {
		t.Errorf("position of actions.chat.url = %v", p)
	}
}

func TestActionsMergeKeyByKey(t *testing.T) {
	cfg, err := LoadBytes([2]string{"10-sshd.yaml", issueDropIn}, [2]string{"20-actions.yaml", issueActions},
		[2]string{"30-local.yaml", "actions:\n  chat: {url: \"https://chat.example.org/hook\"}\n"})
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Actions["chat"]
	if a.URL != "https://chat.example.org/hook" || a.Type != ActionWebhook || len(a.On) != 2 {
		t.Fatalf("chat after override = %+v", a)
	}
}

func TestActionErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"actions:\n  x: {type: mail}\n", `a.yaml: line 2: action x: a mail action needs to:`},
		{"actions:\n  x: {type: pager, to: [root]}\n", `a.yaml: line 2: action x: bad type "pager"`},
		{"actions:\n  x:\n    to: [root]\n", `a.yaml: line 2: action x: no type`},
		{"actions:\n  x: {type: mail, to: [root], on: [bann]}\n", `line 2: action x: bad event "bann"`},
		{"actions:\n  x: {type: mail, to: [root], jails: [nope]}\n", `unknown jail "nope"`},
		{"actions:\n  x: {type: mail, to: [root], rate: 20/fortnight}\n", `a.yaml: line 2: bad rate "20/fortnight"`},
		{"actions:\n  x: {type: mail, to: [\"root\\nBcc: x\"]}\n", `bad recipient`},
		{"actions:\n  x: {type: mail, to: [root], url: \"http://x/\"}\n", `url does not apply to a mail action`},
		{"actions:\n  x: {type: mail, to: [root], digest: 0}\n", `digest must be a positive period`},
		{"actions:\n  x: {type: mail, to: [root, abuse], digest: 1h}\n", `a.yaml: line 2: action x: a digest cannot go to abuse contacts`},
		{"actions:\n  x: {type: mail, to: [root], mailto: [root]}\n", `a.yaml: line 2: unknown key "mailto"`},
		{"actions:\n  x: {type: webhook, url: \"ftp://x/\"}\n", `needs url: http(s)`},
		{"actions:\n  x: {type: webhook, url: \"http://x/\", format: template}\n", `format template needs template:`},
		{"actions:\n  x: {type: webhook, url: \"http://x/\", format: template, template: \"{adress}\"}\n", `unknown placeholder {adress}`},
		{"actions:\n  x: {type: exec, argv: [jk-route, \"{address}\"]}\n", `needs argv: [/absolute/program`},
		{"actions:\n  x: {type: exec, argv: [/bin/true], concurrency: 0}\n", `concurrency must be 1..64`},
		{"actions:\n  x: {type: exec, argv: [/bin/true], timeout: 10parsecs}\n", `a.yaml: line 2: bad duration`},
		{"actions:\n  Bad: {type: exec, argv: [/bin/true]}\n", `bad action name "Bad"`},
	} {
		_, err := LoadBytes([2]string{"10-sshd.yaml", issueDropIn}, [2]string{"a.yaml", tc.yaml})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"20/h": {20, time.Hour}, "5/m": {5, time.Minute}, "1/10m": {1, 10 * time.Minute}, "100/d": {100, 24 * time.Hour}} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"20", "0/h", "x/h", "5/", "5/-1"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) succeeded", in)
		}
	}
}
