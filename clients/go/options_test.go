package occupancy_test

// Construction and the call options: target, TLS, token, metadata,
// keepalive, app_id, timeouts, dial options.

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	occupancy "github.com/occupancy/occupancy/clients/go"
	"github.com/occupancy/occupancy/clients/go/occupancypb"
)

func TestTargetFromEnvironment(t *testing.T) {
	t.Run("OCCUPANCY_ADDR when no target is given", func(t *testing.T) {
		c := newClient(t, "", occupancy.WithFailOpen(false))
		if c.Target() != env.addr {
			t.Fatalf("Target() = %q, want OCCUPANCY_ADDR %q", c.Target(), env.addr)
		}
		ch := channelName(t, "job")
		sendWebhook(t, "channel_occupied", ch)
		mustOccupied(t, c, ch, true)
	})
	t.Run("the argument wins", func(t *testing.T) {
		c := newClient(t, env.deadAddr)
		if c.Target() != env.deadAddr {
			t.Fatalf("Target() = %q, want %q", c.Target(), env.deadAddr)
		}
	})
	t.Run("neither is an error", func(t *testing.T) {
		t.Setenv("OCCUPANCY_ADDR", "")
		c, err := occupancy.New("")
		if err == nil {
			_ = c.Close()
			t.Fatal("New(\"\") without OCCUPANCY_ADDR succeeded")
		}
		if !strings.Contains(err.Error(), "OCCUPANCY_ADDR") {
			t.Errorf("error %q does not name OCCUPANCY_ADDR", err)
		}
	})
}

// New opens no connection; the first call does, and every later call reuses
// it.
func TestOneConnectionOpenedOnFirstUse(t *testing.T) {
	proxy := startTCPProxy(t, "", env.addr)
	c := newClient(t, proxy.addr, occupancy.WithFailOpen(false))
	time.Sleep(200 * time.Millisecond)
	if n := proxy.accepted.Load(); n != 0 {
		t.Fatalf("New opened %d connections, want 0", n)
	}
	ch := channelName(t, "job")
	for range 5 {
		mustOccupied(t, c, ch, false)
		if _, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", "{}"); err != nil {
			t.Fatal(err)
		}
	}
	if n := proxy.accepted.Load(); n != 1 {
		t.Fatalf("10 calls opened %d connections, want 1", n)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, opt := range map[string]occupancy.Option{
		"zero check timeout":       occupancy.WithCheckTimeout(0),
		"negative publish timeout": occupancy.WithPublishTimeout(-time.Second),
		"nil hook":                 occupancy.WithOnError(nil),
		"empty token":              occupancy.WithToken(""),
		"token with newline":       occupancy.WithToken("a\nb"),
		"keepalive below 10 s":     occupancy.WithKeepalive(time.Second),
		"empty metadata key":       occupancy.WithMetadata("", "v"),
		"missing CA file":          occupancy.WithCAFile(filepath.Join(dir, "missing.pem")),
		"CA file without PEM":      occupancy.WithCAFile(notPEM),
	} {
		t.Run(name, func(t *testing.T) {
			if c, err := occupancy.New(env.addr, opt); err == nil {
				_ = c.Close()
				t.Fatalf("New accepted %s", name)
			}
		})
	}
}

