package jails

import (
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jailkeeper/jailkeeper/pkg/journal"
)

var ctxT0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

// ctxStep is one line of one process and what MatchIn must give.
type ctxStep struct {
	pid  uint32
	msg  string
	want string // the address, "" for no match
	port uint16 // checked when want != "" and port != 0
	dt   time.Duration
}

func runCtxSteps(t *testing.T, f *Filter, c *ProcContexts, steps []ctxStep) {
	t.Helper()
	at := ctxT0
	for i, s := range steps {
		at = at.Add(time.Second + s.dt)
		m, ok := f.MatchIn(c, Proc{Unit: "ssh.service", PID: s.pid}, s.msg, at)
		got := ""
		if ok {
			got = m.Addr.String()
		}
		if got != s.want {
			t.Fatalf("step %d (pid %d) %q: got %q, want %q", i, s.pid, s.msg, got, s.want)
		}
		if ok && s.port != 0 && m.Port != s.port {
			t.Fatalf("step %d %q: port %d, want %d", i, s.msg, m.Port, s.port)
		}
	}
}

func TestContextEarlierLine(t *testing.T) {
	f := sshdFilter(t, "normal")
	if !f.HasContext() {
		t.Fatal("the sshd filter has no context regexes")
	}
	runCtxSteps(t, f, NewProcContexts(0, time.Minute), []ctxStep{
		{pid: 10, msg: "Connection from 203.0.113.7 port 50123 on 198.51.100.1 port 22 rdomain \"\""},
		{pid: 10, msg: "Disconnecting: Too many authentication failures for root [preauth]", want: "203.0.113.7", port: 50123},
		// Another process without context: waits, counted by its close.
		{pid: 11, msg: "Disconnecting: Too many authentication failures [preauth]"},
		{pid: 11, msg: "Connection closed by 203.0.113.8 port 40000 [preauth]", want: "203.0.113.8", port: 40000},
		// The close ended process 11's connection: nothing waits any more.
		{pid: 11, msg: "Connection closed by 203.0.113.8 port 40000 [preauth]"},
		// A locked account, then a client's disconnect that names the address.
		{pid: 12, msg: "User root not allowed because account is locked"},
		{pid: 12, msg: "input_userauth_request: invalid user root [preauth]"},
		{pid: 12, msg: "Received disconnect from 2001:db8::12 port 4711:11: Bye Bye [preauth]", want: "2001:db8::12"},
	})
}

// TestContextInterleaved: processes that write in turn keep their own
// addresses; a PID reused by a new connection gets the new one.
func TestContextInterleaved(t *testing.T) {
	f := sshdFilter(t, "aggressive")
	runCtxSteps(t, f, NewProcContexts(0, time.Minute), []ctxStep{
		{pid: 20, msg: "Connection from 203.0.113.20 port 1020 on 198.51.100.1 port 22"},
		{pid: 21, msg: "Connection from 203.0.113.21 port 1021 on 198.51.100.1 port 22"},
		{pid: 22, msg: "error: kex_exchange_identification: Connection closed by remote host"},
		{pid: 21, msg: "fatal: Unable to negotiate a key exchange method [preauth]", want: "203.0.113.21"},
		{pid: 20, msg: "error: kex_exchange_identification: client sent invalid protocol identifier \"203.0.113.99\"", want: "203.0.113.20"},
		{pid: 22, msg: "Connection closed by 203.0.113.22 port 1022", want: "203.0.113.22"},
		{pid: 20, msg: "Connection closed by 203.0.113.20 port 1020"},
		{pid: 20, msg: "Connection from 203.0.113.30 port 1030 on 198.51.100.1 port 22"},
		{pid: 20, msg: "Disconnecting: Too many authentication failures [preauth]", want: "203.0.113.30"},
	})
}

