package occupancy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/occupancy/occupancy/clients/go/occupancypb"
)

// AddressEnv is the environment variable New reads the target from when it
// is given none (the same name in every client).
const AddressEnv = "OCCUPANCY_ADDR"

// EnvAddr is the old name of AddressEnv.
//
// Deprecated: use AddressEnv, the name every client uses.
const EnvAddr = AddressEnv

// Client talks to one occupancy gate over a single gRPC connection. Create it
// once with New, share it between goroutines, and Close it at shutdown.
type Client struct {
	target         string
	dialOptions    []grpc.DialOption
	checkTimeout   time.Duration
	publishTimeout time.Duration
	failOpen       bool
	onError        func(error)
	outgoingMD     []string // key, value pairs added to every call
	appID          string
	cached         bool

	mu     sync.Mutex
	closed bool
	conn   *grpc.ClientConn // nil until the first call
	stub   occupancypb.OccupancyClient
	watch  *watcher // cached mode, started by the first IsOccupied
}

// Compile-time checks that the real client and the fake are both a Gate.
var (
	_ Gate = (*Client)(nil)
	_ Gate = (*Fake)(nil)
)

// PublishResult tells which channels an event went to, so the caller can log
// or count what was saved. The lists keep the order of the request and are
// never nil; every requested channel is in exactly one of them.
type PublishResult struct {
	// Published lists the occupied channels the event was triggered on.
	Published []string
	// Skipped lists the vacant channels that received nothing.
	Skipped []string
	// Deferred lists occupied channels whose update the gate holds to
	// coalesce it (empty unless the gate coalesces).
	Deferred []string
	// Superseded counts the held updates of earlier calls this call replaced
	// (0 unless the gate coalesces).
	Superseded uint32
	// StoreUnavailable is true when the gate could not ask its store and,
	// configured to publish when the store is down, published to every
	// requested channel.
	StoreUnavailable bool
}

// New creates a client for the gate at target ("host:port", or any target
// grpc.NewClient accepts); an empty target means the value of the
// OCCUPANCY_ADDR environment variable, and New fails when that is empty too.
//
// New touches neither the network nor the gRPC runtime: the connection is
// opened by the first call and reused by every later one, and re-established
// as needed with a backoff capped at MaxReconnectDelay. New fails only on
// invalid options (including an unreadable WithCAFile) or a missing target.
// Errors from New are configuration errors, not *Error.
func New(target string, opts ...Option) (*Client, error) {
	cfg := config{
		checkTimeout:   DefaultCheckTimeout,
		publishTimeout: DefaultPublishTimeout,
		failOpen:       true,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	if len(cfg.errs) > 0 {
		return nil, errors.Join(cfg.errs...)
	}
	if target == "" {
		target = os.Getenv(AddressEnv)
		if target == "" {
			return nil, fmt.Errorf("occupancy: no target given and %s is not set", AddressEnv)
		}
	}
	if !cfg.onErrorSet {
		cfg.onError = newWarner().handle
	}
	creds, err := cfg.transportCredentials()
	if err != nil {
		return nil, err
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				// gRPC-Go adds up to 20 % jitter after applying MaxDelay;
				// this keeps the longest wait at MaxReconnectDelay.
				Jitter:   0.2,
				MaxDelay: MaxReconnectDelay * 5 / 6,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if cfg.keepalive > 0 {
		dialOpts = append(dialOpts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                cfg.keepalive,
			Timeout:             cfg.keepalive,
			PermitWithoutStream: true,
		}))
	}
	dialOpts = append(dialOpts, cfg.dialOptions...)

	md := append([]string(nil), cfg.metadata...)
	if cfg.token != "" {
		md = append(md, "authorization", "Bearer "+cfg.token)
	}
	return &Client{
		target:         target,
		dialOptions:    dialOpts,
		checkTimeout:   cfg.checkTimeout,
		publishTimeout: cfg.publishTimeout,
		failOpen:       cfg.failOpen,
		onError:        cfg.onError,
		outgoingMD:     md,
		appID:          cfg.appID,
		cached:         cfg.cached,
	}, nil
}

// Target is the address the client talks to (after reading OCCUPANCY_ADDR
// when New was given none).
func (c *Client) Target() string { return c.target }

// connect returns the stub, opening the connection on first use.
func (c *Client) connect() (occupancypb.OccupancyClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.stub == nil {
		conn, err := grpc.NewClient(c.target, c.dialOptions...)
		if err != nil {
			return nil, &Error{Code: codes.InvalidArgument, Message: fmt.Sprintf("target %q: %v", c.target, err)}
		}
		c.conn = conn
		c.stub = occupancypb.NewOccupancyClient(conn)
	}
	return c.stub, nil
}

