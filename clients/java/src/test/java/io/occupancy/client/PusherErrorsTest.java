package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * What users see when Pusher fails: the stand-in is told to answer a channel's triggers with an
 * error (CONTRACT.md, "Making Pusher fail") and the real gate maps it to a status.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class PusherErrorsTest {
  private Harness harness;
  private OccupancyClient client;

  @BeforeAll
  void start() {
    harness = new Harness();
    client = OccupancyClient.builder(harness.addr).build(); // fail-open: publish raises anyway
  }

  @AfterAll
  void stop() {
    if (client != null) {
      client.close();
    }
  }

  /** An occupied channel whose triggers "Pusher" answers with {@code status}. */
  private String failing(int status, long delayMs) throws Exception {
    String channel = Harness.channel("pusher-" + status);
    harness.occupy(channel);
    harness.pusherAnswers(channel, status, "{\"error\":\"stub says " + status + "\"}", delayMs);
    return channel;
  }

  private Status.Code publishError(String channel) {
    return assertThrows(
            OccupancyException.class,
            () -> client.publishIfOccupied(List.of(channel), "progress", "{}"))
        .getCode();
  }

  @Test
  void pusher403IsPermissionDenied() throws Exception {
    assertEquals(Status.Code.PERMISSION_DENIED, publishError(failing(403, 0)));
  }

  @Test
  void pusher429IsResourceExhausted() throws Exception {
    assertEquals(Status.Code.RESOURCE_EXHAUSTED, publishError(failing(429, 0)));
  }

  @Test
  void pusher5xxIsUnavailable() throws Exception {
    assertEquals(Status.Code.UNAVAILABLE, publishError(failing(500, 0)));
    assertEquals(Status.Code.UNAVAILABLE, publishError(failing(503, 0)));
  }

  @Test
  void pusher400And413AreInvalidArgument() throws Exception {
    assertEquals(Status.Code.INVALID_ARGUMENT, publishError(failing(400, 0)));
    assertEquals(Status.Code.INVALID_ARGUMENT, publishError(failing(413, 0)));
  }

  @Test
  void pusher401AndOther4xxAreFailedPrecondition() throws Exception {
    assertEquals(Status.Code.FAILED_PRECONDITION, publishError(failing(401, 0)));
    assertEquals(Status.Code.FAILED_PRECONDITION, publishError(failing(404, 0)));
  }

  @Test
  void cancellingTheFutureCancelsTheCall() throws Exception {
    String channel = failing(200, 2000);
    List<String> closed = new java.util.concurrent.CopyOnWriteArrayList<>();
    try (OccupancyClient watched =
        OccupancyClient.builder(harness.addr).intercept(closedStatuses(closed)).build()) {
      java.util.concurrent.CompletableFuture<PublishResult> inFlight =
          watched.publishIfOccupiedAsync(List.of(channel), "progress", "{}", null);
      Thread.sleep(300);
      assertTrue(inFlight.cancel(true));
      assertTrue(
          Harness.eventually(Duration.ofSeconds(1), () -> closed.contains("CANCELLED")),
          "the gRPC call was not cancelled: " + closed);
    }
  }

  private static io.grpc.ClientInterceptor closedStatuses(List<String> closed) {
    return new io.grpc.ClientInterceptor() {
      @Override
      public <Q, R> io.grpc.ClientCall<Q, R> interceptCall(
          io.grpc.MethodDescriptor<Q, R> method, io.grpc.CallOptions options, io.grpc.Channel next) {
        return new io.grpc.ForwardingClientCall.SimpleForwardingClientCall<>(
            next.newCall(method, options)) {
          @Override
          public void start(Listener<R> listener, io.grpc.Metadata headers) {
            super.start(
                new io.grpc.ForwardingClientCallListener.SimpleForwardingClientCallListener<>(
                    listener) {
                  @Override
                  public void onClose(Status status, io.grpc.Metadata trailers) {
                    closed.add(status.getCode().name());
                    super.onClose(status, trailers);
                  }
                },
                headers);
          }
        };
      }
    };
  }

  @Test
  void asyncPublishSeesTheSameStatus() throws Exception {
    String channel = failing(429, 0);
    ExecutionException error =
        assertThrows(
            ExecutionException.class,
            () ->
                client
                    .publishIfOccupiedAsync(List.of(channel), "progress", "{}", null)
                    .get(10, TimeUnit.SECONDS));
    assertEquals(
        Status.Code.RESOURCE_EXHAUSTED, ((OccupancyException) error.getCause()).getCode());
  }

  @Test
  void slowPusherIsTheGatesDeadlineExceeded() throws Exception {
    String channel = failing(200, 4000); // longer than the gate's 3 s Pusher timeout
    long started = System.nanoTime();
    OccupancyException error =
        assertThrows(
            OccupancyException.class,
            () -> client.publishIfOccupied(List.of(channel), "progress", "{}"));
    long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
    assertEquals(Status.Code.DEADLINE_EXCEEDED, error.getCode(), error.getMessage());
    assertTrue(tookMs >= 2500 && tookMs < 4900, "the gate gave up after ~3 s, took " + tookMs);
  }

  @Test
  void shortPublishTimeoutIsTheClientsDeadlineExceeded() throws Exception {
    String channel = failing(200, 4000);
    try (OccupancyClient impatient =
        OccupancyClient.builder(harness.addr).publishTimeout(Duration.ofMillis(500)).build()) {
      long started = System.nanoTime();
      OccupancyException error =
          assertThrows(
              OccupancyException.class,
              () -> impatient.publishIfOccupied(List.of(channel), "progress", "{}"));
      long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
      assertEquals(Status.Code.DEADLINE_EXCEEDED, error.getCode());
      assertTrue(tookMs < 2500, "the client's 500 ms deadline, took " + tookMs + " ms");
    }
  }

  @Test
  void closeLetsAnInFlightPublishFinish() throws Exception {
    String channel = failing(200, 1000); // Pusher answers 200 after 1 s
    OccupancyClient closing = OccupancyClient.builder(harness.addr).build();
    java.util.concurrent.CompletableFuture<PublishResult> inFlight =
        closing.publishIfOccupiedAsync(List.of(channel), "progress", "{}", null);
    Thread.sleep(200);
    closing.close();
    assertEquals(List.of(channel), inFlight.get(5, TimeUnit.SECONDS).published());
  }
}
