package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The call options of CONTRACT.md against the real gates: token and TLS on the secure gate, and
 * what reaches the wire (metadata, user agent, keepalive pings) through a recording relay.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OptionsTest {
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private Harness harness;
  private String secureAddr;
  private Path ca;
  private String token;
  private String oldToken;

  @BeforeAll
  void start() {
    harness = new Harness();
    secureAddr = Harness.env("OCCUPANCY_SECURE_ADDR");
    ca = Path.of(Harness.env("OCCUPANCY_TLS_CA"));
    token = Harness.env("OCCUPANCY_TEST_TOKEN");
    oldToken = Harness.env("OCCUPANCY_TEST_TOKEN_OLD");
  }

  private OccupancyClient.Builder secure() {
    return OccupancyClient.builder(secureAddr).caFile(ca).failOpen(false);
  }

  @Test
  void tokenAndCaFileReachTheSecureGate() throws Exception {
    String channel = Harness.channel("tls");
    try (OccupancyClient client = secure().token(token).build()) {
      assertFalse(client.isOccupied(channel));
      harness.occupy(channel);
      assertTrue(client.isOccupied(channel), "the secure gate serves the same state");
      assertEquals(
          List.of(channel), client.publishIfOccupied(List.of(channel), "e", "{}").published());
    }
  }

  @Test
  void givenChannelCredentialsOverrideTlsAndCaFile() throws Exception {
    io.grpc.ChannelCredentials tls =
        io.grpc.TlsChannelCredentials.newBuilder().trustManager(ca.toFile()).build();
    try (OccupancyClient client =
        OccupancyClient.builder(secureAddr)
            .caFile(Path.of("/nonexistent/ca.pem")) // not read: credentials win
            .credentials(tls)
            .token(token)
            .failOpen(false)
            .build()) {
      assertFalse(client.isOccupied(Harness.channel("creds")));
    }
  }

  @Test
  void theOldTokenWorksDuringRotation() {
    try (OccupancyClient client = secure().token(oldToken).build()) {
      assertFalse(client.isOccupied(Harness.channel("old-token")));
    }
  }

  @Test
  void missingOrWrongTokenRaisesUnauthenticatedEvenWhenFailingOpen() {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient none = secure().failOpen(true).onError(reported::add).build();
        OccupancyClient wrong =
            secure().token("not-" + token).failOpen(true).onError(reported::add).build()) {
      for (OccupancyClient client : List.of(none, wrong)) {
        OccupancyException error =
            assertThrows(OccupancyException.class, () -> client.isOccupied(Harness.channel("t")));
        assertEquals(Status.Code.UNAUTHENTICATED, error.getCode());
        OccupancyException publish =
            assertThrows(
                OccupancyException.class,
                () -> client.publishIfOccupied(List.of(Harness.channel("t")), "e", "{}"));
        assertEquals(Status.Code.UNAUTHENTICATED, publish.getCode());
      }
      assertEquals(List.of(), reported, "a configuration error is raised, not swallowed");
    }
  }

  @Test
  void tlsWithoutTheCaDoesNotTrustThePrivateCertificate() {
    try (OccupancyClient client =
        OccupancyClient.builder(secureAddr).tls(true).token(token).failOpen(false).build()) {
      OccupancyException error =
          assertThrows(OccupancyException.class, () -> client.isOccupied(Harness.channel("t")));
      assertEquals(Status.Code.UNAVAILABLE, error.getCode(), error.getMessage());
    }
  }

  @Test
  void plaintextToTheSecureGateFails() {
    try (OccupancyClient client =
        OccupancyClient.builder(secureAddr).token(token).failOpen(false).build()) {
      OccupancyException error =
          assertThrows(OccupancyException.class, () -> client.isOccupied(Harness.channel("t")));
      // grpc-java reports the TLS server's answer to a plaintext HTTP/2 preface as INTERNAL
      // ("http2 exception"): a configuration error, raised even when failing open.
      assertTrue(
          error.getCode() == Status.Code.INTERNAL || error.getCode() == Status.Code.UNAVAILABLE,
          error.getMessage());
    }
  }

  @Test
  void tokenMetadataAndUserAgentAreSentOnEveryCall() throws Exception {
    try (WireTap tap = WireTap.to(harness.addr);
        OccupancyClient client =
            OccupancyClient.builder(tap.address())
                .token("wire-token-123")
                .metadata("x-encoder-id", "encoder-7")
                .metadata(Map.of("x-farm", "farm-b"))
                .userAgent("render-farm/2.3")
                .failOpen(false)
                .build()) {
      assertFalse(client.isOccupied(Harness.channel("wire")));
      client.publishIfOccupied(List.of(Harness.channel("wire")), "e", "{}");
      // grpc-java (Netty's HPACK encoder) sends header strings under 512 bytes without Huffman
      // coding, so the values appear as they are in the first request's HEADERS frame (names in
      // HPACK's static table, such as authorization and user-agent, are sent as an index).
      String wire = tap.clientText();
      for (String expected :
          List.of(
              "Bearer wire-token-123",
              "x-encoder-id",
              "encoder-7",
              "x-farm",
              "farm-b",
              "render-farm/2.3 grpc-java")) {
        assertTrue(wire.contains(expected), expected + " was not sent");
      }
    }
  }

  @Test
  void keepaliveSendsPingsOnAnIdleConnection() throws Exception {
    try (WireTap tap = WireTap.to(harness.addr);
        OccupancyClient client =
            OccupancyClient.builder(tap.address())
                .keepalive(Duration.ofSeconds(10))
                .failOpen(false)
                .build()) {
      assertFalse(client.isOccupied(Harness.channel("ka")));
      long idleSince = System.nanoTime();
      boolean pinged =
          Harness.eventually(
              Duration.ofSeconds(16),
              () ->
                  tap.clientFrames().stream()
                      .anyMatch(
                          f ->
                              f.isPing()
                                  && f.nanos() - idleSince > TimeUnit.SECONDS.toNanos(8)));
      assertTrue(pinged, "no keepalive PING after 10 s idle; frames: " + tap.clientFrames());
      assertFalse(client.isOccupied(Harness.channel("ka")), "the connection still works");
      assertEquals(1, tap.connectionCount(), "on the same connection");
    }
  }

  @Test
  void interceptorsRunInOrderAfterTokenAndMetadataAreAttached() throws Exception {
    List<String> seen = new CopyOnWriteArrayList<>();
    try (OccupancyClient client =
        OccupancyClient.builder(harness.addr)
            .token("t0ken")
            .intercept(recorder("first", seen), recorder("second", seen))
            .failOpen(false)
            .build()) {
      client.isOccupied(Harness.channel("icpt"));
      client.publishIfOccupiedAsync(List.of(Harness.channel("icpt")), "e", "{}", null)
          .get(10, TimeUnit.SECONDS);
    }
    assertEquals(
        List.of(
            "first occupancy.v1.Occupancy/IsOccupied Bearer t0ken",
            "second occupancy.v1.Occupancy/IsOccupied Bearer t0ken",
            "first occupancy.v1.Occupancy/PublishIfOccupied Bearer t0ken",
            "second occupancy.v1.Occupancy/PublishIfOccupied Bearer t0ken"),
        seen);
  }

  @Test
  void asyncCallbacksRunOnTheGivenExecutor() throws Exception {
    AtomicInteger tasks = new AtomicInteger();
    ExecutorService pool =
        Executors.newFixedThreadPool(1, r -> new Thread(r, "caller-executor"));
    try (OccupancyClient client =
        OccupancyClient.builder(harness.addr)
            .executor(
                task -> {
                  tasks.incrementAndGet();
                  pool.execute(task);
                })
            .failOpen(false)
            .build()) {
      String thread =
          client
              .isOccupiedAsync(Harness.channel("exec"))
              .thenApply(answer -> Thread.currentThread().getName())
              .get(10, TimeUnit.SECONDS);
      assertEquals("caller-executor", thread);
      assertTrue(tasks.get() > 0);
    } finally {
      pool.shutdown();
    }
  }

  private static ClientInterceptor recorder(String name, List<String> seen) {
    return new ClientInterceptor() {
      @Override
      public <Q, R> ClientCall<Q, R> interceptCall(
          MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
        return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
          @Override
          public void start(Listener<R> listener, Metadata headers) {
            seen.add(name + " " + method.getFullMethodName() + " " + headers.get(AUTHORIZATION));
            super.start(listener, headers);
          }
        };
      }
    };
  }
}
