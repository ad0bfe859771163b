package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
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
   * For 12 s the gate's address accepts connections and drops them at once (grpc-java's own
   * backoff would have grown to 1 s x 1.6^n: gaps of 2.6, 4.1, 6.6 s), then starts relaying to the
   * real gate. Connection attempts must never be more than the 2 s cap apart (plus scheduling
   * slack), and a check must succeed within the cap after the gate is back.
   */
  @Test
  void reconnectAttemptsAreAtMostTwoSecondsApartAndAGateBackIsReachedAtOnce() throws Exception {
    try (WireTap gate = WireTap.rejecting(harness.addr);
        OccupancyClient client = OccupancyClient.builder(gate.address()).failOpen(false).build()) {
      long outageEnd = System.nanoTime() + TimeUnit.SECONDS.toNanos(12);
      while (System.nanoTime() < outageEnd) {
        OccupancyException error =
            assertThrows(OccupancyException.class, () -> client.isOccupied(Harness.channel("r")));
        assertTrue(OccupancyClient.failsOpen(error.getCode()), error.getMessage());
        Thread.sleep(200);
      }
      List<Long> attempts = gate.rejectedAt();
      List<Long> gapsMs = new ArrayList<>();
      for (int i = 1; i < attempts.size(); i++) {
        gapsMs.add(TimeUnit.NANOSECONDS.toMillis(attempts.get(i) - attempts.get(i - 1)));
      }
      gapsMs.add(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - attempts.get(attempts.size() - 1)));
      long longest = gapsMs.stream().mapToLong(Long::longValue).max().orElseThrow();
      assertTrue(attempts.size() >= 6, "attempts at gaps of " + gapsMs + " ms");
      assertTrue(longest < 2700, "reconnect attempts must be <= 2 s apart: " + gapsMs + " ms");

      gate.relay();
      long back = System.nanoTime();
      boolean reached = Harness.eventually(Duration.ofSeconds(8), () -> succeeds(client));
      long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - back);
      assertTrue(reached, "never reconnected");
      assertTrue(tookMs < 3000, "reconnected " + tookMs + " ms after the gate came back");
    }
  }

  /** POST /restart-gate: the real gate stops and starts again at the same address. */
  @Test
  void aRestartedGateIsReachedWithinTwoSeconds() throws Exception {
    String channel = Harness.channel("restart");
    harness.occupy(channel);
    try (OccupancyClient client = OccupancyClient.builder(harness.addr).failOpen(false).build()) {
      assertTrue(client.isOccupied(channel));
      Harness.restartGate();
      long back = System.nanoTime();
      boolean reached = Harness.eventually(Duration.ofSeconds(6), () -> succeeds(client));
      long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - back);
      assertTrue(reached, "never reconnected");
      assertTrue(tookMs < 3000, "reconnected " + tookMs + " ms after the restart");
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