// TestContextInjection: an address in client-written text is never the
// one counted, and a line of another process, or without a PID, supplies
// nothing.
func TestContextInjection(t *testing.T) {
	f := sshdFilter(t, "normal")
	c := NewProcContexts(0, time.Minute)
	runCtxSteps(t, f, c, []ctxStep{
		{pid: 30, msg: "Connection from 203.0.113.30 port 1 on 198.51.100.1 port 22"},
		// The user is the client's: the address is the context's.
		{pid: 30, msg: "Disconnecting: Too many authentication failures for root from 198.51.100.66 port 2 [preauth]", want: "203.0.113.30"},
		{pid: 30, msg: "User x from 198.51.100.67 port 1 not allowed because account is locked", want: "203.0.113.30"},
		// A valid user's failed key records the address sshd wrote, not
		// the one in the client's user name.
		{pid: 31, msg: "Failed publickey for a from 198.51.100.68 port 9 ssh2 from 203.0.113.31 port 31 ssh2: RSA SHA256:x"},
		{pid: 31, msg: "Disconnecting: Too many authentication failures [preauth]", want: "203.0.113.31", port: 31},
		// A close of another process does not count process 32's failure.
		{pid: 32, msg: "input_userauth_request: invalid user Connection from 198.51.100.69 port 1 [preauth]"},
		{pid: 33, msg: "Connection closed by 198.51.100.70 port 5 [preauth]"},
		// Context lines count nothing by themselves.
		{pid: 34, msg: "Connection from 198.51.100.71 port 1 on 198.51.100.1 port 22"},
		{pid: 34, msg: "Connection closed by 198.51.100.71 port 1"},
	})
	// Process 32's failure still waits: no line of its own named an address.
	if n := c.procs.get(Proc{Unit: "ssh.service", PID: 32}); n == nil || !n.val.pending || n.val.addr.IsValid() {
		t.Fatalf("process 32's context: %+v", n)
	}
	// Without a PID (offline lines without a tag), <CTXHOST> never matches.
	if _, ok := f.MatchIn(c, Proc{Unit: "ssh.service"}, "Disconnecting: Too many authentication failures [preauth]", ctxT0); ok {
		t.Fatal("a line without a PID matched a <CTXHOST> regex")
	}
	if _, ok := f.Match("Disconnecting: Too many authentication failures [preauth]"); ok {
		t.Fatal("Match (no context) matched a <CTXHOST> regex")
	}
}

func TestContextExpiry(t *testing.T) {
	f := sshdFilter(t, "normal")
	runCtxSteps(t, f, NewProcContexts(0, time.Minute), []ctxStep{
		{pid: 40, msg: "Connection from 203.0.113.40 port 1 on 198.51.100.1 port 22"},
		{pid: 40, msg: "Disconnecting: Too many authentication failures [preauth]", want: "203.0.113.40"},
		// Two minutes of silence: the context is gone (and so is a
		// waiting failure).
		{pid: 40, msg: "Disconnecting: Too many authentication failures [preauth]", dt: 2 * time.Minute},
		{pid: 41, msg: "Disconnecting: Too many authentication failures [preauth]"},
		{pid: 41, msg: "Connection closed by 203.0.113.41 port 1 [preauth]", dt: 2 * time.Minute},
	})
}

func TestContextCap(t *testing.T) {
	f := sshdFilter(t, "normal")
	c := NewProcContexts(3, time.Hour)
	at := ctxT0
	for pid := uint32(1); pid <= 10; pid++ {
		at = at.Add(time.Second)
		f.MatchIn(c, Proc{Unit: "ssh.service", PID: pid}, "Connection from 203.0.113.50 port 1 on 198.51.100.1 port 22", at)
		if c.Len() > 3 {
			t.Fatalf("%d contexts kept, cap 3", c.Len())
		}
	}
	// The oldest were evicted, the three newest are there.
	if _, ok := f.MatchIn(c, Proc{Unit: "ssh.service", PID: 1}, "Disconnecting: Too many authentication failures [preauth]", at); ok {
		t.Fatal("an evicted process still had its context")
	}
	if _, ok := f.MatchIn(c, Proc{Unit: "ssh.service", PID: 10}, "Disconnecting: Too many authentication failures [preauth]", at); !ok {
		t.Fatal("the newest process lost its context")
	}
}

