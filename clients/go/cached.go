package occupancy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/occupancy/occupancy/clients/go/occupancypb"
)

// Resubscription backoff of cached mode: the first retry after a broken
// subscription waits ResubscribeMinDelay, each further failed attempt doubles
// the wait, up to MaxReconnectDelay. A subscription that synchronised resets
// it.
const ResubscribeMinDelay = 100 * time.Millisecond

// watcher keeps the local copy of the occupied set for cached mode, from a
// WatchOccupancy subscription run by one background goroutine.
type watcher struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has exited

	mu       sync.Mutex
	occupied map[string]struct{}
	synced   bool
	lastErr  *Error        // why the last subscription attempt ended; nil once synchronised
	changed  chan struct{} // closed (and replaced) when synced or lastErr changes
}

// startWatch returns the client's watcher, starting it (and opening the
// connection) on first use.
func (c *Client) startWatch() (*watcher, error) {
	stub, err := c.connect()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.watch == nil {
		ctx, cancel := context.WithCancel(context.Background())
		w := &watcher{
			ctx:      ctx,
			cancel:   cancel,
			done:     make(chan struct{}),
			occupied: map[string]struct{}{},
			changed:  make(chan struct{}),
		}
		c.watch = w
		req := &occupancypb.WatchOccupancyRequest{AppId: c.appID}
		go w.run(c.outgoing(ctx), stub, req)
	}
	return c.watch, nil
}

// stop ends the subscription and waits for the goroutine to exit.
func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

// run subscribes until stopped, resubscribing with backoff when the stream
// ends.
func (w *watcher) run(ctx context.Context, stub occupancypb.OccupancyClient, req *occupancypb.WatchOccupancyRequest) {
	defer close(w.done)
	delay := ResubscribeMinDelay
	for {
		reachedSync, err := w.subscribe(ctx, stub, req)
		if ctx.Err() != nil {
			return
		}
		w.broken(err)
		if reachedSync {
			delay = ResubscribeMinDelay
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, MaxReconnectDelay)
	}
}

// subscribe follows one WatchOccupancy stream until it ends, and reports
// whether it reached SYNCED.
func (w *watcher) subscribe(ctx context.Context, stub occupancypb.OccupancyClient, req *occupancypb.WatchOccupancyRequest) (bool, error) {
	stream, err := stub.WatchOccupancy(ctx, req)
	if err != nil {
		return false, err
	}
	reachedSync := false
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return reachedSync, &Error{Code: codes.Unavailable, Message: "the gate ended the subscription"}
		}
		if err != nil {
			return reachedSync, err
		}
		if w.apply(msg) {
			reachedSync = true
		}
	}
}

// apply follows the stream's protocol for one message and reports whether
// it was SYNCED.
func (w *watcher) apply(msg *occupancypb.WatchOccupancyResponse) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch msg.GetKind() {
	case occupancypb.WatchOccupancyResponse_KIND_RESET:
		w.occupied = map[string]struct{}{}
		if w.synced {
			w.synced = false
			w.notify()
		}
	case occupancypb.WatchOccupancyResponse_KIND_SNAPSHOT:
		for _, ch := range msg.GetOccupied() {
			w.occupied[ch] = struct{}{}
		}
	case occupancypb.WatchOccupancyResponse_KIND_SYNCED:
		w.synced = true
		w.lastErr = nil
		w.notify()
		return true
	case occupancypb.WatchOccupancyResponse_KIND_CHANGE:
		for _, ch := range msg.GetOccupied() {
			w.occupied[ch] = struct{}{}
		}
		for _, ch := range msg.GetVacated() {
			delete(w.occupied, ch)
		}
	}
	// KIND_UNSPECIFIED and kinds added later are ignored.
	return false
}

// broken records why a subscription attempt ended: the copy is no longer
// current.
func (w *watcher) broken(err error) {
	e := toError(err)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.synced = false
	w.lastErr = &Error{Code: e.Code, Message: "cached mode, watching occupancy: " + e.Message}
	w.notify()
}

// notify wakes the checks waiting for a change; w.mu is held.
func (w *watcher) notify() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// cachedIsOccupied answers from the local copy. While it is not synchronised
// the answer is the failure policy's: with the error of the last subscription
// attempt, or, while the first attempt (or a restart announced by RESET) is
// still in progress, after waiting for it at most the check timeout.
func (c *Client) cachedIsOccupied(ctx context.Context, channel string) (bool, error) {
	w, err := c.startWatch()
	if err != nil {
		return false, err
	}
	var timeout <-chan time.Time
	for {
		w.mu.Lock()
		synced, lastErr, changed := w.synced, w.lastErr, w.changed
		_, occupied := w.occupied[channel]
		w.mu.Unlock()
		switch {
		case synced:
			return occupied, nil
		case lastErr != nil:
			return c.failurePolicy(lastErr)
		}
		if timeout == nil {
			t := time.NewTimer(c.checkTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-timeout:
			return c.failurePolicy(&Error{Code: codes.Unavailable,
				Message: fmt.Sprintf("cached mode: not synchronised with the gate after %v", c.checkTimeout)})
		case <-ctx.Done():
			return c.failurePolicy(toError(ctx.Err()))
		case <-w.ctx.Done():
			return false, ErrClosed
		}
	}
}

// WaitSynced starts cached mode's subscription if needed and waits until the
// local copy is synchronised with the gate, or until ctx is done. Call it at
// startup so the first checks are answered from the copy rather than by the
// failure policy. The same call in every client.
//
// It answers true, nil once synchronised and false, nil when ctx ended first
// (the subscription keeps retrying in the background). It returns a
// FAILED_PRECONDITION *Error without WithCached, and ErrClosed after Close
// (also when Close ends the wait).
func (c *Client) WaitSynced(ctx context.Context) (bool, error) {
	if c.isClosed() {
		return false, ErrClosed
	}
	if !c.cached {
		return false, &Error{Code: codes.FailedPrecondition, Message: "WaitSynced needs a client built WithCached"}
	}
	w, err := c.startWatch()
	if err != nil {
		return false, err
	}
	for {
		w.mu.Lock()
		synced, changed := w.synced, w.changed
		w.mu.Unlock()
		if synced {
			return true, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false, nil
		case <-w.ctx.Done():
			return false, ErrClosed
		}
	}
}
