package occupancy_test

// The failure policy, the local checks, the error hook, Close and the
// reconnect backoff (clients/CONTRACT.md section 1).

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	occupancy "github.com/occupancy/occupancy/clients/go"
)

var badChannels = map[string]string{
	"empty":               "",
	"165 characters":      strings.Repeat("a", 165),
	"space":               "bad channel",
	"exclamation mark":    "bad!",
	"slash":               "a/b",
	"non-ASCII":           "caf\u00e9",
	"colon":               "a:b",
	"newline":             "a\nb",
	"164 then one bad":    strings.Repeat("a", 163) + "#",
	"prefix only allowed": "private-\u0000",
}

// A malformed name never reaches the gate: it is refused locally, even while
// the gate is down and even when failing open, and the hook sees nothing.
func TestLocalChecksBeforeAnyCall(t *testing.T) {
	proxy := startTCPProxy(t, "", env.addr) // counts connections: there must be none
	rec := &errorRecorder{}
	for _, target := range []string{env.deadAddr, proxy.addr} {
		failOpen := newClient(t, target, occupancy.WithOnError(rec.handle))
		failClosed := newClient(t, target, occupancy.WithFailOpen(false))
		cached := newClient(t, target, occupancy.WithCached(), occupancy.WithOnError(rec.handle))
		for name, bad := range badChannels {
			t.Run(target+"/"+name, func(t *testing.T) {
				for _, c := range []*occupancy.Client{failOpen, failClosed, cached} {
					occupied, err := c.IsOccupied(t.Context(), bad)
					wantCode(t, err, codes.InvalidArgument)
					if occupied {
						t.Errorf("IsOccupied(%q) answered true alongside INVALID_ARGUMENT", bad)
					}
					if !strings.Contains(err.Error(), "channel") {
						t.Errorf("error %q does not name the field", err)
					}
				}
				_, err := failOpen.PublishIfOccupied(t.Context(), []string{"fine", bad}, "progress", "{}")
				wantCode(t, err, codes.InvalidArgument)
				if got := occupancy.CheckChannel(bad); status.Code(got) != codes.InvalidArgument {
					t.Errorf("CheckChannel(%q) = %v, want INVALID_ARGUMENT", bad, got)
				}
			})
		}
	}
	good := "private-" + strings.Repeat("x", 20)
	for name, args := range map[string]struct {
		channels    []string
		event, data string
	}{
		"no channels":        {nil, "progress", "{}"},
		"101 channels":       {manyChannels(101), "progress", "{}"},
		"empty event":        {[]string{good}, "", "{}"},
		"201-char event":     {[]string{good}, strings.Repeat("e", 201), "{}"},
		"10241 bytes data":   {[]string{good}, "progress", strings.Repeat("d", 10241)},
		"bad second channel": {[]string{good, "no good"}, "progress", "{}"},
	} {
		t.Run("publish/"+name, func(t *testing.T) {
			c := newClient(t, proxy.addr)
			_, err := c.PublishIfOccupied(t.Context(), args.channels, args.event, args.data)
			wantCode(t, err, codes.InvalidArgument)
			if got := occupancy.CheckPublish(args.channels, args.event, args.data); status.Code(got) != codes.InvalidArgument {
				t.Errorf("CheckPublish = %v, want INVALID_ARGUMENT", got)
			}
		})
	}
	if n := proxy.accepted.Load(); n != 0 {
		t.Errorf("the clients opened %d connections for calls refused locally, want 0", n)
	}
	if errs := rec.all(); len(errs) != 0 {
		t.Errorf("the hook saw %v; a bad name must be returned, not swallowed", errs)
	}
}

func manyChannels(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "ch-" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + "-" + strings.Repeat("y", i/26)
	}
	return out
}

// The limits themselves are accepted, and the gate agrees.
func TestLocalChecksAcceptTheLimits(t *testing.T) {
	c := newClient(t, env.addr, occupancy.WithFailOpen(false))
	longest := channelName(t, "")
	longest += strings.Repeat("z", 164-len(longest))
	allChars := channelName(t, "AZaz09_-=@,.;")
	for _, ch := range []string{longest, allChars, "a"} {
		if err := occupancy.CheckChannel(ch); err != nil {
			t.Errorf("CheckChannel(%q): %v", ch, err)
		}
		mustOccupied(t, c, ch, false)
	}
	channels := manyChannels(100)
	channels[0] = longest
	event := strings.Repeat("\u00e9", 200) // 200 characters, 400 bytes
	data := strings.Repeat("d", 10240)
	if err := occupancy.CheckPublish(channels, event, data); err != nil {
		t.Fatalf("CheckPublish at the limits: %v", err)
	}
	res, err := c.PublishIfOccupied(t.Context(), channels, event, data)
	if err != nil {
		t.Fatalf("PublishIfOccupied at the limits: %v", err)
	}
	if len(res.Skipped) != 100 {
		t.Errorf("skipped %d channels, want 100", len(res.Skipped))
	}
}

