package dbusapi

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestReconnectBacksOffUntilTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	attempts := 0
	var waits []time.Duration
	start := time.Now()
	Reconnect(ctx, func() error {
		attempts++
		if attempts == 3 {
			cancel()
		}
		return errors.New("connection lost")
	}, func(err error, wait time.Duration) {
		if err == nil || err.Error() != "connection lost" {
			t.Errorf("lost got %v", err)
		}
		waits = append(waits, wait)
	})
	if attempts != 3 || len(waits) != 2 || waits[0] != 500*time.Millisecond || waits[1] != time.Second {
		t.Errorf("attempts %d, pauses %v; want 3 attempts, pauses [500ms 1s] (none after the context ended)", attempts, waits)
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("Reconnect returned after %v, before its pauses (1.5 s) passed", took)
	}
}
