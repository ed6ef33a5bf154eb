package svcexit

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestStatus(t *testing.T) {
	none, config := errors.New("no sync: drop-in"), errors.New("config")
	t.Setenv("NOTIFY_SOCKET", "") // READY=1 goes nowhere
	for _, tt := range []struct {
		err  error
		code int
		out  string
	}{
		{nil, 0, ""},
		{fmt.Errorf("loading: %w", none), 0, "jailkeeper sync: loading: no sync: drop-in\n"},
		{fmt.Errorf("bad\n  servers: %w", config), 78, "jailkeeper sync: bad servers: config\n"},
		{errors.New("nats:\tgone"), 1, "jailkeeper sync: nats: gone\n"},
	} {
		var b bytes.Buffer
		if code := Status(&b, "sync", tt.err, none, config); code != tt.code || b.String() != tt.out {
			t.Errorf("Status(%v) = %d, %q; want %d, %q", tt.err, code, b.String(), tt.code, tt.out)
		}
	}
}
