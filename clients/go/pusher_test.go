package occupancy_test

// Errors from Pusher reach the caller with the status the gate maps them to
// (proto/occupancy/v1/occupancy.proto), through the real gate and the
// Pusher stand-in's /_stub/behaviour.

import (
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	occupancy "github.com/occupancy/occupancy/clients/go"
)

func TestPusherErrorsReachTheCaller(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		delay  time.Duration
		want   codes.Code
	}{
		{"403 is PERMISSION_DENIED", http.StatusForbidden, 0, codes.PermissionDenied},
		{"429 is RESOURCE_EXHAUSTED", http.StatusTooManyRequests, 0, codes.ResourceExhausted},
		{"500 is UNAVAILABLE", http.StatusInternalServerError, 0, codes.Unavailable},
		{"503 is UNAVAILABLE", http.StatusServiceUnavailable, 0, codes.Unavailable},
		// 4 s is over the gate's 3 s Pusher timeout and under the client's 5 s.
		{"timeout is DEADLINE_EXCEEDED", http.StatusOK, 4 * time.Second, codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ch := channelName(t, "job")
			sendWebhook(t, "channel_occupied", ch)
			setPusherBehaviour(t, ch, tc.status, `{"error":"from the test"}`, tc.delay)

			rec := &errorRecorder{}
			c := newClient(t, env.addr, occupancy.WithOnError(rec.handle))
			start := time.Now()
			_, err := c.PublishIfOccupied(t.Context(), []string{ch}, "progress", `{"pct":1}`)
			oe := wantCode(t, err, tc.want)
			if tc.delay > 0 && time.Since(start) >= occupancy.DefaultPublishTimeout {
				t.Errorf("the gate's DEADLINE_EXCEEDED took %v: the client's own deadline fired first", time.Since(start))
			}
			t.Logf("caller sees %v", oe)
			if errs := rec.all(); len(errs) != 0 {
				t.Errorf("publish errors reached the hook: %v", errs)
			}
			if calls := callsFor(t, ch); len(calls) != 1 {
				t.Errorf("Pusher saw %d calls for %s, want 1", len(calls), ch)
			}
			// The check is unaffected: it never talks to Pusher.
			mustOccupied(t, c, ch, true)
		})
	}
}
