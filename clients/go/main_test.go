package occupancy_test

// These tests run against the real occupancy gate, a real Redis and a Pusher
// stand-in, all started by the Rust harness (see clients/CONTRACT.md):
//
//	cd <repo root> && cargo test --test clients -- go
//
// This file holds the environment and the helpers shared by the suite.

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
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	occupancy "github.com/occupancy/occupancy/clients/go"
)

var env struct {
	addr, webhookURL, key, secret, stubURL, deadAddr, appID string
}

func TestMain(m *testing.M) {
	vars := map[string]*string{
		"OCCUPANCY_ADDR":        &env.addr,
		"OCCUPANCY_WEBHOOK_URL": &env.webhookURL,
		"TEST_PUSHER_APP_ID":    &env.appID,
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

// requireEnv returns a variable the harness provides for some tests only
// (the secure gate, the restart endpoint). A missing one fails the test: a
// test that skips silently proves nothing.
func requireEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: the harness (tests/clients.rs) must provide it, see clients/CONTRACT.md", name)
	}
	return v
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

// lastWebhookMs makes every webhook's time_ms strictly larger than the
// previous one's, since the gate ignores an event older than the last one
// applied to its channel.
var lastWebhookMs atomic.Int64

func webhookTime() int64 {
	for {
		last := lastWebhookMs.Load()
		next := max(time.Now().UnixMilli(), last+1)
		if lastWebhookMs.CompareAndSwap(last, next) {
			return next
		}
	}
}

// sendWebhook posts a Pusher webhook, signed as Pusher signs it, to the gate.
func sendWebhook(t *testing.T, name, channel string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"time_ms": webhookTime(),
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

// postJSON posts body as JSON and fails the test unless the answer is 200.
func postJSON(t *testing.T, url string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s: HTTP %d: %s", url, resp.StatusCode, msg)
	}
}

// setPusherBehaviour makes the Pusher stand-in answer every later trigger
// naming channel with status and body, after delay.
func setPusherBehaviour(t *testing.T, channel string, status int, body string, delay time.Duration) {
	t.Helper()
	postJSON(t, env.stubURL+"/_stub/behaviour", map[string]any{
		"channel":  channel,
		"status":   status,
		"body":     body,
		"delay_ms": delay.Milliseconds(),
	})
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

// errorRecorder is an error hook that keeps what it is given.
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
// errors.As and by status.Code, also when wrapped.
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

func mustOccupied(t *testing.T, c occupancy.Gate, channel string, want bool) {
	t.Helper()
	got, err := c.IsOccupied(t.Context(), channel)
	if err != nil {
		t.Fatalf("IsOccupied(%q): %v", channel, err)
	}
	if got != want {
		t.Fatalf("IsOccupied(%q) = %v, want %v", channel, got, want)
	}
}

// eventually polls check every 50 ms until it returns nil or timeout passes,
// and then fails with its last error.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventuallyOccupied waits until c answers want for channel.
func eventuallyOccupied(t *testing.T, c occupancy.Gate, channel string, want bool, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		got, err := c.IsOccupied(t.Context(), channel)
		if err != nil {
			return fmt.Errorf("IsOccupied(%q): %w", channel, err)
		}
		if got != want {
			return fmt.Errorf("IsOccupied(%q) = %v, want %v", channel, got, want)
		}
		return nil
	})
}

// freeAddr returns a local address where nothing listens right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// tcpProxy forwards TCP connections from a local listener to backend,
// counting the bytes each way, so tests can watch what the client sends on
// the wire. listen may name the address to listen on ("" for any port).
type tcpProxy struct {
	addr     string
	accepted atomic.Int64 // connections accepted
	up, down atomic.Int64 // bytes client->backend, backend->client
	// While broken is set, connections are accepted and closed at once (a
	// gate that cannot serve), and the times of those attempts are kept.
	broken   atomic.Bool
	mu       sync.Mutex
	attempts []time.Time
}

// brokenAttempts returns the times of the connections closed while broken.
func (p *tcpProxy) brokenAttempts() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.attempts)
}

func startTCPProxy(t *testing.T, listen, backend string) *tcpProxy {
	t.Helper()
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			if p.broken.Load() {
				p.mu.Lock()
				p.attempts = append(p.attempts, time.Now())
				p.mu.Unlock()
				_ = in.Close()
				continue
			}
			out, err := net.Dial("tcp", backend)
			if err != nil {
				_ = in.Close()
				continue
			}
			track(in)
			track(out)
			copyCounting := func(dst, src net.Conn, n *atomic.Int64) {
				buf := make([]byte, 32*1024)
				for {
					k, err := src.Read(buf)
					if k > 0 {
						n.Add(int64(k))
						if _, werr := dst.Write(buf[:k]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				_ = dst.Close()
				_ = src.Close()
			}
			wg.Go(func() { copyCounting(out, in, &p.up) })
			wg.Go(func() { copyCounting(in, out, &p.down) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

// rawFrame carries one gRPC message through the recording proxy unparsed.
type rawFrame struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.(*rawFrame).b, nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	v.(*rawFrame).b = slices.Clone(data)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// proxiedCall is one call seen by the recording proxy.
type proxiedCall struct {
	at       time.Time
	method   string
	md       metadata.MD
	requests [][]byte // the client's messages, serialized
}

// grpcProxy is a gRPC proxy in front of a gate that records every call (its
// metadata and request messages, as they went over the wire) and forwards
// it unchanged, so the answers still come from the real gate (or, in front
// of a stopped gate, are its UNAVAILABLE, as from a load balancer).
type grpcProxy struct {
	addr  string
	mu    sync.Mutex
	calls []*proxiedCall
}

func startGRPCProxy(t *testing.T, backend string) *grpcProxy {
	t.Helper()
	upstream, err := grpc.NewClient(backend, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p := &grpcProxy{}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		md, _ := metadata.FromIncomingContext(ss.Context())
		call := &proxiedCall{at: time.Now(), method: method, md: md.Copy()}
		p.mu.Lock()
		p.calls = append(p.calls, call)
		p.mu.Unlock()

		fwd := md.Copy()
		for _, k := range []string{"user-agent", "content-type", ":authority"} {
			delete(fwd, k)
		}
		ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ss.Context(), fwd))
		defer cancel()
		cs, err := upstream.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(rawCodec{}))
		if err != nil {
			return err
		}
		go func() {
			for {
				f := &rawFrame{}
				if err := ss.RecvMsg(f); err != nil {
					_ = cs.CloseSend()
					return
				}
				p.mu.Lock()
				call.requests = append(call.requests, f.b)
				p.mu.Unlock()
				if err := cs.SendMsg(f); err != nil {
					return
				}
			}
		}()
		for {
			f := &rawFrame{}
			err := cs.RecvMsg(f)
			if err != nil {
				ss.SetTrailer(cs.Trailer())
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if err := ss.SendMsg(f); err != nil {
				return err
			}
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		_ = upstream.Close()
	})
	return p
}

// callsTo returns the recorded calls of one method ("IsOccupied", ...).
func (p *grpcProxy) callsTo(method string) []proxiedCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []proxiedCall
	for _, c := range p.calls {
		if c.method == "/occupancy.v1.Occupancy/"+method {
			cp := *c
			cp.requests = slices.Clone(c.requests)
			out = append(out, cp)
		}
	}
	return out
}
