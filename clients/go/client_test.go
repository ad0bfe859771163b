package occupancy_test

// The basic answers of the real gate: checks follow webhooks, publishes go
// only to occupied channels.

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	occupancy "github.com/occupancy/occupancy/clients/go"
)

func TestIsOccupiedFollowsWebhooks(t *testing.T) {
	c := newClient(t, env.addr, occupancy.WithFailOpen(false))
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

func TestClientIsSafeForConcurrentUse(t *testing.T) {
	c := newClient(t, env.addr, occupancy.WithFailOpen(false))
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
