package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * CONTRACT.md: reconnect backoff is capped at 2 s, so the client is back on the gate within
 * seconds of it returning, however long it was away.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ReconnectTest {
  private Harness harness;

  @BeforeAll
  void start() {
    harness = new Harness();
  }

  /**
   * The gate's address refuses connections for 12 s (grpc-java's own backoff has grown to about
   * 6.5 s by then, 1 s x 1.6^n), then starts relaying to the real gate: a check must succeed
   * within the 2 s cap plus a margin.
   */
  @Test
  void aGateBackAfterALongOutageIsReachedWithinTwoSeconds() throws Exception {
    int port = Harness.freePort();
    try (WireTap gate = WireTap.later(harness.addr);
        OccupancyClient client =
            OccupancyClient.builder("127.0.0.1:" + port)
                .checkTimeout(Duration.ofMillis(500))
                .failOpen(false)
                .build()) {
      long outageEnd = System.nanoTime() + TimeUnit.SECONDS.toNanos(12);
      while (System.nanoTime() < outageEnd) {
        OccupancyException error =
            assertThrows(OccupancyException.class, () -> client.isOccupied(Harness.channel("r")));
        assertEquals(Status.Code.UNAVAILABLE, error.getCode());
        Thread.sleep(200);
      }
      gate.listen(port);
      long back = System.nanoTime();
      boolean reached = Harness.eventually(Duration.ofSeconds(6), () -> succeeds(client));
      long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - back);
      assertTrue(reached, "never reconnected");
      assertTrue(tookMs < 2600, "reconnected " + tookMs + " ms after the gate came back");
    }
  }

  /** POST /restart-gate: the real gate stops and starts again at the same address. */
  @Test
  void aRestartedGateIsReachedWithinTwoSeconds() throws Exception {
    String channel = Harness.channel("restart");
    harness.occupy(channel);
    try (OccupancyClient client =
        OccupancyClient.builder(harness.addr)
            .checkTimeout(Duration.ofMillis(500))
            .failOpen(false)
            .build()) {
      assertTrue(client.isOccupied(channel));
      Harness.restartGate();
      long back = System.nanoTime();
      boolean reached = Harness.eventually(Duration.ofSeconds(6), () -> succeeds(client));
      long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - back);
      assertTrue(reached, "never reconnected");
      assertTrue(tookMs < 2600, "reconnected " + tookMs + " ms after the restart");
      assertTrue(client.isOccupied(channel), "the state survived (same Redis)");
      assertFalse(client.isOccupied(Harness.channel("restart-vacant")));
    }
  }

  private static boolean succeeds(OccupancyClient client) {
    try {
      client.isOccupied(Harness.channel("probe"));
      return true;
    } catch (OccupancyException e) {
      return false;
    }
  }
}