// Token, metadata and app_id travel on every call, as seen on the wire by a
// recording proxy in front of the real gate (which answers).
func TestTokenMetadataAndAppIDOnTheWire(t *testing.T) {
	proxy := startGRPCProxy(t, env.addr)
	c := newClient(t, proxy.addr,
		occupancy.WithFailOpen(false),
		occupancy.WithToken("s3cret"),
		occupancy.WithMetadata("X-Tenant", "acme"),
		occupancy.WithMetadata("x-trace", "t1"),
		occupancy.WithAppID(env.appID))
	ch := channelName(t, "job")
	sendWebhook(t, "channel_occupied", ch)
	mustOccupied(t, c, ch, true)
	res, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", "{}")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Published, []string{ch}) {
		t.Fatalf("published %v, want [%s]", res.Published, ch)
	}

	checks, publishes := proxy.callsTo("IsOccupied"), proxy.callsTo("PublishIfOccupied")
	if len(checks) != 1 || len(publishes) != 1 {
		t.Fatalf("proxy saw %d checks and %d publishes, want 1 and 1", len(checks), len(publishes))
	}
	for _, call := range []proxiedCall{checks[0], publishes[0]} {
		for key, want := range map[string]string{"authorization": "Bearer s3cret", "x-tenant": "acme", "x-trace": "t1"} {
			if got := call.md.Get(key); !slices.Equal(got, []string{want}) {
				t.Errorf("%s: metadata %s = %v, want [%s]", call.method, key, got, want)
			}
		}
	}
	var check occupancypb.IsOccupiedRequest
	if err := proto.Unmarshal(checks[0].requests[0], &check); err != nil {
		t.Fatal(err)
	}
	if check.GetAppId() != env.appID || check.GetChannel() != ch {
		t.Errorf("IsOccupied request = %v, want app_id %q", &check, env.appID)
	}
	var pub occupancypb.PublishIfOccupiedRequest
	if err := proto.Unmarshal(publishes[0].requests[0], &pub); err != nil {
		t.Fatal(err)
	}
	if pub.GetAppId() != env.appID {
		t.Errorf("PublishIfOccupied request = %v, want app_id %q", &pub, env.appID)
	}

	t.Run("none by default", func(t *testing.T) {
		proxy := startGRPCProxy(t, env.addr)
		c := newClient(t, proxy.addr, occupancy.WithFailOpen(false))
		mustOccupied(t, c, ch, true)
		call := proxy.callsTo("IsOccupied")[0]
		if got := call.md.Get("authorization"); len(got) != 0 {
			t.Errorf("authorization sent without WithToken: %v", got)
		}
		var req occupancypb.IsOccupiedRequest
		if err := proto.Unmarshal(call.requests[0], &req); err != nil {
			t.Fatal(err)
		}
		if req.GetAppId() != "" {
			t.Errorf("app_id = %q without WithAppID, want empty (the only app)", req.GetAppId())
		}
	})
}

// WithDialOptions reaches grpc.NewClient: an interceptor sees every call.
func TestDialOptions(t *testing.T) {
	var methods []string
	count := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		methods = append(methods, method)
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	c := newClient(t, env.addr, occupancy.WithDialOptions(count))
	mustOccupied(t, c, channelName(t, "job"), false)
	if !slices.Equal(methods, []string{"/occupancy.v1.Occupancy/IsOccupied"}) {
		t.Fatalf("interceptor saw %v", methods)
	}
}

