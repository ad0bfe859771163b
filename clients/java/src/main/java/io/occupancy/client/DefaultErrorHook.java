package io.occupancy.client;

import java.time.Duration;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * The default {@code onError} hook: a WARNING on the {@link System.Logger} named {@code
 * io.occupancy.client.OccupancyClient}, at most once per 30 seconds, saying how many errors were
 * swallowed since the previous warning, so a long outage never floods an encoder's log.
 */
final class DefaultErrorHook implements Consumer<OccupancyException> {
  static final Duration INTERVAL = Duration.ofSeconds(30);
  private static final System.Logger LOG = System.getLogger(OccupancyClient.class.getName());

  private final LongSupplier nanoTime;
  private final String client;
  private long swallowed;
  private long lastWarning;
  private boolean warned;

  DefaultErrorHook(String client, LongSupplier nanoTime) {
    this.client = client;
    this.nanoTime = nanoTime;
  }

  @Override
  public void accept(OccupancyException error) {
    long count;
    synchronized (this) {
      swallowed++;
      long now = nanoTime.getAsLong();
      if (warned && now - lastWarning < INTERVAL.toNanos()) {
        return;
      }
      warned = true;
      lastWarning = now;
      count = swallowed;
      swallowed = 0;
    }
    LOG.log(
        System.Logger.Level.WARNING,
        client
            + ": "
            + count
            + (count == 1 ? " error" : " errors")
            + " swallowed by failing open since the last warning (at most one warning per "
            + INTERVAL.toSeconds()
            + " s); latest: "
            + error.getMessage(),
        error);
  }
}
