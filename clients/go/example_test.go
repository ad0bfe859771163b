package occupancy_test

import (
	"context"
	"fmt"
	"log"
	"time"

	occupancy "github.com/occupancy/occupancy/clients/go"
)

// An encoder reporting job progress: the gate publishes only to the channels
// somebody is watching.
func Example() {
	ctx := context.Background()
	gate, err := occupancy.New("127.0.0.1:50051", occupancy.WithCheckTimeout(500*time.Millisecond))
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
	gate, err := occupancy.New("", // OCCUPANCY_ADDR
		occupancy.WithOnError(func(err error) { log.Printf("occupancy gate: %v", err) }))
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()

	occupied, err := gate.IsOccupied(ctx, "private-job-42")
	if err != nil {
		log.Fatal(err) // with fail-open: a bad name, a configuration error, or ErrClosed
	}
	if !occupied {
		return // nobody is watching: skip rendering and publishing the frame
	}
	// render the progress frame and publish it to Pusher
}

// Code that takes an occupancy.Gate is unit-tested with a Fake.
func ExampleFake() {
	fake := occupancy.NewFake("private-job-42")
	var gate occupancy.Gate = fake // what the encoder under test is given

	res, _ := gate.PublishIfOccupied(context.Background(), []string{"private-job-42", "private-job-43"}, "progress", `{"pct":40}`)
	fmt.Println(res.Published, res.Skipped)
	fmt.Println(fake.Published("private-job-42"))
	// Output:
	// [private-job-42] [private-job-43]
	// [{"pct":40}]
}
