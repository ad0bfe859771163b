package occupancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/occupancy/occupancy/clients/go/occupancypb"
)

// Client talks to one occupancy gate over a single gRPC connection. Create it
// once with New, share it between goroutines, and Close it at shutdown.
type Client struct {
	conn           *grpc.ClientConn
	stub           occupancypb.OccupancyClient
	timeout        time.Duration
	publishTimeout time.Duration
	failClosed     bool
	onError        func(error)
}

// PublishResult tells which channels an event went to, so the caller can log
// or count what was saved. Both lists keep the order of the request and are
// never nil.
type PublishResult struct {
	// Published lists the occupied channels the event was triggered on.
	Published []string
	// Skipped lists the vacant channels that received nothing.
	Skipped []string
}

// New creates a client for the gate at target ("host:port", or any target
// grpc.NewClient accepts). It does not connect: the connection is made on
// the first call and re-established by gRPC as needed, so New succeeds even
// while the gate is down and fails only on invalid options or targets.
// Errors from New are configuration errors, not *Error.
func New(target string, opts ...Option) (*Client, error) {
	cfg := config{
		timeout:        DefaultTimeout,
		publishTimeout: DefaultPublishTimeout,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	if !cfg.onErrorSet {
		cfg.onError = logSwallowed
	}
	dialOpts := make([]grpc.DialOption, 0, 1+len(cfg.dialOptions))
	if cfg.creds != nil {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(cfg.creds))
	} else {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	dialOpts = append(dialOpts, cfg.dialOptions...)
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("occupancy: connecting to %q: %w", target, err)
	}
	return &Client{
		conn:           conn,
		stub:           occupancypb.NewOccupancyClient(conn),
		timeout:        cfg.timeout,
		publishTimeout: cfg.publishTimeout,
		failClosed:     cfg.failClosed,
		onError:        cfg.onError,
	}, nil
}

// logSwallowed is the default error handler: a fail-open answer should never
// be silent, since it means every check is now paying for nothing.
func logSwallowed(err error) {
	slog.Default().Warn("occupancy: gate check failed, answering occupied (fail open)", "error", err)
}

// IsOccupied reports whether channel has at least one subscriber, per the
// gate's view of Pusher's webhooks.
//
// When failing open (the default), any failure answers true with a nil error
// and goes to the error handler, except two, which are always returned with
// false: INVALID_ARGUMENT (the channel name is malformed, a caller bug that
// retrying or failing open would hide) and CANCELED caused by the caller
// cancelling ctx. With WithFailClosed every failure is returned. Returned
// errors are *Error.
func (c *Client) IsOccupied(ctx context.Context, channel string) (bool, error) {
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.stub.IsOccupied(callCtx, &occupancypb.IsOccupiedRequest{Channel: channel})
	if err == nil {
		return resp.GetOccupied(), nil
	}
	e := toError(err)
	callerCanceled := errors.Is(ctx.Err(), context.Canceled)
	if c.failClosed || e.Code == codes.InvalidArgument || callerCanceled {
		return false, e
	}
	if c.onError != nil {
		c.onError(e)
	}
	return true, nil
}

// PublishIfOccupied triggers event with data on those of channels that are
// occupied, in one Pusher call made by the gate, and makes no call when none
// is. data is sent verbatim as the Pusher event's data (usually JSON).
//
// Errors are always returned (as *Error), whatever the failure policy: when
// the call fails the caller cannot assume anything was published. A
// DEADLINE_EXCEEDED means the event may or may not have reached Pusher.
func (c *Client) PublishIfOccupied(ctx context.Context, channels []string, event, data string, opts ...PublishOption) (PublishResult, error) {
	var pc publishConfig
	for _, opt := range opts {
		opt(&pc)
	}
	ctx, cancel := context.WithTimeout(ctx, c.publishTimeout)
	defer cancel()
	resp, err := c.stub.PublishIfOccupied(ctx, &occupancypb.PublishIfOccupiedRequest{
		Channels: channels,
		Event:    event,
		Data:     data,
		SocketId: pc.socketID,
	})
	if err != nil {
		return PublishResult{}, toError(err)
	}
	return PublishResult{
		Published: nonNil(resp.GetPublished()),
		Skipped:   nonNil(resp.GetSkipped()),
	}, nil
}

// Close releases the connection. Calls made after Close fail with CANCELED
// (and IsOccupied then fails open unless WithFailClosed was given).
func (c *Client) Close() error {
	return c.conn.Close()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
