package occupancy_test

// The shipped Fake, tested as a product: it behaves like the real client
// for the code under an encoder team's tests.

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	occupancy "github.com/occupancy/occupancy/clients/go"
)

func TestFakeAnswersWhatItIsTold(t *testing.T) {
	fake := occupancy.NewFake("a")
	mustOccupied(t, fake, "a", true)
	mustOccupied(t, fake, "b", false)
	fake.SetOccupied("b", "c")
	mustOccupied(t, fake, "b", true)
	fake.SetVacant("a", "b")
	mustOccupied(t, fake, "a", false)
	mustOccupied(t, fake, "b", false)
	mustOccupied(t, fake, "c", true)
}

func TestFakeRecordsPublishes(t *testing.T) {
	fake := occupancy.NewFake("live-1", "live-2")
	res, err := fake.PublishIfOccupied(t.Context(), []string{"dead", "live-2", "live-1", "live-2"}, "progress", `{"pct":1}`, occupancy.WithSocketID("1.2"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Published, []string{"live-2", "live-1"}) || !slices.Equal(res.Skipped, []string{"dead"}) {
		t.Fatalf("result %+v, want published [live-2 live-1] (duplicates once, in order), skipped [dead]", res)
	}
	res, err = fake.PublishIfOccupied(t.Context(), []string{"dead"}, "done", "{}")
	if err != nil {
		t.Fatal(err)
	}
	if res.Published == nil || len(res.Published) != 0 {
		t.Fatalf("published %#v, want an empty non-nil slice", res.Published)
	}
	got := fake.Publishes()
	if len(got) != 2 {
		t.Fatalf("Publishes() has %d entries, want 2", len(got))
	}
	first := got[0]
	if first.Event != "progress" || first.Data != `{"pct":1}` || first.SocketID != "1.2" ||
		!slices.Equal(first.Channels, []string{"dead", "live-2", "live-1", "live-2"}) {
		t.Errorf("first publish recorded as %+v", first)
	}
	if got[1].SocketID != "" || got[1].Event != "done" {
		t.Errorf("second publish recorded as %+v", got[1])
	}
	if d := fake.Published("live-1"); !slices.Equal(d, []string{`{"pct":1}`}) {
		t.Errorf("Published(live-1) = %v", d)
	}
	if d := fake.Published("dead"); len(d) != 0 {
		t.Errorf("Published(dead) = %v, want nothing", d)
	}
}

// The Fake's checks are the real client's, with the same error.
func TestFakeChecksLikeTheClient(t *testing.T) {
	fake := occupancy.NewFake()
	real := newClient(t, env.deadAddr) // never reached: refused locally
	for name, bad := range badChannels {
		_, fakeErr := fake.IsOccupied(t.Context(), bad)
		_, realErr := real.IsOccupied(t.Context(), bad)
		wantCode(t, fakeErr, codes.InvalidArgument)
		if fakeErr.Error() != realErr.Error() {
			t.Errorf("%s: fake says %q, client says %q", name, fakeErr, realErr)
		}
	}
	for name, args := range map[string]struct {
		channels    []string
		event, data string
	}{
		"no channels":   {nil, "e", ""},
		"101 channels":  {manyChannels(101), "e", ""},
		"empty event":   {[]string{"a"}, "", ""},
		"long event":    {[]string{"a"}, strings.Repeat("e", 201), ""},
		"too much data": {[]string{"a"}, "e", strings.Repeat("d", 10241)},
		"bad channel":   {[]string{"a", "b c"}, "e", ""},
	} {
		_, fakeErr := fake.PublishIfOccupied(t.Context(), args.channels, args.event, args.data)
		_, realErr := real.PublishIfOccupied(t.Context(), args.channels, args.event, args.data)
		wantCode(t, fakeErr, codes.InvalidArgument)
		if fakeErr.Error() != realErr.Error() {
			t.Errorf("%s: fake says %q, client says %q", name, fakeErr, realErr)
		}
	}
	if n := len(fake.Publishes()); n != 0 {
		t.Errorf("refused publishes were recorded: %d", n)
	}
}

func TestFakeFailWith(t *testing.T) {
	fake := occupancy.NewFake("a").WithPolicy(occupancy.WithFailOpen(false))
	down := &occupancy.Error{Code: codes.Unavailable, Message: "gate down"}
	fake.FailWith(down)
	if _, err := fake.IsOccupied(t.Context(), "a"); status.Code(err) != codes.Unavailable {
		t.Errorf("IsOccupied = %v, want UNAVAILABLE", err)
	}
	if _, err := fake.PublishIfOccupied(t.Context(), []string{"a"}, "e", ""); !errors.Is(err, down) {
		t.Errorf("PublishIfOccupied = %v, want the injected error", err)
	}
	if _, err := fake.IsOccupied(t.Context(), "bad name"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a bad name with an injected error = %v, want INVALID_ARGUMENT first", err)
	}
	fake.FailWith(nil)
	mustOccupied(t, fake, "a", true)
}

func TestFakeClose(t *testing.T) {
	var gate occupancy.Gate = occupancy.NewFake("a")
	if err := gate.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gate.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if ok, err := gate.IsOccupied(t.Context(), "a"); ok || !errors.Is(err, occupancy.ErrClosed) {
		t.Errorf("IsOccupied after Close = %v, %v; want false, ErrClosed", ok, err)
	}
	if _, err := gate.PublishIfOccupied(t.Context(), []string{"a"}, "e", ""); !errors.Is(err, occupancy.ErrClosed) {
		t.Errorf("PublishIfOccupied after Close = %v, want ErrClosed", err)
	}
}

// The Fake is safe for concurrent use (run with -race to see it).
func TestFakeConcurrentUse(t *testing.T) {
	fake := occupancy.NewFake()
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 100 {
				ch := "c" + string(rune('a'+i))
				if j%2 == 0 {
					fake.SetOccupied(ch)
				} else {
					fake.SetVacant(ch)
				}
				_, _ = fake.IsOccupied(t.Context(), ch)
				_, _ = fake.PublishIfOccupied(t.Context(), []string{ch}, "e", "")
			}
		}()
	}
	for range 8 {
		<-done
	}
	if n := len(fake.Publishes()); n != 800 {
		t.Errorf("recorded %d publishes, want 800", n)
	}
}
