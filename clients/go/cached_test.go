package occupancy_test

// Cached mode: a local copy kept by WatchOccupancy, against the real gate.

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	occupancy "github.com/occupancy/occupancy/clients/go"
	"github.com/occupancy/occupancy/clients/go/occupancypb"
)

// How long a webhook may take to reach a cached client's local copy.
const propagation = 5 * time.Second

func TestCachedFollowsWebhooks(t *testing.T) {
	before := channelName(t, "job-before")
	sendWebhook(t, "channel_occupied", before) // in the snapshot

	proxy := startGRPCProxy(t, env.addr)
	c := newClient(t, proxy.addr, occupancy.WithCached(), occupancy.WithFailOpen(false))
	// The first check waits for the subscription to synchronise (at most
	// the check timeout), so it already knows the snapshot.
	mustOccupied(t, c, before, true)

	ch := channelName(t, "job")
	mustOccupied(t, c, ch, false)
	sendWebhook(t, "channel_occupied", ch)
	eventuallyOccupied(t, c, ch, true, propagation)
	sendWebhook(t, "channel_vacated", ch)
	eventuallyOccupied(t, c, ch, false, propagation)
	sendWebhook(t, "channel_vacated", before)
	eventuallyOccupied(t, c, before, false, propagation)

	// Answers come from the local copy: no IsOccupied call reached the gate,
	// and one subscription served them all.
	for range 100 {
		mustOccupied(t, c, ch, false)
	}
	if n := len(proxy.callsTo("IsOccupied")); n != 0 {
		t.Errorf("cached mode made %d IsOccupied calls, want 0", n)
	}
	if n := len(proxy.callsTo("WatchOccupancy")); n != 1 {
		t.Errorf("cached mode subscribed %d times, want 1", n)
	}
	// Publishing still goes through the gate.
	sendWebhook(t, "channel_occupied", ch)
	eventuallyOccupied(t, c, ch, true, propagation)
	res, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", "{}")
	if err != nil || len(res.Published) != 1 {
		t.Fatalf("PublishIfOccupied in cached mode = %+v, %v", res, err)
	}
}

func TestCachedSurvivesAGateRestart(t *testing.T) {
	harness := requireEnv(t, "OCCUPANCY_HARNESS_URL")
	c := newClient(t, env.addr, occupancy.WithCached(), occupancy.WithFailOpen(false))
	plain := newClient(t, env.addr, occupancy.WithFailOpen(false))
	ch := channelName(t, "job")
	sendWebhook(t, "channel_occupied", ch)
	eventuallyOccupied(t, c, ch, true, propagation)

	postJSON(t, harness+"/restart-gate", map[string]any{})

	after := channelName(t, "job-after")
	sendWebhook(t, "channel_occupied", after)
	eventuallyOccupied(t, c, after, true, 10*time.Second)
	mustOccupied(t, c, ch, true) // the resubscription's snapshot still has it
	// A plain client is back too, on its reconnect backoff.
	eventuallyOccupied(t, plain, after, true, 5*time.Second)
}

// The subscription carries the client's app_id, token and metadata.
func TestCachedSubscriptionRequest(t *testing.T) {
	proxy := startGRPCProxy(t, env.addr)
	c := newClient(t, proxy.addr, occupancy.WithCached(), occupancy.WithAppID(env.appID),
		occupancy.WithToken("tok"), occupancy.WithMetadata("x-tenant", "acme"), occupancy.WithFailOpen(false))
	_, _ = c.IsOccupied(t.Context(), channelName(t, "job"))
	eventually(t, 2*time.Second, func() error {
		if len(proxy.callsTo("WatchOccupancy")) == 0 || len(proxy.callsTo("WatchOccupancy")[0].requests) == 0 {
			return errors.New("no WatchOccupancy request seen")
		}
		return nil
	})
	call := proxy.callsTo("WatchOccupancy")[0]
	var req occupancypb.WatchOccupancyRequest
	if err := proto.Unmarshal(call.requests[0], &req); err != nil {
		t.Fatal(err)
	}
	if req.GetAppId() != env.appID {
		t.Errorf("WatchOccupancy app_id = %q, want %q", req.GetAppId(), env.appID)
	}
	if got := call.md.Get("authorization"); len(got) != 1 || got[0] != "Bearer tok" {
		t.Errorf("WatchOccupancy authorization = %v", got)
	}
	if got := call.md.Get("x-tenant"); len(got) != 1 || got[0] != "acme" {
		t.Errorf("WatchOccupancy x-tenant = %v", got)
	}
}

