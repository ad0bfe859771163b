package occupancy

// Unit tests of the parts whose promises cannot be reached through the real
// gate in reasonable time: the default hook's 30 s window (with a fake
// clock), the failure policy for codes the real gate never answers to a
// check, and a RESET in the middle of a WatchOccupancy stream.

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/occupancy/occupancy/clients/go/occupancypb"
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

// The stream protocol, message by message, including a RESET in the middle
// of a stream (the gate starts over for a slow reader), which the real gate
// cannot be made to send on demand.
func TestWatcherFollowsTheStreamProtocol(t *testing.T) {
	w := &watcher{occupied: map[string]struct{}{}, changed: make(chan struct{})}
	msg := func(kind occupancypb.WatchOccupancyResponse_Kind, occupied, vacated []string) *occupancypb.WatchOccupancyResponse {
		return &occupancypb.WatchOccupancyResponse{Kind: kind, Occupied: occupied, Vacated: vacated}
	}
	state := func() (bool, []string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		var chans []string
		for ch := range w.occupied {
			chans = append(chans, ch)
		}
		slices.Sort(chans)
		return w.synced, chans
	}
	want := func(step string, synced bool, chans ...string) {
		t.Helper()
		gotSynced, got := state()
		if gotSynced != synced || !slices.Equal(got, chans) {
			t.Fatalf("after %s: synced=%v occupied=%v, want synced=%v occupied=%v", step, gotSynced, got, synced, chans)
		}
	}
	const (
		reset    = occupancypb.WatchOccupancyResponse_KIND_RESET
		snapshot = occupancypb.WatchOccupancyResponse_KIND_SNAPSHOT
		synced   = occupancypb.WatchOccupancyResponse_KIND_SYNCED
		change   = occupancypb.WatchOccupancyResponse_KIND_CHANGE
	)
	w.apply(msg(reset, nil, nil))
	w.apply(msg(snapshot, []string{"a", "b"}, nil))
	want("a snapshot", false, "a", "b")
	w.apply(msg(snapshot, []string{"c"}, nil))
	if !w.apply(msg(synced, nil, nil)) {
		t.Fatal("apply(SYNCED) = false")
	}
	want("SYNCED", true, "a", "b", "c")
	w.apply(msg(change, []string{"d"}, []string{"a"}))
	want("CHANGE", true, "b", "c", "d")
	w.apply(msg(occupancypb.WatchOccupancyResponse_Kind(99), []string{"x"}, nil))
	want("an unknown kind (ignored)", true, "b", "c", "d")
	changed := w.changed
	w.apply(msg(reset, nil, nil))
	want("a RESET mid-stream", false)
	select {
	case <-changed:
	default:
		t.Fatal("a RESET of a synchronised copy did not wake waiting checks")
	}
	w.apply(msg(snapshot, []string{"e"}, nil))
	w.apply(msg(synced, nil, nil))
	want("the new SYNCED", true, "e")
	w.broken(status.Error(codes.Unavailable, "gate shutting down"))
	want("a broken stream", false, "e")
	if w.lastErr == nil || w.lastErr.Code != codes.Unavailable {
		t.Fatalf("lastErr = %v, want UNAVAILABLE", w.lastErr)
	}
}
