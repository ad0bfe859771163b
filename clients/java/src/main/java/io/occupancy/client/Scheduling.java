package io.occupancy.client;

import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;

/**
 * The library's one timer thread, shared by every client in the process: it runs the short,
 * non-blocking timers of the reconnect cap and of cached mode's resubscription backoff. A daemon
 * thread, created on first use, so it never keeps a JVM alive and costs nothing to a process that
 * builds no client.
 */
final class Scheduling {
  private Scheduling() {}

  private static final class Holder {
    static final ScheduledExecutorService TIMER = create();

    private static ScheduledExecutorService create() {
      ScheduledThreadPoolExecutor timer =
          new ScheduledThreadPoolExecutor(
              1,
              runnable -> {
                Thread thread = new Thread(runnable, "occupancy-client-timer");
                thread.setDaemon(true);
                return thread;
              });
      timer.setRemoveOnCancelPolicy(true);
      return timer;
    }
  }

  static ScheduledExecutorService timer() {
    return Holder.TIMER;
  }
}
