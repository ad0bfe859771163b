package occupancy_test

// These tests run against the real occupancy gate, a real Redis and a Pusher
// stand-in, all started by the Rust harness (see clients/CONTRACT.md):
//
//	cd <repo root> && cargo test --test clients -- go

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	occupancy "github.com/occupancy/occupancy/clients/go"
)

var env struct {
	addr, webhookURL, key, secret, stubURL, deadAddr string
}

func TestMain(m *testing.M) {
	vars := map[string]*string{
		"OCCUPANCY_ADDR":        &env.addr,
		"OCCUPANCY_WEBHOOK_URL": &env.webhookURL,
		"TEST_PUSHER_KEY":       &env.key,
		"TEST_PUSHER_SECRET":    &env.secret,
		"PUSHER_STUB_URL":       &env.stubURL,
		"OCCUPANCY_DEAD_ADDR":   &env.deadAddr,
	}
	var missing []string
	for name, dst := range vars {
		*dst = os.Getenv(name)
		if *dst == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		fmt.Fprintf(os.Stderr, "FAIL: missing environment variables %v.\n"+
			"These tests need the real gate, Redis and the Pusher stand-in: run them from the repo root with\n"+
			"    cargo test --test clients -- go\n", missing)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// channelName returns a channel name unique to this run, because all client
// suites share one gate and one Pusher stand-in.
func channelName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-go-" + hex.EncodeToString(b)
}

// sendWebhook posts a Pusher webhook, signed as Pusher signs it, to the gate.
func sendWebhook(t *testing.T, name, channel string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"time_ms": time.Now().UnixMilli(),
		"events":  []map[string]string{{"name": name, "channel": channel}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte(env.secret))
	mac.Write(body)
	req, err := http.NewRequest(http.MethodPost, env.webhookURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Pusher-Key", env.key)
	req.Header.Set("X-Pusher-Signature", hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("webhook %s %s: %v", name, channel, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("webhook %s %s: HTTP %d: %s", name, channel, resp.StatusCode, msg)
	}
}

type stubCall struct {
	Method         string `json:"method"`
	Path           string `json:"path"`
	SignatureValid bool   `json:"signature_valid"`
	Body           struct {
		Name     string   `json:"name"`
		Data     string   `json:"data"`
		Channels []string `json:"channels"`
		SocketID *string  `json:"socket_id"`
	} `json:"body"`
}

// callsFor returns the calls that reached the Pusher stand-in naming any of
// channels, in arrival order.
func callsFor(t *testing.T, channels ...string) []stubCall {
	t.Helper()
	resp, err := http.Get(env.stubURL + "/_stub/calls")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /_stub/calls: HTTP %d", resp.StatusCode)
	}
	var all struct {
		Calls []stubCall `json:"calls"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatalf("decoding /_stub/calls: %v", err)
	}
	var out []stubCall
	for _, c := range all.Calls {
		if slices.ContainsFunc(c.Body.Channels, func(ch string) bool { return slices.Contains(channels, ch) }) {
			out = append(out, c)
		}
	}
	return out
}

func newClient(t *testing.T, addr string, opts ...occupancy.Option) *occupancy.Client {
	t.Helper()
	c, err := occupancy.New(addr, opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// errorRecorder is an error handler that keeps what it is given.
type errorRecorder struct {
	mu   sync.Mutex
	errs []error
}

func (r *errorRecorder) handle(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *errorRecorder) all() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// wantCode checks err is an *Error with one of codes, reachable both by
// errors.As and by status.Code.
func wantCode(t *testing.T, err error, want ...codes.Code) *occupancy.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want code %v", want)
	}
	var oe *occupancy.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not an *occupancy.Error", err, err)
	}
	if !slices.Contains(want, oe.Code) {
		t.Fatalf("error code = %v (%q), want one of %v", oe.Code, oe.Message, want)
	}
	if got := status.Code(err); got != oe.Code {
		t.Fatalf("status.Code(err) = %v, want %v", got, oe.Code)
	}
	if got := status.Code(fmt.Errorf("wrapped: %w", err)); got != oe.Code {
		t.Fatalf("status.Code(wrapped err) = %v, want %v", got, oe.Code)
	}
	if oe.Message == "" {
		t.Fatalf("error %v has an empty message", err)
	}
	return oe
}

func mustOccupied(t *testing.T, c *occupancy.Client, channel string, want bool) {
	t.Helper()
	got, err := c.IsOccupied(t.Context(), channel)
	if err != nil {
		t.Fatalf("IsOccupied(%q): %v", channel, err)
	}
	if got != want {
		t.Fatalf("IsOccupied(%q) = %v, want %v", channel, got, want)
	}
}

func TestIsOccupiedFollowsWebhooks(t *testing.T) {
	c := newClient(t, env.addr, occupancy.WithFailClosed())
	ch := channelName(t, "private-job")

	mustOccupied(t, c, ch, false)
	sendWebhook(t, "channel_occupied", ch)
	mustOccupied(t, c, ch, true)
	sendWebhook(t, "channel_vacated", ch)
	mustOccupied(t, c, ch, false)
}

func TestPublishToOccupiedChannel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		socketID string
	}{
		{name: "without socket id"},
		{name: "with socket id", socketID: "123.456"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, env.addr)
			ch := channelName(t, "job")
			sendWebhook(t, "channel_occupied", ch)

			var opts []occupancy.PublishOption
			if tc.socketID != "" {
				opts = append(opts, occupancy.WithSocketID(tc.socketID))
			}
			data := `{"job":"` + ch + `","pct":40}`
			res, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", data, opts...)
			if err != nil {
				t.Fatalf("PublishIfOccupied: %v", err)
			}
			if !slices.Equal(res.Published, []string{ch}) || len(res.Skipped) != 0 {
				t.Fatalf("result = %+v, want published [%s], skipped []", res, ch)
			}

			calls := callsFor(t, ch)
			if len(calls) != 1 {
				t.Fatalf("got %d Pusher calls for %s, want 1: %+v", len(calls), ch, calls)
			}
			call := calls[0]
			if !call.SignatureValid {
				t.Errorf("Pusher call signature_valid = false")
			}
			if call.Method != http.MethodPost {
				t.Errorf("Pusher call method = %s, want POST", call.Method)
			}
			if call.Body.Name != "progress" || call.Body.Data != data {
				t.Errorf("Pusher call body name=%q data=%q, want progress / %q", call.Body.Name, call.Body.Data, data)
			}
			if !slices.Equal(call.Body.Channels, []string{ch}) {
				t.Errorf("Pusher call channels = %v, want [%s]", call.Body.Channels, ch)
			}
			switch {
			case tc.socketID == "" && call.Body.SocketID != nil:
				t.Errorf("Pusher call socket_id = %q, want none", *call.Body.SocketID)
			case tc.socketID != "" && (call.Body.SocketID == nil || *call.Body.SocketID != tc.socketID):
				t.Errorf("Pusher call socket_id = %v, want %q", call.Body.SocketID, tc.socketID)
			}
		})
	}
}

func TestPublishToVacantChannelIsSkipped(t *testing.T) {
	c := newClient(t, env.addr)
	ch := channelName(t, "job")

	res, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", `{"pct":1}`)
	if err != nil {
		t.Fatalf("PublishIfOccupied: %v", err)
	}
	if len(res.Published) != 0 || !slices.Equal(res.Skipped, []string{ch}) {
		t.Fatalf("result = %+v, want published [], skipped [%s]", res, ch)
	}
	if res.Published == nil {
		t.Errorf("Published is nil, want an empty slice")
	}
	if calls := callsFor(t, ch); len(calls) != 0 {
		t.Fatalf("got %d Pusher calls for vacant %s, want none: %+v", len(calls), ch, calls)
	}
}

func TestPublishToMixOfOccupiedAndVacant(t *testing.T) {
	c := newClient(t, env.addr)
	occ1, vac1 := channelName(t, "job-a"), channelName(t, "job-b")
	occ2, vac2 := channelName(t, "job-c"), channelName(t, "job-d")
	sendWebhook(t, "channel_occupied", occ1)
	sendWebhook(t, "channel_occupied", occ2)

	all := []string{vac1, occ1, vac2, occ2}
	res, err := c.PublishIfOccupied(t.Context(), all, "progress", `{"pct":99}`)
	if err != nil {
		t.Fatalf("PublishIfOccupied: %v", err)
	}
	if !slices.Equal(res.Published, []string{occ1, occ2}) || !slices.Equal(res.Skipped, []string{vac1, vac2}) {
		t.Fatalf("result = %+v, want published [%s %s], skipped [%s %s]", res, occ1, occ2, vac1, vac2)
	}
	calls := callsFor(t, all...)
	if len(calls) != 1 {
		t.Fatalf("got %d Pusher calls, want 1: %+v", len(calls), calls)
	}
	if !calls[0].SignatureValid {
		t.Errorf("Pusher call signature_valid = false")
	}
	got := slices.Sorted(slices.Values(calls[0].Body.Channels))
	want := slices.Sorted(slices.Values([]string{occ1, occ2}))
	if !slices.Equal(got, want) {
		t.Errorf("Pusher call channels = %v, want %v", calls[0].Body.Channels, want)
	}
}

func TestInvalidArgumentAlwaysReturned(t *testing.T) {
	const bad = "bad channel!"
	rec := &errorRecorder{}
	failOpen := newClient(t, env.addr, occupancy.WithErrorHandler(rec.handle))
	failClosed := newClient(t, env.addr, occupancy.WithFailClosed())

	t.Run("fail open", func(t *testing.T) {
		occupied, err := failOpen.IsOccupied(t.Context(), bad)
		wantCode(t, err, codes.InvalidArgument)
		if occupied {
			t.Errorf("IsOccupied returned true alongside INVALID_ARGUMENT")
		}
		if errs := rec.all(); len(errs) != 0 {
			t.Errorf("error handler saw %v; INVALID_ARGUMENT must be returned, not swallowed", errs)
		}
	})
	t.Run("fail closed", func(t *testing.T) {
		_, err := failClosed.IsOccupied(t.Context(), bad)
		wantCode(t, err, codes.InvalidArgument)
	})
	t.Run("publish", func(t *testing.T) {
		good := channelName(t, "job")
		_, err := failOpen.PublishIfOccupied(t.Context(), []string{good, bad}, "progress", "{}")
		wantCode(t, err, codes.InvalidArgument)
		if calls := callsFor(t, good); len(calls) != 0 {
			t.Errorf("got Pusher calls after a rejected publish: %+v", calls)
		}
	})
	t.Run("publish without channels", func(t *testing.T) {
		_, err := failOpen.PublishIfOccupied(t.Context(), nil, "progress", "{}")
		wantCode(t, err, codes.InvalidArgument)
	})
}

func TestStoppedGate(t *testing.T) {
	ch := channelName(t, "job")
	unreachable := []codes.Code{codes.Unavailable, codes.DeadlineExceeded}

	t.Run("fail open answers occupied and reports the error", func(t *testing.T) {
		rec := &errorRecorder{}
		c := newClient(t, env.deadAddr, occupancy.WithErrorHandler(rec.handle))
		occupied, err := c.IsOccupied(t.Context(), ch)
		if err != nil || !occupied {
			t.Fatalf("IsOccupied = %v, %v; want true, nil", occupied, err)
		}
		errs := rec.all()
		if len(errs) != 1 {
			t.Fatalf("error handler saw %d errors, want 1: %v", len(errs), errs)
		}
		wantCode(t, errs[0], unreachable...)
	})
	t.Run("fail open with no handler", func(t *testing.T) {
		c := newClient(t, env.deadAddr, occupancy.WithErrorHandler(nil))
		occupied, err := c.IsOccupied(t.Context(), ch)
		if err != nil || !occupied {
			t.Fatalf("IsOccupied = %v, %v; want true, nil", occupied, err)
		}
	})
	t.Run("fail closed returns the error", func(t *testing.T) {
		c := newClient(t, env.deadAddr, occupancy.WithFailClosed())
		occupied, err := c.IsOccupied(t.Context(), ch)
		wantCode(t, err, unreachable...)
		if occupied {
			t.Errorf("IsOccupied returned true alongside an error")
		}
	})
	t.Run("publish returns the error", func(t *testing.T) {
		c := newClient(t, env.deadAddr)
		_, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", "{}")
		wantCode(t, err, unreachable...)
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

func TestTimeoutsBoundEachCall(t *testing.T) {
	addr := hungGate(t)
	const timeout = 300 * time.Millisecond
	// Generous: the point is that the call ends near its deadline, not after
	// gRPC's 20 s connect timeout.
	const slack = 3 * time.Second

	t.Run("check fails closed with DEADLINE_EXCEEDED", func(t *testing.T) {
		c := newClient(t, addr, occupancy.WithFailClosed(), occupancy.WithTimeout(timeout))
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
		c := newClient(t, addr, occupancy.WithTimeout(timeout), occupancy.WithErrorHandler(rec.handle))
		occupied, err := c.IsOccupied(t.Context(), channelName(t, "job"))
		if err != nil || !occupied {
			t.Fatalf("IsOccupied = %v, %v; want true, nil", occupied, err)
		}
		if errs := rec.all(); len(errs) != 1 || status.Code(errs[0]) != codes.DeadlineExceeded {
			t.Fatalf("error handler saw %v, want one DEADLINE_EXCEEDED", errs)
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

func TestCallerCancellationIsReturnedEvenWhenFailingOpen(t *testing.T) {
	rec := &errorRecorder{}
	c := newClient(t, env.addr, occupancy.WithErrorHandler(rec.handle))
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
		t.Errorf("error handler saw %v, want nothing", errs)
	}
}

func TestClientIsSafeForConcurrentUse(t *testing.T) {
	c := newClient(t, env.addr, occupancy.WithFailClosed())
	occ, vac := channelName(t, "job-a"), channelName(t, "job-b")
	sendWebhook(t, "channel_occupied", occ)

	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		ch, want := occ, true
		if i%2 == 1 {
			ch, want = vac, false
		}
		wg.Go(func() {
			got, err := c.IsOccupied(t.Context(), ch)
			if err != nil {
				errs <- err
			} else if got != want {
				errs <- fmt.Errorf("IsOccupied(%s) = %v, want %v", ch, got, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, opt := range map[string]occupancy.Option{
		"zero timeout":             occupancy.WithTimeout(0),
		"negative publish timeout": occupancy.WithPublishTimeout(-time.Second),
	} {
		t.Run(name, func(t *testing.T) {
			if c, err := occupancy.New(env.addr, opt); err == nil {
				_ = c.Close()
				t.Fatalf("New accepted %s", name)
			}
		})
	}
}

func TestCallsAfterCloseFail(t *testing.T) {
	c, err := occupancy.New(env.addr, occupancy.WithFailClosed())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = c.IsOccupied(t.Context(), channelName(t, "job"))
	wantCode(t, err, codes.Canceled)
}
