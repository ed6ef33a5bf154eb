package actions

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/smtp"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/jails"
)

// DigestDetails is how many bans of a digest get their log lines and
// whois record quoted.
const DigestDetails = 10

// Mail sends a mail per event, or one per digest period, through the local
// MTA: `sendmail -t -i`, or SMTP to smtp: (host:port) when the unit's
// hardening forbids sendmail's setgid drop.
type Mail struct {
	a     config.ResolvedAction
	host  string
	jails map[string]jails.Jail
	// Whois and Lines are the lookups, replaceable in tests.
	Whois func(ctx context.Context, server string, addr netip.Addr) (string, error)
	Lines func(ctx context.Context, j jails.Jail, p netip.Prefix, start time.Time) ([]string, error)
	// Send delivers a composed message to its recipients.
	Send func(ctx context.Context, to []string, msg []byte) error
}

// NewMail returns the deliverer of a mail action; js are the configured
// jails (units, findtime and filter for the journal lines).
func NewMail(a config.ResolvedAction, host string, js []jails.Jail) *Mail {
	m := &Mail{a: a, host: host, jails: map[string]jails.Jail{}, Whois: Whois, Lines: JournalLines}
	for _, j := range js {
		m.jails[j.Name] = j
	}
	m.Send = m.sendmail
	if a.SMTP != "" {
		m.Send = m.smtp
	}
	return m
}

// Deliver implements Deliverer: one event is one mail; more (a digest) are
// one mail listing them all.
func (m *Mail) Deliver(ctx context.Context, evs []Event) error {
	to, msg, err := m.Compose(ctx, evs)
	if err != nil {
		return err
	}
	return m.Send(ctx, to, msg)
}

// Compose builds the message and its recipients.
func (m *Mail) Compose(ctx context.Context, evs []Event) ([]string, []byte, error) {
	if len(evs) == 0 {
		return nil, nil, fmt.Errorf("%w: nothing to send", ErrPermanent)
	}
	var to []string
	wantAbuse := false
	for _, r := range m.a.To {
		if r == config.AbuseRecipient {
			wantAbuse = true
			continue
		}
		to = append(to, r)
	}
	var body bytes.Buffer
	var subject string
	if len(evs) == 1 {
		ev := evs[0]
		verb := "banned"
		if ev.Kind == Unban {
			verb = "unbanned"
		}
		subject = fmt.Sprintf("[jailkeeper] %s: %s %s in jail %s", m.host, verb, ev.Address(), ev.Jail)
		fmt.Fprintf(&body, "jailkeeper on %s %s %s in jail %s.\n\n", m.host, verb, ev.Address(), ev.Jail)
		fmt.Fprintf(&body, "Host:      %s\nJail:      %s\nAddress:   %s\n", m.host, ev.Jail, ev.Address())
		if ev.Kind == Ban {
			fmt.Fprintf(&body, "Ban time:  %s\nBanned at: %s\n", banTimeText(ev), ev.Start.UTC().Format(time.RFC1123Z))
		}
		if ev.Reason != "" {
			fmt.Fprintf(&body, "Reason:    %s\n", ev.Reason)
		}
		if m.a.Lines && ev.Kind == Ban {
			m.writeLines(ctx, &body, ev)
		}
		if m.a.Whois || wantAbuse {
			rec, err := m.Whois(ctx, m.a.WhoisServer, ev.Prefix.Addr())
			if wantAbuse {
				if err != nil {
					return nil, nil, fmt.Errorf("finding the abuse contact: %w", err)
				}
				c := AbuseContact(rec)
				if c == "" {
					return nil, nil, fmt.Errorf("%w: no abuse contact in the whois record of %s", ErrPermanent, ev.Address())
				}
				to = append(to, c)
			}
			if m.a.Whois {
				whoisSection(&body, ev, rec, err)
			}
		}
	} else {
		if wantAbuse {
			return nil, nil, fmt.Errorf("%w: a digest cannot go to abuse contacts", ErrPermanent)
		}
		bans, unbans := 0, 0
		for _, ev := range evs {
			if ev.Kind == Ban {
				bans++
			} else {
				unbans++
			}
		}
		subject = fmt.Sprintf("[jailkeeper] %s: %d bans, %d unbans", m.host, bans, unbans)
		fmt.Fprintf(&body, "jailkeeper on %s: %d bans and %d unbans in the last %s.\n\n", m.host, bans, unbans, m.a.Digest)
		perJail := map[string]int{}
		for _, ev := range evs {
			perJail[ev.Jail]++
		}
		names := make([]string, 0, len(perJail))
		for n := range perJail {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&body, "  %s: %d\n", n, perJail[n])
		}
		body.WriteString("\nevent  jail                 address                                   ban time    reason\n")
		for _, ev := range evs {
			bt := ""
			if ev.Kind == Ban {
				bt = banTimeText(ev)
			}
			fmt.Fprintf(&body, "%-6s %-20s %-41s %-11s %s\n", ev.Kind, ev.Jail, ev.Address(), bt, ev.Reason)
		}
		// The log lines and whois records of the first bans: a lookup
		// each, so a flood's digest stays one quick mail.
		if m.a.Lines || m.a.Whois {
			n := 0
			for _, ev := range evs {
				if ev.Kind != Ban || n == DigestDetails {
					continue
				}
				if n++; n == 1 {
					fmt.Fprintf(&body, "\nDetails of the first %d bans:\n", min(bans, DigestDetails))
				}
				fmt.Fprintf(&body, "\n--- %s in jail %s\n", ev.Address(), ev.Jail)
				if m.a.Lines {
					m.writeLines(ctx, &body, ev)
				}
				if m.a.Whois {
					m.writeWhois(ctx, &body, ev)
				}
			}
		}
	}
	if len(to) == 0 {
		return nil, nil, fmt.Errorf("%w: no recipient", ErrPermanent)
	}
	var msg bytes.Buffer
	if m.a.From != "" {
		fmt.Fprintf(&msg, "From: %s\n", m.a.From)
	}
	fmt.Fprintf(&msg, "To: %s\nSubject: %s\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\nAuto-Submitted: auto-generated\nX-Jailkeeper-Action: %s\n\n",
		strings.Join(to, ", "), headerSafe(subject), m.a.Name)
	msg.Write(body.Bytes())
	return to, msg.Bytes(), nil
}

