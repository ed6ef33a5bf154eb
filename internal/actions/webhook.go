package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/jailkeeper/jailkeeper/pkg/config"
)

// Webhook POSTs each event to a URL: a JSON object
// {"event","jail","address","expires","reason","host"}, or the action's
// template with {field} placeholders filled with JSON-escaped values (for
// Slack, Discord or Matrix bodies).
type Webhook struct {
	a      config.ResolvedAction
	host   string
	client *http.Client
}

// NewWebhook returns the deliverer of a webhook action.
func NewWebhook(a config.ResolvedAction, host string) *Webhook {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = a.Workers
	return &Webhook{a: a, host: host, client: &http.Client{Transport: tr}}
}

// WebhookBody is the JSON body of format json.
type WebhookBody struct {
	Event   string `json:"event"`
	Jail    string `json:"jail"`
	Address string `json:"address"`
	Expires string `json:"expires"`
	Reason  string `json:"reason"`
	Host    string `json:"host"`
}

// Body returns the request body for ev.
func (w *Webhook) Body(ev Event) ([]byte, error) {
	f := ev.Fields(w.host, w.a.Name)
	if w.a.Format == "template" {
		return []byte(Expand(w.a.Template, f, jsonEscape)), nil
	}
	return json.Marshal(WebhookBody{Event: f["event"], Jail: f["jail"], Address: f["address"], Expires: f["expires"], Reason: f["reason"], Host: f["host"]})
}

// Deliver implements Deliverer.
func (w *Webhook) Deliver(ctx context.Context, evs []Event) error {
	for _, ev := range evs {
		body, err := w.Body(ev)
		if err != nil {
			return fmt.Errorf("%w: encoding the body: %v", ErrPermanent, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.a.URL, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrPermanent, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "jailkeeper-actions")
		for k, v := range w.a.Headers {
			req.Header.Set(k, v)
		}
		resp, err := w.client.Do(req)
		if err != nil {
			return fmt.Errorf("POST %s: %w", w.a.URL, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5:
			return fmt.Errorf("POST %s: %s", w.a.URL, resp.Status)
		default:
			return fmt.Errorf("%w: POST %s: %s", ErrPermanent, w.a.URL, resp.Status)
		}
	}
	return nil
}

var placeholderRE = regexp.MustCompile(`\{([a-z_]+)\}`)

// Expand replaces each {field} of s with esc(fields[field]); unknown
// placeholders stay as written (the configuration rejects them).
func Expand(s string, fields map[string]string, esc func(string) string) string {
	return placeholderRE.ReplaceAllStringFunc(s, func(m string) string {
		v, ok := fields[m[1:len(m)-1]]
		if !ok {
			return m
		}
		if esc != nil {
			return esc(v)
		}
		return v
	})
}

// jsonEscape escapes s for use inside a JSON string literal.
func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return strings.TrimSuffix(strings.TrimPrefix(string(b), `"`), `"`)
}
