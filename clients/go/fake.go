package occupancy

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
)

// Fake is an in-memory [Gate] for encoder teams' own unit tests: channels are
// marked occupied by hand (Occupy, Vacate), publishes are recorded, and
// channel names, event names and data are checked exactly as the real Client
// checks them (the same INVALID_ARGUMENT *Error). FailWith simulates an
// outage or a misconfiguration under the real client's failure policy
// (fail-open by default), until Recover. It makes no network call. It is
// safe for concurrent use; the zero value is not usable, call NewFake.
//
//	fake := occupancy.NewFake("private-job-42")
//	runEncoder(fake)                       // takes an occupancy.Gate
//	got := fake.Publishes()                // what the encoder published
type Fake struct {
	mu        sync.Mutex
	occupied  map[string]bool
	publishes []FakePublish
	err       error
	closed    bool
	failOpen  bool
	onError   func(error)
}

// FakePublish is one PublishIfOccupied call recorded by a Fake.
type FakePublish struct {
	Channels []string // as given
	Event    string
	Data     string
	SocketID string // from WithSocketID; empty when none
	Result   PublishResult
}

// NewFake returns a Fake in which the given channels are occupied, with the
// real client's default failure policy: fail-open, with the hook that logs at
// most once per WarnInterval. WithPolicy changes it.
func NewFake(occupied ...string) *Fake {
	f := &Fake{occupied: map[string]bool{}, failOpen: true, onError: newWarner().handle}
	f.Occupy(occupied...)
	return f
}

// WithPolicy sets the failure policy the Fake applies while FailWith is in
// force, with New's own options: WithFailOpen and WithOnError. Any other
// option is a mistake in the test and panics. It returns f.
func (f *Fake) WithPolicy(opts ...Option) *Fake {
	cfg := config{failOpen: true}
	for _, opt := range opts {
		opt(&cfg)
	}
	if len(cfg.errs) > 0 {
		panic(fmt.Sprintf("occupancy: Fake.WithPolicy: %v", cfg.errs))
	}
	rest := cfg
	rest.failOpen, rest.onError, rest.onErrorSet = true, nil, false
	if !reflect.DeepEqual(rest, config{failOpen: true}) {
		panic("occupancy: Fake.WithPolicy takes only WithFailOpen and WithOnError")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failOpen = cfg.failOpen
	if cfg.onErrorSet {
		f.onError = cfg.onError
	}
	return f
}

// Occupy marks channels occupied, as a channel_occupied webhook would.
func (f *Fake) Occupy(channels ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range channels {
		f.occupied[ch] = true
	}
}

// Vacate marks channels vacant, as a channel_vacated webhook would.
func (f *Fake) Vacate(channels ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range channels {
		delete(f.occupied, ch)
	}
}

// SetOccupied is the old name of Occupy.
//
// Deprecated: use Occupy, the name every client's fake uses.
func (f *Fake) SetOccupied(channels ...string) { f.Occupy(channels...) }

// SetVacant is the old name of Vacate.
//
// Deprecated: use Vacate, the name every client's fake uses.
func (f *Fake) SetVacant(channels ...string) { f.Vacate(channels...) }

// FailWith makes every later call that passes the local checks fail with err
// (for example &occupancy.Error{Code: codes.Unavailable, Message: "down"}),
// until Recover, under the real client's failure policy: IsOccupied answers
// true, nil for an outage (see IsOutage) when failing open, after handing err
// to the hook, and returns any other error; PublishIfOccupied always returns
// err. FailWith(nil) still ends a failure (deprecated: use Recover).
func (f *Fake) FailWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// Recover ends a failure set with FailWith.
func (f *Fake) Recover() {
	f.FailWith(nil)
}

// WaitSynced is Client.WaitSynced: the Fake's copy is always current, so it
// answers true, nil at once, and ErrClosed after Close.
func (f *Fake) WaitSynced(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false, ErrClosed
	}
	return true, nil
}

// Publishes returns the successful PublishIfOccupied calls so far, oldest
// first, including those that reached no occupied channel.
func (f *Fake) Publishes() []FakePublish {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.publishes)
}

// Published returns the events triggered so far on channel (the data of
// each, oldest first): what its subscribers would have received.
func (f *Fake) Published(channel string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, p := range f.publishes {
		if slices.Contains(p.Result.Published, channel) {
			out = append(out, p.Data)
		}
	}
	return out
}

// IsOccupied answers from the channels marked occupied, after the same name
// check as Client.IsOccupied; after FailWith, as the failure policy says.
// After Close it returns ErrClosed.
func (f *Fake) IsOccupied(ctx context.Context, channel string) (bool, error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return false, ErrClosed
	}
	if err := checkChannel(channel); err != nil {
		f.mu.Unlock()
		return false, err
	}
	failure, failOpen, hook := f.err, f.failOpen, f.onError
	occupied := f.occupied[channel]
	f.mu.Unlock()
	if failure == nil {
		return occupied, nil
	}
	if failOpen && IsOutage(failure) {
		hook(failure) // outside the lock: the hook may call the Fake
		return true, nil
	}
	return false, failure
}

// PublishIfOccupied records the publish and splits channels into published
// (occupied) and skipped (vacant) as the gate does: duplicates count once,
// in the order first given. The checks are Client.PublishIfOccupied's.
func (f *Fake) PublishIfOccupied(ctx context.Context, channels []string, event, data string, opts ...PublishOption) (PublishResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return PublishResult{}, ErrClosed
	}
	if err := checkPublish(channels, event, data); err != nil {
		return PublishResult{}, err
	}
	if f.err != nil {
		return PublishResult{}, f.err
	}
	var pc publishConfig
	for _, opt := range opts {
		opt(&pc)
	}
	res := PublishResult{Published: []string{}, Skipped: []string{}, Deferred: []string{}}
	seen := map[string]bool{}
	for _, ch := range channels {
		if seen[ch] {
			continue
		}
		seen[ch] = true
		if f.occupied[ch] {
			res.Published = append(res.Published, ch)
		} else {
			res.Skipped = append(res.Skipped, ch)
		}
	}
	f.publishes = append(f.publishes, FakePublish{
		Channels: slices.Clone(channels),
		Event:    event,
		Data:     data,
		SocketID: pc.socketID,
		Result:   res,
	})
	return res, nil
}

// Close makes every later call return ErrClosed. Closing twice is harmless.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}
