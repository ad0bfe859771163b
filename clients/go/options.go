package occupancy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Defaults for the per-call deadlines. The occupancy check sits in front of
// every publish, so it must be cheap to wait for; publishing waits on Pusher,
// and the gate's own Pusher HTTP timeout (3 s) is shorter than
// DefaultPublishTimeout so the gate's answer (with its precise status)
// normally arrives first.
const (
	DefaultCheckTimeout   = 1 * time.Second
	DefaultPublishTimeout = 5 * time.Second
)

// MaxReconnectDelay caps the wait between two attempts to reach the gate,
// both for the connection (gRPC-Go's own default is 120 s) and for the
// cached mode's subscription, so a client is back on the gate within seconds
// of a gate restart.
const MaxReconnectDelay = 2 * time.Second

// MinKeepalive is the shortest keepalive interval gRPC-Go allows; shorter
// values given to WithKeepalive are refused by New.
const MinKeepalive = 10 * time.Second

// config is what the options build; New turns it into a Client.
type config struct {
	checkTimeout   time.Duration
	publishTimeout time.Duration
	failOpen       bool
	onError        func(error)
	onErrorSet     bool
	token          string
	tls            bool
	caFile         string
	creds          credentials.TransportCredentials
	metadata       []string // key, value pairs
	keepalive      time.Duration
	appID          string
	cached         bool
	dialOptions    []grpc.DialOption
	errs           []error
}

func (c *config) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("occupancy: "+format, args...))
}

// Option configures a Client at construction; options are applied in order.
type Option func(*config)

// WithCheckTimeout sets the deadline of each IsOccupied call (default
// DefaultCheckTimeout). A deadline already on the caller's context still
// applies when it is earlier. It must be positive.
func WithCheckTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.fail("WithCheckTimeout(%v): must be positive", d)
			return
		}
		c.checkTimeout = d
	}
}

// WithPublishTimeout sets the deadline of each PublishIfOccupied call
// (default DefaultPublishTimeout). Keep it above the gate's Pusher timeout,
// or a slow Pusher surfaces as a client-side DEADLINE_EXCEEDED instead of the
// gate's own answer. It must be positive.
func WithPublishTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.fail("WithPublishTimeout(%v): must be positive", d)
			return
		}
		c.publishTimeout = d
	}
}

// WithFailOpen sets the failure policy of IsOccupied. With true (the
// default), an outage (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED or
// a transport error) answers true, nil and the error goes to the hook (see
// WithOnError); every other error is returned. With false every error is
// returned: choose it when a wrong "occupied" costs more than a lost update,
// or when the caller has its own fallback. PublishIfOccupied always returns
// its errors.
func WithFailOpen(failOpen bool) Option {
	return func(c *config) { c.failOpen = failOpen }
}

// WithOnError sets the hook that receives every error IsOccupied swallows
// when failing open (each an *Error), replacing the default, which logs a
// warning through log/slog's default logger at most once per WarnInterval
// (30 s) saying how many errors were swallowed since the previous warning.
// The hook sees every swallowed error; it is called synchronously on the
// calling goroutine, so it should be quick and safe for concurrent use. To
// discard the errors pass func(error) {}; nil is refused.
func WithOnError(hook func(error)) Option {
	return func(c *config) {
		if hook == nil {
			c.fail("WithOnError(nil): pass func(error) {} to discard swallowed errors")
			return
		}
		c.onError = hook
		c.onErrorSet = true
	}
}

// WithToken sends "authorization: Bearer <token>" on every call, for a gate
// started with tokens. Combine it with WithTLS or WithCAFile: a token sent in
// plaintext can be read on the network.
func WithToken(token string) Option {
	return func(c *config) {
		if token == "" || strings.ContainsAny(token, "\r\n") {
			c.fail("WithToken: the token must be non-empty and on one line")
			return
		}
		c.token = token
	}
}

// WithTLS connects over TLS, trusting the system's root certificates.
func WithTLS() Option {
	return func(c *config) { c.tls = true }
}

// WithCAFile connects over TLS, trusting the PEM CA certificates in path
// (instead of the system roots), for a gate whose certificate is signed by a
// private CA. The file is read by New.
func WithCAFile(path string) Option {
	return func(c *config) {
		c.tls = true
		c.caFile = path
	}
}

// WithTransportCredentials sets the transport security explicitly (for
// example mutual TLS), overriding WithTLS and WithCAFile.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) { c.creds = creds }
}

// WithMetadata adds one gRPC metadata entry sent on every call (for example
// a tenant or tracing header). It may be given several times; keys are
// lower-cased as gRPC requires.
func WithMetadata(key, value string) Option {
	return func(c *config) {
		if key == "" {
			c.fail("WithMetadata: empty key")
			return
		}
		c.metadata = append(c.metadata, strings.ToLower(key), value)
	}
}

// WithKeepalive sends an HTTP/2 keepalive ping after every interval without
// activity, also while no call is in flight, so a connection silently
// dropped by a load balancer or NAT is noticed before the next call pays for
// it. Off by default. gRPC-Go allows no interval below MinKeepalive (10 s).
func WithKeepalive(interval time.Duration) Option {
	return func(c *config) {
		if interval < MinKeepalive {
			c.fail("WithKeepalive(%v): gRPC-Go allows no interval below %v", interval, MinKeepalive)
			return
		}
		c.keepalive = interval
	}
}

// WithAppID names the Pusher app asked about, when the gate serves several;
// empty (the default) means the gate's only app.
func WithAppID(appID string) Option {
	return func(c *config) { c.appID = appID }
}

// WithCached answers IsOccupied from a local copy of the occupied set, kept
// current by a WatchOccupancy subscription in the background, with no call
// per check. See the package documentation, "Cached mode".
func WithCached() Option {
	return func(c *config) { c.cached = true }
}

// WithDialOptions passes extra options to grpc.NewClient, for interceptors,
// a custom resolver and the like. They are applied after the client's own,
// so they win where they overlap.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// transportCredentials builds the TLS configuration of WithTLS / WithCAFile,
// or returns nil for plaintext.
func (c *config) transportCredentials() (credentials.TransportCredentials, error) {
	if c.creds != nil {
		return c.creds, nil
	}
	if !c.tls {
		return nil, nil
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("occupancy: WithCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("occupancy: WithCAFile(%q): no PEM certificate found", c.caFile)
		}
		tlsConfig.RootCAs = pool
	}
	return credentials.NewTLS(tlsConfig), nil
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
