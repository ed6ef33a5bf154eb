package sdjournal

import (
	"context"
	"fmt"
	"github.com/jailkeeper/jailkeeper/pkg/journal"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	gosdjournal "github.com/coreos/go-systemd/v22/sdjournal"
	"github.com/jailkeeper/jailkeeper/internal/testbed"
)

// BenchmarkRead reads benchEntries matching entries (plus noise from another
// unit) written once into a private journald, through:
//
//   - sdjournal-bare: go-systemd's Next + GetDataValue("MESSAGE"), the
//     ceiling the issue measures against;
//   - sdjournal-fields: go-systemd reading what an Entry holds (five
//     GetDataValue, realtime, cursor), i.e. the Reader done with sdjournal;
//   - binding: this package's binding alone (jk_next + copy into an Entry),
//     no Reader loop, no channel;
//   - reader: Open + Run, entries received from the channel.
//
// Run: go test ./pkg/journal -run '^$' -bench Read -benchtime 3x (as root).
func BenchmarkRead(b *testing.B) {
	testbed.Require(b, "journalctl", "nsenter")
	jd := testbed.StartJournald(b)
	unit := "jk-bench-" + testbed.Suffix() + ".service"
	writeBenchWorkload(b, jd, unit)
	b.ResetTimer()

	b.Run("sdjournal-bare", func(b *testing.B) {
		benchLoop(b, func() int { return sdjournalLoop(b, jd.Dir(), unit, false) })
	})
	b.Run("sdjournal-fields", func(b *testing.B) {
		benchLoop(b, func() int { return sdjournalLoop(b, jd.Dir(), unit, true) })
	})
	b.Run("binding", func(b *testing.B) {
		benchLoop(b, func() int { return bindingLoop(b, jd.Dir(), unit) })
	})
	b.Run("seek-cursor", func(b *testing.B) {
		benchSeek(b, jd.Dir(), unit)
	})
	b.Run("reader", func(b *testing.B) {
		benchLoop(b, func() int { return readerLoop(b, jd.Dir(), unit) })
	})
}

const (
	benchEntries = 200_000
	benchNoise   = 50_000
)

// writeBenchWorkload writes the mix: 30 % failed logins from 5,000
// addresses, the rest ordinary sshd lines, and noise from another unit.
func writeBenchWorkload(b *testing.B, jd *testbed.Journald, unit string) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		msgs := make([]string, benchEntries)
		for i := range msgs {
			if i%10 < 3 {
				a := i % 5000
				msgs[i] = fmt.Sprintf("Failed password for root from 203.0.%d.%d port %d ssh2", a/250, a%250, 30000+i%30000)
			} else {
				msgs[i] = fmt.Sprintf("Accepted publickey for deploy from 198.51.100.%d port %d ssh2: ED25519 SHA256:abcdefghijklmnop", i%250, 30000+i%30000)
			}
		}
		errs <- jd.WriteAsUnit(unit, msgs)
	}()
	go func() {
		defer wg.Done()
		errs <- jd.WriteAsUnit("jk-noise-"+testbed.Suffix()+".service", messages(benchNoise, "noise line %d of another unit"))
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("wrote %d + %d noise entries in %s", benchEntries, benchNoise, time.Since(start))
}

// benchLoop runs read b.N times, checks it saw every entry and reports
// entries/s.
func benchLoop(b *testing.B, read func() int) {
	b.ReportAllocs()
	start, cpu0 := time.Now(), cpuTime(b)
	for i := 0; i < b.N; i++ {
		if n := read(); n != benchEntries {
			b.Fatalf("read %d entries, want %d", n, benchEntries)
		}
	}
	el, cpu := time.Since(start), cpuTime(b)-cpu0
	total := float64(benchEntries * b.N)
	b.ReportMetric(total/el.Seconds(), "entries/s")
	b.ReportMetric(float64(el.Nanoseconds())/total, "ns/entry")
	// CPU time of the whole process (all threads) per entry: less
	// sensitive than wall time to other load on a shared machine.
	b.ReportMetric(float64(cpu.Nanoseconds())/total, "cpu-ns/entry")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sdjournalLoop(b *testing.B, dir, unit string, allFields bool) int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	j, err := gosdjournal.NewJournalFromDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	if err := j.AddMatch("_SYSTEMD_UNIT=" + unit); err != nil {
		b.Fatal(err)
	}
	if err := j.SeekHead(); err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		r, err := j.Next()
		if err != nil {
			b.Fatal(err)
		}
		if r == 0 {
			return n
		}
		msg, err := j.GetDataValue("MESSAGE")
		if err != nil || msg == "" {
			b.Fatalf("MESSAGE: %q %v", msg, err)
		}
		if allFields {
			u, _ := j.GetDataValue("_SYSTEMD_UNIT")
			_, _ = j.GetDataValue("SYSLOG_IDENTIFIER")
			_, _ = j.GetDataValue("_PID")
			_, _ = j.GetDataValue("_SOURCE_REALTIME_TIMESTAMP")
			_, _ = j.GetRealtimeUsec()
			c, err := j.GetCursor()
			if u != unit || err != nil || c == "" {
				b.Fatalf("unit %q cursor %q: %v", u, c, err)
			}
		}
		n++
	}
}

func bindingLoop(b *testing.B, dir, unit string) int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sj, err := openJournal(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer sj.close()
	if err := sj.addMatch("_SYSTEMD_UNIT=" + unit); err != nil {
		b.Fatal(err)
	}
	if err := sj.seekRealtime(time.Time{}); err != nil {
		b.Fatal(err)
	}
	var e journal.Entry
	n := 0
	for {
		ok, err := sj.next(&e)
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			return n
		}
		if e.Message == "" || e.Unit != unit {
			b.Fatalf("bad entry %+v", e)
		}
		n++
	}
}

func readerLoop(b *testing.B, dir, unit string) int {
	r, err := Open(Options{Units: []string{unit}, Path: dir, LookBack: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan []journal.Entry, 4)
	go r.Run(ctx, out)
	n := 0
	for n < benchEntries {
		select {
		case batch := <-out:
			for i := range batch {
				if batch[i].Message == "" {
					b.Fatalf("bad entry %+v", batch[i])
				}
			}
			n += len(batch)
		case <-time.After(10 * time.Second):
			b.Fatalf("reader stalled after %d entries", n)
		}
	}
	return n
}

// benchSeek measures the re-seek the Reader does before each idle poll.
func benchSeek(b *testing.B, dir, unit string) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sj, err := openJournal(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer sj.close()
	if err := sj.addMatch("_SYSTEMD_UNIT=" + unit); err != nil {
		b.Fatal(err)
	}
	if err := sj.seekRealtime(time.Time{}); err != nil {
		b.Fatal(err)
	}
	var e journal.Entry
	for i := 0; i < benchEntries; i++ {
		if ok, err := sj.next(&e); !ok || err != nil {
			b.Fatalf("entry %d: %v", i, err)
		}
	}
	last, err := sj.cursor()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		found, err := sj.seekCursor(last)
		if !found || err != nil {
			b.Fatalf("seek: %v %v", found, err)
		}
		if ok, err := sj.next(&journal.Entry{}); ok || err != nil {
			b.Fatalf("next after the last entry: %v %v", ok, err)
		}
	}
}