// The secure gate serves the same state over TLS and requires a token.
func TestSecureGate(t *testing.T) {
	addr := requireEnv(t, "OCCUPANCY_SECURE_ADDR")
	ca := requireEnv(t, "OCCUPANCY_TLS_CA")
	token := requireEnv(t, "OCCUPANCY_TEST_TOKEN")
	oldToken := requireEnv(t, "OCCUPANCY_TEST_TOKEN_OLD")

	ch := channelName(t, "private-job")
	sendWebhook(t, "channel_occupied", ch)

	for name, tok := range map[string]string{"token": token, "old token (rotation)": oldToken} {
		t.Run("CA file and "+name, func(t *testing.T) {
			c := newClient(t, addr, occupancy.WithCAFile(ca), occupancy.WithToken(tok), occupancy.WithFailOpen(false))
			mustOccupied(t, c, ch, true)
			res, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", `{"secure":true}`)
			if err != nil || !slices.Equal(res.Published, []string{ch}) {
				t.Fatalf("PublishIfOccupied = %+v, %v", res, err)
			}
		})
	}
	t.Run("WithTransportCredentials overrides WithTLS", func(t *testing.T) {
		creds, err := credentials.NewClientTLSFromFile(ca, "")
		if err != nil {
			t.Fatal(err)
		}
		// WithTLS alone trusts only the system roots and fails (below).
		c := newClient(t, addr, occupancy.WithTLS(), occupancy.WithTransportCredentials(creds),
			occupancy.WithToken(token), occupancy.WithFailOpen(false))
		mustOccupied(t, c, ch, true)
	})
	t.Run("WithDialOptions are applied last", func(t *testing.T) {
		// The dial option's plaintext wins over WithCAFile's TLS.
		c := newClient(t, env.addr, occupancy.WithCAFile(ca), occupancy.WithFailOpen(false),
			occupancy.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
		mustOccupied(t, c, ch, true)
	})
	for name, opts := range map[string][]occupancy.Option{
		"no token":    nil,
		"wrong token": {occupancy.WithToken("not-" + token)},
	} {
		t.Run(name+" is UNAUTHENTICATED, returned even failing open", func(t *testing.T) {
			rec := &errorRecorder{}
			c := newClient(t, addr, append(opts, occupancy.WithCAFile(ca), occupancy.WithOnError(rec.handle))...)
			occupied, err := c.IsOccupied(t.Context(), ch)
			wantCode(t, err, codes.Unauthenticated)
			if occupied {
				t.Errorf("IsOccupied answered true alongside UNAUTHENTICATED")
			}
			_, err = c.PublishIfOccupied(t.Context(), []string{ch}, "progress", "{}")
			wantCode(t, err, codes.Unauthenticated)
			if errs := rec.all(); len(errs) != 0 {
				t.Errorf("the hook saw %v, want nothing", errs)
			}
		})
	}
	t.Run("system roots do not trust the test CA", func(t *testing.T) {
		c := newClient(t, addr, occupancy.WithTLS(), occupancy.WithToken(token), occupancy.WithFailOpen(false))
		_, err := c.IsOccupied(t.Context(), ch)
		oe := wantCode(t, err, codes.Unavailable)
		if !strings.Contains(oe.Message, "certificate") {
			t.Errorf("message %q does not mention the certificate", oe.Message)
		}
	})
	t.Run("plaintext to the TLS port is a transport error", func(t *testing.T) {
		c := newClient(t, addr, occupancy.WithToken(token), occupancy.WithFailOpen(false))
		_, err := c.IsOccupied(t.Context(), ch)
		wantCode(t, err, codes.Unavailable)
	})
}

// Keepalive pings keep flowing while no call is in flight; without the
// option the idle connection is silent.
func TestKeepalive(t *testing.T) {
	t.Parallel()
	withPing := startTCPProxy(t, "", env.addr)
	silent := startTCPProxy(t, "", env.addr)
	a := newClient(t, withPing.addr, occupancy.WithKeepalive(occupancy.MinKeepalive), occupancy.WithFailOpen(false))
	b := newClient(t, silent.addr, occupancy.WithFailOpen(false))
	ch := channelName(t, "job")
	mustOccupied(t, a, ch, false)
	mustOccupied(t, b, ch, false)
	time.Sleep(500 * time.Millisecond) // let the calls' last frames pass
	upA, upB := withPing.up.Load(), silent.up.Load()
	downA := withPing.down.Load()
	time.Sleep(occupancy.MinKeepalive + 2*time.Second)
	if withPing.up.Load() <= upA || withPing.down.Load() <= downA {
		t.Errorf("no keepalive ping (and answer) on an idle connection in %v", occupancy.MinKeepalive+2*time.Second)
	}
	if silent.up.Load() != upB {
		t.Errorf("the client without keepalive sent %d bytes while idle", silent.up.Load()-upB)
	}
	mustOccupied(t, a, ch, false) // the gate did not drop the pinging client
	if n := withPing.accepted.Load(); n != 1 {
		t.Errorf("the pinging client opened %d connections, want 1", n)
	}
}
