package occupancy

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Defaults for the per-call deadlines. The occupancy check sits in front of
// every publish, so it must be cheap to wait for; publishing waits on Pusher,
// and the gate's own Pusher HTTP timeout is shorter than DefaultPublishTimeout
// so the gate's answer (with its precise status) normally arrives first.
const (
	DefaultTimeout        = 1 * time.Second
	DefaultPublishTimeout = 5 * time.Second
)

// config is what the options build; New turns it into a Client.
type config struct {
	timeout        time.Duration
	publishTimeout time.Duration
	failClosed     bool
	onError        func(error)
	onErrorSet     bool
	creds          credentials.TransportCredentials
	dialOptions    []grpc.DialOption
	err            error
}

// Option configures a Client at construction; options are applied in order.
type Option func(*config)

// WithTimeout sets the deadline of each IsOccupied call (default
// DefaultTimeout). A deadline already on the caller's context still applies
// when it is earlier. It must be positive.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.err = fmt.Errorf("occupancy: WithTimeout(%v): must be positive", d)
			return
		}
		c.timeout = d
	}
}

// WithPublishTimeout sets the deadline of each PublishIfOccupied call
// (default DefaultPublishTimeout). Keep it above the gate's Pusher timeout,
// or a slow Pusher surfaces as a client-side DEADLINE_EXCEEDED instead of the
// gate's own answer. It must be positive.
func WithPublishTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.err = fmt.Errorf("occupancy: WithPublishTimeout(%v): must be positive", d)
			return
		}
		c.publishTimeout = d
	}
}

// WithFailClosed makes IsOccupied return the gate's errors instead of
// answering true. Choose it when a wrong "occupied" costs more than a lost
// update, or when the caller has its own fallback.
func WithFailClosed() Option {
	return func(c *config) { c.failClosed = true }
}

// WithErrorHandler sets the function that receives the errors IsOccupied
// swallows when failing open (each an *Error), so a dead gate shows up in the
// caller's logs or metrics. It is called synchronously on the calling
// goroutine, so it should be quick. The default logs a warning through
// log/slog's default logger; passing nil discards the errors.
func WithErrorHandler(h func(error)) Option {
	return func(c *config) {
		c.onError = h
		c.onErrorSet = true
	}
}

// WithTransportCredentials connects over TLS (or any other gRPC transport
// security) instead of the default plaintext, e.g.
// credentials.NewClientTLSFromCert(nil, "") for the system roots.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) { c.creds = creds }
}

// WithDialOptions passes extra options to grpc.NewClient, for interceptors,
// keepalive, a custom resolver and the like. They are applied after the
// client's own, so they win where they overlap.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// PublishOption configures one PublishIfOccupied call.
type PublishOption func(*publishConfig)

type publishConfig struct {
	socketID string
}

// WithSocketID excludes one Pusher connection (a socket id such as
// "123.456") from receiving the event, as in Pusher's own API: typically the
// browser whose action caused the event and which already shows its result.
func WithSocketID(socketID string) PublishOption {
	return func(p *publishConfig) { p.socketID = socketID }
}
