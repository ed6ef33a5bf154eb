package measure

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRSSAndCPUOfThisProcess(t *testing.T) {
	if kib := RSS(t, os.Getpid()); kib <= 0 {
		t.Errorf("RSS of this process = %d KiB, want > 0", kib)
	}
	c0 := CPU(t, os.Getpid())
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	if c1 := CPU(t, os.Getpid()); c1 <= c0 || c1%(10*time.Millisecond) != 0 {
		t.Errorf("CPU after 300 ms of spinning: %v then %v, want more, in 10 ms ticks", c0, c1)
	}
}

func TestRow(t *testing.T) {
	var b bytes.Buffer
	Row(&b, "idle RSS", MiB(1536), "≤ 15 MB", Verdict(true))
	Row(&b, "p99", "3s", "≤ 2 s", Verdict(false))
	got := strings.Split(b.String(), "\n")
	if len(got) != 3 || !strings.HasPrefix(got[0], "idle RSS ") || !strings.Contains(got[0], " 1.5 MiB ") ||
		!strings.HasSuffix(got[0], " met") || !strings.HasSuffix(got[1], " NOT met") || strings.Index(got[1], "3s") != 59 {
		t.Errorf("rows:\n%s", b.String())
	}
}
