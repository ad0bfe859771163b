package occupancy_test

import (
	"context"
	"log"
	"time"

	occupancy "github.com/occupancy/occupancy/clients/go"
)

// An encoder reporting job progress: the gate publishes only to the channels
// somebody is watching.
func Example() {
	ctx := context.Background()
	gate, err := occupancy.New("127.0.0.1:50051", occupancy.WithTimeout(500*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()

	res, err := gate.PublishIfOccupied(ctx, []string{"private-job-42", "dashboard"}, "progress", `{"job":42,"pct":40}`)
	if err != nil {
		log.Printf("progress not published: %v", err)
		return
	}
	log.Printf("published to %v, skipped %v", res.Published, res.Skipped)
}

// An encoder that publishes to Pusher by itself and uses the gate only to
// skip work nobody will see. Failing open (the default) means a dead gate
// costs quota, never a lost update.
func ExampleClient_IsOccupied() {
	ctx := context.Background()
	gate, err := occupancy.New("127.0.0.1:50051",
		occupancy.WithErrorHandler(func(err error) { log.Printf("occupancy gate: %v", err) }))
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()

	occupied, err := gate.IsOccupied(ctx, "private-job-42")
	if err != nil {
		log.Fatal(err) // only INVALID_ARGUMENT or ctx cancellation when failing open
	}
	if !occupied {
		return // nobody is watching: skip rendering and publishing the frame
	}
	// render the progress frame and publish it to Pusher
}
