package io.occupancy.client;

import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Caps grpc-java's reconnect backoff at {@link #MAX_BACKOFF} (clients/CONTRACT.md).
 *
 * <p>grpc-java has no supported setting for the connection backoff: {@code ManagedChannelBuilder}
 * and the Netty and OkHttp builders expose none, the backoff policy provider lives in {@code
 * io.grpc.internal} (not public API), and a service config's retry policy only retries calls, it
 * does not shorten reconnects (grpc/grpc-java#9353, #7456, #6873: the maintainers declined to add
 * one). Its backoff grows from 1 s by 1.6x to 120 s, so after a long outage an encoder could wait
 * two minutes for a gate that is already back.
 *
 * <p>The supported lever is {@link ManagedChannel#resetConnectBackoff()}: it makes a channel in
 * TRANSIENT_FAILURE try again at once. This watches the channel's state and, while it stays in
 * TRANSIENT_FAILURE, resets the backoff every {@link #MAX_BACKOFF}, so a reconnect is attempted at
 * least that often: the effect of a 2 s cap, at the cost of one timer on a shared daemon thread.
 * A healthy channel costs nothing but the state-change subscription.
 */
final class ReconnectCap {
  static final Duration MAX_BACKOFF = Duration.ofSeconds(2);

  private final ManagedChannel channel;
  private final AtomicBoolean resetScheduled = new AtomicBoolean();

  private ReconnectCap(ManagedChannel channel) {
    this.channel = channel;
  }

  /** Starts watching {@code channel} until it shuts down. */
  static void watch(ManagedChannel channel) {
    new ReconnectCap(channel).onStateChange();
  }

  private void onStateChange() {
    ConnectivityState state = channel.getState(false);
    if (state == ConnectivityState.SHUTDOWN) {
      return;
    }
    if (state == ConnectivityState.TRANSIENT_FAILURE) {
      scheduleReset();
    }
    channel.notifyWhenStateChanged(state, this::onStateChange);
  }

  private void scheduleReset() {
    if (!resetScheduled.compareAndSet(false, true)) {
      return;
    }
    Scheduling.timer()
        .schedule(
            () -> {
              resetScheduled.set(false);
              if (channel.getState(false) == ConnectivityState.TRANSIENT_FAILURE) {
                channel.resetConnectBackoff();
                // The channel can stay in TRANSIENT_FAILURE through the next failed attempt
                // without a state change to wake us, so keep the cap in force by polling.
                scheduleReset();
              }
            },
            MAX_BACKOFF.toMillis(),
            java.util.concurrent.TimeUnit.MILLISECONDS);
  }
}