func (m *Mail) writeLines(ctx context.Context, w *bytes.Buffer, ev Event) {
	j, ok := m.jails[ev.Jail]
	if !ok {
		return
	}
	lines, err := m.Lines(ctx, j, ev.Prefix, ev.Start)
	fmt.Fprintf(w, "\nLog lines of %s that failed for %s (findtime %s):\n\n", strings.Join(append(append([]string{}, j.Units...), j.Identifiers...), ", "), ev.Address(), j.FindTime)
	switch {
	case err != nil:
		fmt.Fprintf(w, "  (%v)\n", err)
	case len(lines) == 0:
		w.WriteString("  (none found)\n")
	}
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func (m *Mail) writeWhois(ctx context.Context, w *bytes.Buffer, ev Event) {
	rec, err := m.Whois(ctx, m.a.WhoisServer, ev.Prefix.Addr())
	whoisSection(w, ev, rec, err)
}

func whoisSection(w *bytes.Buffer, ev Event, rec string, err error) {
	fmt.Fprintf(w, "\nWhois record of %s:\n\n", ev.Prefix.Addr())
	if err != nil {
		fmt.Fprintf(w, "  (%v)\n", err)
		return
	}
	w.WriteString(indent(rec))
}

func banTimeText(ev Event) string {
	if ev.Expires.IsZero() {
		return "permanent"
	}
	return fmt.Sprintf("%s (until %s)", ev.BanTime(), ev.Expires.UTC().Format(time.RFC3339))
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  ")
		b.WriteString(strings.TrimRight(l, "\r"))
		b.WriteByte('\n')
	}
	return b.String()
}

func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

func (m *Mail) sendmail(ctx context.Context, _ []string, msg []byte) error {
	cmd := exec.CommandContext(ctx, m.a.Sendmail, "-t", "-i")
	cmd.Stdin = bytes.NewReader(msg)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	killGroupOnCancel(cmd)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s -t -i: timed out", m.a.Sendmail)
		}
		return fmt.Errorf("%s -t -i: %v: %s", m.a.Sendmail, err, strings.TrimSpace(out.b.String()))
	}
	return nil
}

func (m *Mail) smtp(ctx context.Context, to []string, msg []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.a.SMTP)
	if err != nil {
		return fmt.Errorf("SMTP %s: %w", m.a.SMTP, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(m.a.SMTP)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("SMTP %s: %w", m.a.SMTP, err)
	}
	from := m.a.From
	if from == "" {
		from = "root@" + m.host
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("SMTP %s: MAIL FROM: %w", m.a.SMTP, err)
	}
	for _, r := range to {
		if !strings.Contains(r, "@") {
			r += "@" + m.host
		}
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("SMTP %s: RCPT TO %s: %w", m.a.SMTP, r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("SMTP %s: DATA: %w", m.a.SMTP, err)
	}
	if _, err := w.Write(bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n"))); err != nil {
		return fmt.Errorf("SMTP %s: writing the message: %w", m.a.SMTP, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("SMTP %s: %w", m.a.SMTP, err)
	}
	return c.Quit()
}