// While not synchronised, cached mode answers what the failure policy
// answers for an outage.
func TestCachedNotSynchronised(t *testing.T) {
	ch := channelName(t, "job")
	t.Run("fail open answers true and the error reaches the hook", func(t *testing.T) {
		rec := &errorRecorder{}
		c := newClient(t, env.deadAddr, occupancy.WithCached(), occupancy.WithOnError(rec.handle))
		occupied, err := c.IsOccupied(t.Context(), ch)
		if err != nil || !occupied {
			t.Fatalf("IsOccupied = %v, %v; want true, nil", occupied, err)
		}
		errs := rec.all()
		if len(errs) != 1 {
			t.Fatalf("the hook saw %v, want one error", errs)
		}
		wantCode(t, errs[0], codes.Unavailable)
	})
	t.Run("fail open off returns UNAVAILABLE", func(t *testing.T) {
		c := newClient(t, env.deadAddr, occupancy.WithCached(), occupancy.WithFailOpen(false))
		start := time.Now()
		occupied, err := c.IsOccupied(t.Context(), ch)
		wantCode(t, err, codes.Unavailable)
		if occupied {
			t.Errorf("answered true alongside the error")
		}
		if took := time.Since(start); took > occupancy.DefaultCheckTimeout+500*time.Millisecond {
			t.Errorf("took %v, want at most the check timeout", took)
		}
	})
	t.Run("a stuck gate: the check waits at most its timeout", func(t *testing.T) {
		c := newClient(t, hungGate(t), occupancy.WithCached(), occupancy.WithFailOpen(false),
			occupancy.WithCheckTimeout(300*time.Millisecond))
		start := time.Now()
		_, err := c.IsOccupied(t.Context(), ch)
		wantCode(t, err, codes.Unavailable)
		if took := time.Since(start); took < 300*time.Millisecond || took > 1500*time.Millisecond {
			t.Errorf("took %v, want about 300 ms", took)
		}
	})
	t.Run("a non-outage status is returned even failing open", func(t *testing.T) {
		rec := &errorRecorder{}
		c := newClient(t, notTheGate(t), occupancy.WithCached(), occupancy.WithOnError(rec.handle))
		occupied, err := c.IsOccupied(t.Context(), ch)
		wantCode(t, err, codes.Unimplemented)
		if occupied {
			t.Errorf("answered true alongside UNIMPLEMENTED")
		}
		if errs := rec.all(); len(errs) != 0 {
			t.Errorf("the hook saw %v, want nothing", errs)
		}
	})
	t.Run("UNAUTHENTICATED from the secure gate", func(t *testing.T) {
		addr := requireEnv(t, "OCCUPANCY_SECURE_ADDR")
		ca := requireEnv(t, "OCCUPANCY_TLS_CA")
		c := newClient(t, addr, occupancy.WithCached(), occupancy.WithCAFile(ca))
		_, err := c.IsOccupied(t.Context(), ch)
		wantCode(t, err, codes.Unauthenticated)
	})
}

// A broken subscription is retried after 100 ms, doubling to at most 2 s.
// In front of a stopped gate, a proxy answers each attempt UNAVAILABLE (as a
// load balancer would) and records when it came.
func TestCachedResubscribeBackoff(t *testing.T) {
	t.Parallel()
	proxy := startGRPCProxy(t, env.deadAddr)
	c := newClient(t, proxy.addr, occupancy.WithCached(), occupancy.WithOnError(func(error) {}))
	_, _ = c.IsOccupied(t.Context(), channelName(t, "job"))
	time.Sleep(8 * time.Second)
	calls := proxy.callsTo("WatchOccupancy")
	if len(calls) < 6 {
		t.Fatalf("%d subscription attempts in 8 s, want at least 6", len(calls))
	}
	var gaps []time.Duration
	for i := 1; i < len(calls); i++ {
		gaps = append(gaps, calls[i].at.Sub(calls[i-1].at))
	}
	t.Logf("gaps between attempts: %v", gaps)
	want := occupancy.ResubscribeMinDelay
	for i, gap := range gaps {
		if gap < want-20*time.Millisecond || gap > want+400*time.Millisecond {
			t.Errorf("gap %d = %v, want about %v", i, gap, want)
		}
		want = min(2*want, occupancy.MaxReconnectDelay)
	}
	if last := gaps[len(gaps)-1]; last < 1500*time.Millisecond {
		t.Errorf("last gap %v: the backoff did not grow to 2 s", last)
	}
}

// Close ends the subscription: its goroutine (and gRPC's) are gone.
func TestCachedCloseLeaksNoGoroutine(t *testing.T) {
	warm := newClient(t, env.addr, occupancy.WithCached())
	_, _ = warm.IsOccupied(t.Context(), "warm-up")
	_ = warm.Close()
	time.Sleep(200 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	for _, target := range []string{env.addr, env.deadAddr} {
		c, err := occupancy.New(target, occupancy.WithCached(), occupancy.WithOnError(func(error) {}))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.IsOccupied(t.Context(), channelName(t, "job"))
		time.Sleep(300 * time.Millisecond) // subscribed, or between attempts
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > baseline {
			buf := make([]byte, 1<<16)
			return fmt.Errorf("%d goroutines after Close, %d before:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}
