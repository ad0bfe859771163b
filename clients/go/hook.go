package occupancy

import (
	"log/slog"
	"sync"
	"time"
)

// WarnInterval is the shortest time between two warnings of the default
// error hook, so an outage never floods an encoder's log.
const WarnInterval = 30 * time.Second

// warner is the default error hook: it logs a warning through log/slog's
// default logger at most once per WarnInterval, saying how many errors were
// swallowed since the previous warning.
type warner struct {
	now func() time.Time    // time.Now; replaced in tests
	log func() *slog.Logger // slog.Default; replaced in tests

	mu         sync.Mutex
	lastWarned time.Time // zero before the first warning
	swallowed  int       // errors since lastWarned, this one included when warning
}

func newWarner() *warner {
	return &warner{now: time.Now, log: slog.Default}
}

func (w *warner) handle(err error) {
	w.mu.Lock()
	w.swallowed++
	now := w.now()
	if !w.lastWarned.IsZero() && now.Sub(w.lastWarned) < WarnInterval {
		w.mu.Unlock()
		return
	}
	count := w.swallowed
	w.swallowed = 0
	w.lastWarned = now
	w.mu.Unlock()
	w.log().Warn("occupancy: gate unavailable, answering occupied (fail open)",
		"swallowed_since_last_warning", count, "error", err)
}