func TestContextCompileErrors(t *testing.T) {
	for _, c := range []struct {
		def  FilterDef
		want string
	}{
		{FilterDef{FailRegex: []string{`^<CTXHOST>x$`}}, "needs context regexes"},
		{FilterDef{FailRegex: []string{`^<CTXHOST>x <HOST>$`}, Context: []string{`^c <HOST>$`}}, "both <HOST> and <CTXHOST>"},
		{FilterDef{FailRegex: []string{`^<CTXHOST>x$`}, Context: []string{`^c$`}}, "needs <HOST>"},
		{FilterDef{FailRegex: []string{`^<CTXHOST>x$`}, Context: []string{`^c <HOST>$`}, ContextEnd: []string{`(`}}, "context_end[0]"},
	} {
		_, err := Compile(c.def)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Compile(%+v) = %v, want an error with %q", c.def, err, c.want)
		}
	}
}

// TestEngineContext: the engine keys contexts by unit and PID, and three
// processes that each end with an addressless failure ban their client.
func TestEngineContext(t *testing.T) {
	e, err := NewEngine([]Jail{{Name: "sshd", Filter: sshdFilter(t, "normal"), MaxRetry: 3}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := ctxT0
	var bans []Decision
	for i := uint32(0); i < 3; i++ {
		for _, msg := range []string{
			"Connection from 203.0.113.60 port " + string(rune('1'+i)) + "000 on 198.51.100.1 port 22",
			"Disconnecting: Too many authentication failures [preauth]",
		} {
			at = at.Add(time.Second)
			bans = append(bans, e.Handle(journal.Entry{Unit: "ssh.service", PID: 100 + i, Message: msg, Time: at})...)
		}
		if i < 2 && len(bans) != 0 {
			t.Fatalf("banned after %d connections: %+v", i+1, bans)
		}
	}
	if len(bans) != 1 || bans[0].Prefix != netip.MustParsePrefix("203.0.113.60/32") {
		t.Fatalf("bans %+v, want 203.0.113.60/32 once", bans)
	}
	// Same PID in another unit: no context there.
	if d := e.Handle(journal.Entry{Unit: "sshd.service", PID: 100, Message: "Disconnecting: Too many authentication failures [preauth]", Time: at}); len(d) != 0 {
		t.Fatalf("a process of another unit used the context: %+v", d)
	}
}

// TestContextCorpora runs testdata/context/FILTER[.MODE].txt: corpus
// entries whose message starts with the PID of the process that wrote it.
func TestContextCorpora(t *testing.T) {
	paths, err := filepath.Glob("testdata/context/*.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no context corpus: %v", err)
	}
	for _, path := range paths {
		name, mode, _ := strings.Cut(strings.TrimSuffix(filepath.Base(path), ".txt"), ".")
		def, err := Builtin(name, mode)
		if err != nil {
			t.Fatal(err)
		}
		f, err := Compile(def)
		if err != nil {
			t.Fatal(err)
		}
		cases, err := readCorpus(path)
		if err != nil {
			t.Fatal(err)
		}
		c := NewProcContexts(0, time.Minute)
		at := ctxT0
		for _, cc := range cases {
			pidText, msg, _ := strings.Cut(cc.msg, " ")
			pid, err := strconv.ParseUint(pidText, 10, 32)
			if err != nil {
				t.Fatalf("%s:%d: no PID before the message", path, cc.lineNo)
			}
			at = at.Add(time.Second)
			m, ok := f.MatchIn(c, Proc{Unit: "ssh.service", PID: uint32(pid)}, msg, at)
			switch {
			case ok != cc.match:
				t.Errorf("%s:%d: %q: match %v, want %v (%v)", path, cc.lineNo, msg, ok, cc.match, m.Addr)
			case ok && m.Addr != cc.addr:
				t.Errorf("%s:%d: %q: address %v, want %v", path, cc.lineNo, msg, m.Addr, cc.addr)
			}
		}
	}
}
