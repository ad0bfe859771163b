package occupancy

import (
	"context"
	"slices"
	"sync"
)

// Fake is an in-memory [Gate] for encoder teams' own unit tests: channels are
// marked occupied by hand, publishes are recorded, and channel names, event
// names and data are checked exactly as the real Client checks them (the same
// INVALID_ARGUMENT *Error). It makes no network call. It is safe for
// concurrent use; the zero value is not usable, call NewFake.
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
}

// FakePublish is one PublishIfOccupied call recorded by a Fake.
type FakePublish struct {
	Channels []string // as given
	Event    string
	Data     string
	SocketID string // from WithSocketID; empty when none
	Result   PublishResult
}

// NewFake returns a Fake in which the given channels are occupied.
func NewFake(occupied ...string) *Fake {
	f := &Fake{occupied: map[string]bool{}}
	f.SetOccupied(occupied...)
	return f
}

// SetOccupied marks channels occupied, as a channel_occupied webhook would.
func (f *Fake) SetOccupied(channels ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range channels {
		f.occupied[ch] = true
	}
}

// SetVacant marks channels vacant, as a channel_vacated webhook would.
func (f *Fake) SetVacant(channels ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range channels {
		delete(f.occupied, ch)
	}
}

// FailWith makes every later call that passes the local checks return err
// (for example &occupancy.Error{Code: codes.Unavailable, Message: "down"}),
// until FailWith(nil). The Fake applies no failure policy: it returns err as
// given, as a Client with WithFailOpen(false) would.
func (f *Fake) FailWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
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
// check as Client.IsOccupied. After Close it returns ErrClosed.
func (f *Fake) IsOccupied(ctx context.Context, channel string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false, ErrClosed
	}
	if err := checkChannel(channel); err != nil {
		return false, err
	}
	if f.err != nil {
		return false, f.err
	}
	return f.occupied[channel], nil
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
	res := PublishResult{Published: []string{}, Skipped: []string{}}
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
