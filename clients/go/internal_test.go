package occupancy

// Unit tests of the parts whose promises cannot be reached through the real
// gate in reasonable time: the default hook's 30 s window (with a fake
// clock) and the failure policy for codes the real gate never answers to a
// check.

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestWarnerCountsSwallowedErrorsPer30Seconds(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	w := newWarner()
	w.now = func() time.Time { return now }
	w.log = func() *slog.Logger { return slog.New(slog.NewTextHandler(&buf, nil)) }
	err := &Error{Code: codes.Unavailable, Message: "down"}

	w.handle(err) // warns: the first
	for range 9 {
		now = now.Add(time.Second)
		w.handle(err) // quiet: within 30 s
	}
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings within 30 s, want 1:\n%s", n, buf.String())
	}
	now = now.Add(WarnInterval) // 30 s after the first warning
	w.handle(err)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 warnings, got:\n%s", buf.String())
	}
	if !strings.Contains(lines[0], "swallowed_since_last_warning=1") {
		t.Errorf("first warning %q should count 1", lines[0])
	}
	if !strings.Contains(lines[1], "swallowed_since_last_warning=10") {
		t.Errorf("second warning %q should count the 9 quiet errors and this one", lines[1])
	}
}

func TestIsOutage(t *testing.T) {
	outage := map[codes.Code]bool{codes.Unavailable: true, codes.DeadlineExceeded: true, codes.ResourceExhausted: true}
	for code := codes.OK + 1; code <= codes.Unauthenticated; code++ {
		err := &Error{Code: code, Message: "m"}
		if got := IsOutage(err); got != outage[code] {
			t.Errorf("IsOutage(%v) = %v, want %v", code, got, outage[code])
		}
		if got := IsOutage(fmt.Errorf("wrapped: %w", status.Error(code, "m"))); got != outage[code] {
			t.Errorf("IsOutage(wrapped status %v) = %v", code, got)
		}
	}
	if IsOutage(nil) || IsOutage(ErrClosed) || IsOutage(errors.New("plain")) {
		t.Errorf("IsOutage is true for nil, ErrClosed or a plain error")
	}
}

// The policy applied to every code: only an outage is swallowed.
func TestFailurePolicyForEveryCode(t *testing.T) {
	for code := codes.OK + 1; code <= codes.Unauthenticated; code++ {
		var seen []error
		c := &Client{failOpen: true, onError: func(err error) { seen = append(seen, err) }}
		err := &Error{Code: code, Message: "m"}
		occupied, got := c.failurePolicy(err)
		if IsOutage(err) {
			if !occupied || got != nil || len(seen) != 1 {
				t.Errorf("%v fail-open: %v, %v, hook %v; want true, nil, hook called", code, occupied, got, seen)
			}
		} else if occupied || got != err || len(seen) != 0 {
			t.Errorf("%v fail-open: %v, %v, hook %v; want false, the error, hook not called", code, occupied, got, seen)
		}
		closed := &Client{failOpen: false, onError: func(err error) { seen = append(seen, err) }}
		if occupied, got := closed.failurePolicy(err); occupied || got != err {
			t.Errorf("%v fail-open off: %v, %v; want false, the error", code, occupied, got)
		}
	}
}