// An outage (connection refused) answers true with fail-open, and the error
// reaches the hook; with fail-open off it is returned; publish returns it.
func TestOutageAnswersByPolicy(t *testing.T) {
	ch := channelName(t, "job")

	t.Run("fail open answers occupied and reports the error", func(t *testing.T) {
		rec := &errorRecorder{}
		c := newClient(t, env.deadAddr, occupancy.WithOnError(rec.handle))
		for range 3 {
			occupied, err := c.IsOccupied(t.Context(), ch)
			if err != nil || !occupied {
				t.Fatalf("IsOccupied = %v, %v; want true, nil", occupied, err)
			}
		}
		errs := rec.all()
		if len(errs) != 3 {
			t.Fatalf("the hook saw %d errors, want every one of 3: %v", len(errs), errs)
		}
		for _, err := range errs {
			wantCode(t, err, codes.Unavailable)
			if !occupancy.IsOutage(err) {
				t.Errorf("IsOutage(%v) = false", err)
			}
		}
	})
	t.Run("fail closed returns the error", func(t *testing.T) {
		c := newClient(t, env.deadAddr, occupancy.WithFailOpen(false))
		occupied, err := c.IsOccupied(t.Context(), ch)
		wantCode(t, err, codes.Unavailable)
		if occupied {
			t.Errorf("IsOccupied returned true alongside an error")
		}
	})
	t.Run("publish returns the error", func(t *testing.T) {
		rec := &errorRecorder{}
		c := newClient(t, env.deadAddr, occupancy.WithOnError(rec.handle))
		_, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", "{}")
		wantCode(t, err, codes.Unavailable)
		if errs := rec.all(); len(errs) != 0 {
			t.Errorf("the hook saw %v; publish errors are returned, not swallowed", errs)
		}
	})
}

