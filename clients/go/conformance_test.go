package occupancy_test

// The five points every client says the same way (clients/CONTRACT.md,
// "Conformance"): the publish result's fields, the Fake's vocabulary and
// failure policy, WaitSynced, the closed error's type, AddressEnv.

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	occupancy "github.com/occupancy/occupancy/clients/go"
)

func TestConformancePublishResultFields(t *testing.T) {
	var fields []string
	for f := range reflect.TypeFor[occupancy.PublishResult]().Fields() {
		fields = append(fields, f.Name)
	}
	if want := []string{"Published", "Skipped", "Deferred", "Superseded", "StoreUnavailable"}; !slices.Equal(fields, want) {
		t.Errorf("PublishResult fields = %v, want %v", fields, want)
	}
	ch := channelName(t, "conf")
	sendWebhook(t, "channel_occupied", ch)
	c := newClient(t, env.addr)
	vacant := channelName(t, "conf-vacant")
	got, err := c.PublishIfOccupied(t.Context(), []string{ch, vacant}, "e", "{}")
	if err != nil {
		t.Fatal(err)
	}
	want := occupancy.PublishResult{Published: []string{ch}, Skipped: []string{vacant}, Deferred: []string{}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("gate answered %+v, want %+v", got, want)
	}
	fake := occupancy.NewFake("a")
	got, err = fake.PublishIfOccupied(t.Context(), []string{"a", "b"}, "e", "{}")
	want = occupancy.PublishResult{Published: []string{"a"}, Skipped: []string{"b"}, Deferred: []string{}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("fake answered %+v, %v; want %+v", got, err, want)
	}
}

func TestConformanceFakeVocabularyAndPolicy(t *testing.T) {
	var seen errorRecorder
	down := &occupancy.Error{Code: codes.Unavailable, Message: "down"}
	fake := occupancy.NewFake().WithPolicy(occupancy.WithOnError(seen.handle))
	fake.Occupy("a", "b")
	fake.Vacate("b")
	mustOccupied(t, fake, "a", true)
	mustOccupied(t, fake, "b", false)
	fake.FailWith(down)
	mustOccupied(t, fake, "b", true) // UNAVAILABLE fails open
	if errs := seen.all(); len(errs) != 1 || errs[0] != error(down) {
		t.Errorf("hook saw %v, want [%v]", errs, down)
	}
	_, err := fake.PublishIfOccupied(t.Context(), []string{"a"}, "e", "{}")
	wantCode(t, err, codes.Unavailable)
	strict := occupancy.NewFake("a").WithPolicy(occupancy.WithFailOpen(false))
	strict.FailWith(down)
	_, err = strict.IsOccupied(t.Context(), "a")
	wantCode(t, err, codes.Unavailable)
	fake.FailWith(&occupancy.Error{Code: codes.InvalidArgument, Message: "bad"})
	_, err = fake.IsOccupied(t.Context(), "a")
	wantCode(t, err, codes.InvalidArgument)
	fake.Recover()
	mustOccupied(t, fake, "b", false)
	if ok, err := fake.WaitSynced(t.Context()); !ok || err != nil {
		t.Errorf("Fake.WaitSynced = %v, %v; want true, nil", ok, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("WithPolicy(WithCached()) did not panic")
		}
	}()
	occupancy.NewFake().WithPolicy(occupancy.WithCached())
}

func TestConformanceWaitSynced(t *testing.T) {
	cached := newClient(t, env.addr, occupancy.WithCached(), occupancy.WithFailOpen(false))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if ok, err := cached.WaitSynced(ctx); !ok || err != nil {
		t.Fatalf("WaitSynced = %v, %v; want true, nil", ok, err)
	}
	dead := newClient(t, env.deadAddr, occupancy.WithCached(), occupancy.WithFailOpen(false))
	short, cancelShort := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancelShort()
	if ok, err := dead.WaitSynced(short); ok || err != nil {
		t.Errorf("WaitSynced on a stopped gate = %v, %v; want false, nil", ok, err)
	}
	_, err := newClient(t, env.addr).WaitSynced(t.Context())
	wantCode(t, err, codes.FailedPrecondition)
	_ = cached.Close()
	if _, err := cached.WaitSynced(t.Context()); !errors.Is(err, occupancy.ErrClosed) {
		t.Errorf("WaitSynced after Close = %v, want ErrClosed", err)
	}
}

func TestConformanceClosedErrorIsAnError(t *testing.T) {
	c := newClient(t, env.addr)
	_ = c.Close()
	fake := occupancy.NewFake()
	_ = fake.Close()
	for _, g := range []occupancy.Gate{c, fake} {
		_, err := g.IsOccupied(t.Context(), "a")
		if !errors.Is(err, occupancy.ErrClosed) {
			t.Errorf("%T after Close: %v, want ErrClosed", g, err)
		}
		wantCode(t, err, codes.Canceled)
		if errors.Is(err, context.Canceled) {
			t.Errorf("ErrClosed matches context.Canceled")
		}
	}
}

func TestConformanceAddressEnv(t *testing.T) {
	if occupancy.AddressEnv != "OCCUPANCY_ADDR" || occupancy.EnvAddr != occupancy.AddressEnv {
		t.Errorf("AddressEnv = %q, EnvAddr = %q", occupancy.AddressEnv, occupancy.EnvAddr)
	}
}
