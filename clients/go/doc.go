// Package occupancy is the Go client of the occupancy gate, the gRPC service
// that knows which Pusher Channels channels have subscribers right now.
//
// Encoders publish job progress to Pusher. Most channels have nobody
// watching, and every Pusher message costs quota, so an encoder asks the gate
// first: either [Client.IsOccupied] before publishing by itself, or
// [Client.PublishIfOccupied] to let the gate publish to only the occupied
// channels in one Pusher call.
//
//	c, err := occupancy.New("occupancy.internal:50051")
//	if err != nil { ... }
//	defer c.Close()
//	if ok, _ := c.IsOccupied(ctx, "private-job-42"); ok { ... }
//	res, err := c.PublishIfOccupied(ctx, []string{"private-job-42"}, "progress", `{"pct":40}`)
//
// # Failure policy
//
// The occupancy check fails open by default: when the gate cannot be reached
// or answers an error, IsOccupied reports the channel as occupied, so an
// encoder that publishes by itself never drops a live update because the gate
// is down; it only loses the saving. Such swallowed errors go to the error
// handler (see [WithErrorHandler]). [WithFailClosed] returns them instead.
// Two errors are returned even when failing open: INVALID_ARGUMENT, which
// means the caller passed a bad channel name and must fix its code, and
// cancellation of the caller's own context, which means the caller asked to
// stop.
//
// PublishIfOccupied always returns its errors: when it fails nothing can be
// assumed published.
//
// Every error returned by the client is an [*Error] carrying the gRPC status
// code, so both errors.As and status.Code work on it.
//
// A [Client] holds one gRPC connection, created by [New] and reused by every
// call; it is safe for concurrent use and meant to live as long as the
// process.
package occupancy