// hungGate accepts TCP connections and never answers, like a gate whose
// process is stuck: only the client's deadline ends a call to it.
func hungGate(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// The deadlines bound each call: DEADLINE_EXCEEDED is an outage (fail-open
// answers true), and errors.Is(err, context.DeadlineExceeded) holds.
func TestTimeoutsBoundEachCall(t *testing.T) {
	addr := hungGate(t)
	const timeout = 300 * time.Millisecond
	// Generous: the point is that the call ends near its deadline, not after
	// gRPC's connect timeout.
	const slack = 2 * time.Second

	t.Run("check with fail-open off returns DEADLINE_EXCEEDED", func(t *testing.T) {
		c := newClient(t, addr, occupancy.WithFailOpen(false), occupancy.WithCheckTimeout(timeout))
		start := time.Now()
		_, err := c.IsOccupied(t.Context(), channelName(t, "job"))
		elapsed := time.Since(start)
		oe := wantCode(t, err, codes.DeadlineExceeded)
		if !errors.Is(oe, context.DeadlineExceeded) {
			t.Errorf("errors.Is(err, context.DeadlineExceeded) = false")
		}
		if elapsed < timeout || elapsed > timeout+slack {
			t.Errorf("IsOccupied took %v, want about %v", elapsed, timeout)
		}
	})
	t.Run("check fails open", func(t *testing.T) {
		rec := &errorRecorder{}
		c := newClient(t, addr, occupancy.WithCheckTimeout(timeout), occupancy.WithOnError(rec.handle))
		occupied, err := c.IsOccupied(t.Context(), channelName(t, "job"))
		if err != nil || !occupied {
			t.Fatalf("IsOccupied = %v, %v; want true, nil", occupied, err)
		}
		if errs := rec.all(); len(errs) != 1 || status.Code(errs[0]) != codes.DeadlineExceeded {
			t.Fatalf("the hook saw %v, want one DEADLINE_EXCEEDED", errs)
		}
	})
	t.Run("default check timeout is 1 s", func(t *testing.T) {
		c := newClient(t, addr, occupancy.WithFailOpen(false))
		start := time.Now()
		_, err := c.IsOccupied(t.Context(), channelName(t, "job"))
		elapsed := time.Since(start)
		wantCode(t, err, codes.DeadlineExceeded)
		if elapsed < time.Second || elapsed > time.Second+slack {
			t.Errorf("IsOccupied took %v, want about 1 s", elapsed)
		}
	})
	t.Run("an earlier deadline on ctx wins", func(t *testing.T) {
		c := newClient(t, addr, occupancy.WithFailOpen(false))
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		start := time.Now()
		_, err := c.IsOccupied(ctx, channelName(t, "job"))
		elapsed := time.Since(start)
		wantCode(t, err, codes.DeadlineExceeded)
		if elapsed > timeout+500*time.Millisecond {
			t.Errorf("IsOccupied took %v, want about %v (the ctx deadline, not 1 s)", elapsed, timeout)
		}
	})
	t.Run("publish", func(t *testing.T) {
		c := newClient(t, addr, occupancy.WithPublishTimeout(timeout))
		start := time.Now()
		_, err := c.PublishIfOccupied(t.Context(), []string{channelName(t, "job")}, "progress", "{}")
		elapsed := time.Since(start)
		wantCode(t, err, codes.DeadlineExceeded)
		if elapsed < timeout || elapsed > timeout+slack {
			t.Errorf("PublishIfOccupied took %v, want about %v", elapsed, timeout)
		}
	})
}

// notTheGate is a real gRPC server that serves nothing: a client pointed at
// the wrong service gets UNIMPLEMENTED for every call.
func notTheGate(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// Any status other than an outage's is a configuration or caller bug: it is
// returned even when failing open, and the hook sees nothing. (The secure
// gate's UNAUTHENTICATED is tested in TestSecureGate.)
func TestOtherStatusesAreReturnedEvenFailingOpen(t *testing.T) {
	t.Run("UNIMPLEMENTED", func(t *testing.T) {
		rec := &errorRecorder{}
		c := newClient(t, notTheGate(t), occupancy.WithOnError(rec.handle))
		occupied, err := c.IsOccupied(t.Context(), channelName(t, "job"))
		wantCode(t, err, codes.Unimplemented)
		if occupied {
			t.Errorf("IsOccupied answered true alongside UNIMPLEMENTED")
		}
		if occupancy.IsOutage(err) {
			t.Errorf("IsOutage(UNIMPLEMENTED) = true")
		}
		if errs := rec.all(); len(errs) != 0 {
			t.Errorf("the hook saw %v, want nothing", errs)
		}
	})
	t.Run("NOT_FOUND for an unknown app id", func(t *testing.T) {
		rec := &errorRecorder{}
		ch := channelName(t, "job")
		for _, c := range []*occupancy.Client{
			newClient(t, env.addr, occupancy.WithAppID("no-such-app"), occupancy.WithOnError(rec.handle)),
			newClient(t, env.addr, occupancy.WithAppID("no-such-app"), occupancy.WithOnError(rec.handle), occupancy.WithCached()),
		} {
			occupied, err := c.IsOccupied(t.Context(), ch)
			oe := wantCode(t, err, codes.NotFound)
			if occupied {
				t.Errorf("IsOccupied answered true alongside NOT_FOUND")
			}
			if !strings.Contains(oe.Message, "no-such-app") {
				t.Errorf("message %q does not name the app", oe.Message)
			}
			_, err = c.PublishIfOccupied(t.Context(), []string{ch}, "progress", "{}")
			wantCode(t, err, codes.NotFound)
		}
		if errs := rec.all(); len(errs) != 0 {
			t.Errorf("the hook saw %v, want nothing", errs)
		}
	})
	t.Run("CANCELED by the caller", func(t *testing.T) {
		rec := &errorRecorder{}
		c := newClient(t, env.addr, occupancy.WithOnError(rec.handle))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		occupied, err := c.IsOccupied(ctx, channelName(t, "job"))
		oe := wantCode(t, err, codes.Canceled)
		if occupied {
			t.Errorf("IsOccupied returned true alongside CANCELED")
		}
		if !errors.Is(oe, context.Canceled) {
			t.Errorf("errors.Is(err, context.Canceled) = false")
		}
		if errs := rec.all(); len(errs) != 0 {
			t.Errorf("the hook saw %v, want nothing", errs)
		}
	})
}

// After Close every call returns ErrClosed, whatever the policy, also for a
// call in flight; Close twice is harmless.
func TestCallsAfterCloseFail(t *testing.T) {
	for name, opts := range map[string][]occupancy.Option{
		"fail open":        nil,
		"fail open off":    {occupancy.WithFailOpen(false)},
		"cached fail open": {occupancy.WithCached()},
	} {
		for _, target := range []string{env.addr, env.deadAddr} {
			t.Run(name+"/"+target, func(t *testing.T) {
				rec := &errorRecorder{}
				c, err := occupancy.New(target, append(opts, occupancy.WithOnError(rec.handle))...)
				if err != nil {
					t.Fatal(err)
				}
				ch := channelName(t, "job")
				_, _ = c.IsOccupied(t.Context(), ch) // open the connection first
				if err := c.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if err := c.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				before := len(rec.all())
				occupied, err := c.IsOccupied(t.Context(), ch)
				if !errors.Is(err, occupancy.ErrClosed) || occupied {
					t.Errorf("IsOccupied after Close = %v, %v; want false, ErrClosed", occupied, err)
				}
				if _, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", "{}"); !errors.Is(err, occupancy.ErrClosed) {
					t.Errorf("PublishIfOccupied after Close: %v, want ErrClosed", err)
				}
				if _, err := c.IsOccupied(t.Context(), "bad name"); !errors.Is(err, occupancy.ErrClosed) {
					t.Errorf("IsOccupied(bad name) after Close: %v, want ErrClosed", err)
				}
				if got := len(rec.all()); got != before {
					t.Errorf("the hook was called after Close")
				}
			})
		}
	}
	t.Run("closed before first use", func(t *testing.T) {
		c, err := occupancy.New(env.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if _, err := c.IsOccupied(t.Context(), "job"); !errors.Is(err, occupancy.ErrClosed) {
			t.Errorf("IsOccupied: %v, want ErrClosed", err)
		}
	})
	t.Run("call in flight", func(t *testing.T) {
		c, err := occupancy.New(hungGate(t), occupancy.WithCheckTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := c.IsOccupied(context.Background(), "job")
			errc <- err
		}()
		time.Sleep(200 * time.Millisecond)
		_ = c.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, occupancy.ErrClosed) {
				t.Errorf("IsOccupied in flight during Close: %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("IsOccupied in flight did not end after Close")
		}
	})
}

// The default hook logs through log/slog's default logger at most once per
// 30 s, saying how many errors were swallowed (the count after 30 s is
// tested with a fake clock in hook_internal_test.go).
func TestDefaultHookWarnsOncePer30Seconds(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	c := newClient(t, env.deadAddr)
	for range 20 {
		occupied, err := c.IsOccupied(t.Context(), channelName(t, "job"))
		if err != nil || !occupied {
			t.Fatalf("IsOccupied = %v, %v; want true, nil", occupied, err)
		}
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Fatalf("got %d warnings for 20 swallowed errors, want 1:\n%s", n, out)
	}
	for _, want := range []string{"swallowed_since_last_warning=1", "Unavailable", "fail open"} {
		if !strings.Contains(out, want) {
			t.Errorf("warning %q does not contain %q", out, want)
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Reconnect backoff is capped at 2 s. A gate that accepts connections and
// closes them at once makes every connection attempt fail; the attempts'
// spacing is the backoff, which grows but never beyond 2 s (gRPC-Go's default
// would be 2.6 s, 4.1 s, 6.6 s ... by then). When the gate serves again, the
// client is back within about 2 s.
func TestReconnectBackoffIsCappedAt2Seconds(t *testing.T) {
	t.Parallel()
	proxy := startTCPProxy(t, "", env.addr)
	proxy.broken.Store(true)
	c := newClient(t, proxy.addr, occupancy.WithFailOpen(false))
	ch := channelName(t, "job")
	failingUntil := time.Now().Add(10 * time.Second)
	for time.Now().Before(failingUntil) {
		_, err := c.IsOccupied(t.Context(), ch)
		wantCode(t, err, codes.Unavailable)
		time.Sleep(50 * time.Millisecond)
	}
	proxy.broken.Store(false) // the gate serves again at the same address
	back := time.Now()

	attempts := proxy.brokenAttempts()
	var gaps []time.Duration
	for i := 1; i < len(attempts); i++ {
		gaps = append(gaps, attempts[i].Sub(attempts[i-1]))
	}
	t.Logf("gaps between connection attempts: %v", gaps)
	for i, gap := range gaps {
		if gap > occupancy.MaxReconnectDelay+150*time.Millisecond {
			t.Errorf("gap %d between connection attempts = %v, want at most 2 s", i, gap)
		}
	}
	if len(gaps) < 5 {
		t.Fatalf("only %d connection attempts in 10 s", len(attempts))
	}
	if last := gaps[len(gaps)-1]; last < time.Second {
		t.Errorf("last gap %v: the backoff did not grow", last)
	}

	for {
		if _, err := c.IsOccupied(t.Context(), ch); err == nil {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatalf("still failing %v after the gate came back", time.Since(back))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(back); took > 2500*time.Millisecond {
		t.Errorf("back on the gate %v after it served again, want at most about 2 s", took)
	}
	t.Logf("back on the gate %v after it served again", time.Since(back))
}