// outgoing adds the client's metadata (token, WithMetadata) to ctx.
func (c *Client) outgoing(ctx context.Context) context.Context {
	if len(c.outgoingMD) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, c.outgoingMD...)
}

// isClosed reports whether Close was called.
func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// callError turns a failed call's error into what the caller sees: ErrClosed
// when the client was closed meanwhile, else an *Error.
func (c *Client) callError(err error) error {
	if c.isClosed() {
		return ErrClosed
	}
	return toError(err)
}

// IsOccupied reports whether channel has at least one subscriber, per the
// gate's view of Pusher's webhooks.
//
// A malformed channel name returns an INVALID_ARGUMENT *Error without any
// call, so it is returned even while the gate is down. With fail-open (the
// default), an outage (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, a
// transport error) answers true, nil and the error goes to the hook; every
// other error is returned with false (see the package documentation,
// "Failure policy"). After Close it returns ErrClosed.
//
// With WithCached the answer comes from the local copy (see "Cached mode").
func (c *Client) IsOccupied(ctx context.Context, channel string) (bool, error) {
	if c.isClosed() {
		return false, ErrClosed
	}
	if err := checkChannel(channel); err != nil {
		return false, err
	}
	if c.cached {
		return c.cachedIsOccupied(ctx, channel)
	}
	stub, err := c.connect()
	if err != nil {
		return false, err
	}
	callCtx, cancel := context.WithTimeout(c.outgoing(ctx), c.checkTimeout)
	defer cancel()
	resp, err := stub.IsOccupied(callCtx, &occupancypb.IsOccupiedRequest{Channel: channel, AppId: c.appID})
	if err == nil {
		return resp.GetOccupied(), nil
	}
	return c.failurePolicy(c.callError(err))
}

// failurePolicy answers a failed check: true, nil for an outage when failing
// open (after handing the error to the hook), else false and the error.
func (c *Client) failurePolicy(err error) (bool, error) {
	if c.failOpen && IsOutage(err) {
		c.onError(err)
		return true, nil
	}
	return false, err
}

// PublishIfOccupied triggers event with data on those of channels that are
// occupied, in one Pusher call made by the gate, and makes no call when none
// is. data is sent verbatim as the Pusher event's data (usually JSON).
//
// The client checks first, without a call, that there are 1 to 100 valid
// channel names, an event name of 1 to 200 characters and at most 10240
// bytes of data. Errors are always returned (as *Error, or ErrClosed after
// Close), whatever the failure policy: when the call fails the caller cannot
// assume anything was published. A DEADLINE_EXCEEDED means the event may or
// may not have reached Pusher.
func (c *Client) PublishIfOccupied(ctx context.Context, channels []string, event, data string, opts ...PublishOption) (PublishResult, error) {
	if c.isClosed() {
		return PublishResult{}, ErrClosed
	}
	if err := checkPublish(channels, event, data); err != nil {
		return PublishResult{}, err
	}
	var pc publishConfig
	for _, opt := range opts {
		opt(&pc)
	}
	stub, err := c.connect()
	if err != nil {
		return PublishResult{}, err
	}
	callCtx, cancel := context.WithTimeout(c.outgoing(ctx), c.publishTimeout)
	defer cancel()
	resp, err := stub.PublishIfOccupied(callCtx, &occupancypb.PublishIfOccupiedRequest{
		Channels: channels,
		Event:    event,
		Data:     data,
		SocketId: pc.socketID,
		AppId:    c.appID,
	})
	if err != nil {
		return PublishResult{}, c.callError(err)
	}
	return PublishResult{
		Published:        nonNil(resp.GetPublished()),
		Skipped:          nonNil(resp.GetSkipped()),
		Deferred:         nonNil(resp.GetDeferred()),
		Superseded:       resp.GetSuperseded(),
		StoreUnavailable: resp.GetStoreUnavailable(),
	}, nil
}

// Close ends the cached mode's subscription (waiting for its goroutine to
// exit) and releases the connection. Every call made after Close returns
// ErrClosed, and so does a call still in flight when Close ends it. Closing
// twice is harmless and returns nil.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn, w := c.conn, c.watch
	c.mu.Unlock()
	if w != nil {
		w.stop()
	}
	if conn != nil {
		return conn.Close()
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
