package occupancy

import "context"

// Gate is what encoders need from the occupancy gate. Both the real [Client]
// and the in-memory [Fake] implement it, so code written against Gate can be
// unit-tested with a Fake and run with a Client:
//
//	type Encoder struct{ Gate occupancy.Gate }
//
//	enc := Encoder{Gate: occupancy.NewFake()}           // in tests
//	gate, err := occupancy.New("")                      // in production (OCCUPANCY_ADDR)
type Gate interface {
	// IsOccupied reports whether channel has at least one subscriber.
	IsOccupied(ctx context.Context, channel string) (bool, error)
	// PublishIfOccupied triggers event on those of channels that are occupied.
	PublishIfOccupied(ctx context.Context, channels []string, event, data string, opts ...PublishOption) (PublishResult, error)
	// Close releases the gate's resources; every later call returns ErrClosed.
	Close() error
}
