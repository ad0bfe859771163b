// Package occupancy is the Go client of the occupancy gate, the gRPC service
// that knows which Pusher Channels channels have subscribers right now.
//
// Encoders publish job progress to Pusher. Most channels have nobody
// watching, and every Pusher message costs quota, so an encoder asks the gate
// first: either [Client.IsOccupied] before publishing by itself, or
// [Client.PublishIfOccupied] to let the gate publish to only the occupied
// channels in one Pusher call.
//
//	c, err := occupancy.New("") // OCCUPANCY_ADDR
//	if err != nil { ... }
//	defer c.Close()
//	if ok, _ := c.IsOccupied(ctx, "private-job-42"); ok { ... }
//	res, err := c.PublishIfOccupied(ctx, []string{"private-job-42"}, "progress", `{"pct":40}`)
//
// The behaviour is the one all occupancy clients share, stated in
// clients/CONTRACT.md of the repository.
//
// # Failure policy
//
// Channel names (1 to 164 characters of A-Z a-z 0-9 _ - = @ , . ;), and a
// publish's channel count, event name and data size, are checked before any
// call: a bad one returns an INVALID_ARGUMENT [*Error] even while the gate is
// down.
//
// The occupancy check fails open by default: when the gate is unreachable or
// overloaded (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, or a
// transport error, which gRPC reports as UNAVAILABLE), IsOccupied answers
// true, so an encoder that publishes by itself never drops a live update
// because the gate is down; it only loses the saving. Each such swallowed
// error goes to the hook ([WithOnError]); the default hook logs a warning
// through log/slog at most once per 30 s. Every other status
// (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED,
// NOT_FOUND, ..., and CANCELED when the caller cancels ctx) is a
// configuration or caller bug and is returned even when failing open.
// [WithFailOpen](false) returns every error.
//
// PublishIfOccupied always returns its errors: when it fails nothing can be
// assumed published.
//
// Errors of calls are [*Error], carrying the gRPC status code, so both
// errors.As and status.Code work on them. After Close every call returns
// [ErrClosed].
//
// # Connection
//
// [New] touches neither the network nor the gRPC runtime. The first call
// opens one gRPC connection, reused by every later call; a Client is safe
// for concurrent use and meant to live as long as the process. Reconnection
// backoff is capped at [MaxReconnectDelay] (2 s), so a client is back on a
// restarted gate within seconds.
//
// # Cached mode
//
// With [WithCached], the client subscribes to WatchOccupancy (for its app id)
// in a background goroutine on first use and answers IsOccupied from a local
// copy of the occupied set, with no call per check. It follows the stream's
// protocol (RESET drops the copy, SNAPSHOT adds, SYNCED marks it current,
// CHANGE applies) and resubscribes when the stream breaks, after 100 ms
// doubling to at most 2 s. While the copy is not synchronised, IsOccupied
// answers what the failure policy answers for an outage (true with
// fail-open, the error going to the hook), or returns the subscription's
// error when that is not an outage (UNAUTHENTICATED, say). A check made while
// the first subscription is still starting waits for it at most the check
// timeout. Close ends the subscription and waits for its goroutine.
//
// # Testing code that uses the gate
//
// [Gate] is the interface both [*Client] and the in-memory [*Fake]
// implement: write encoders against Gate and give them a Fake in unit tests.
package occupancy
