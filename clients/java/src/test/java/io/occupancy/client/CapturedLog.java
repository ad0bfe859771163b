package io.occupancy.client;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * Captures what the client logs (System.Logger goes to java.util.logging by default) instead of
 * printing it, so tests can assert on it and the run stays quiet.
 */
final class CapturedLog extends Handler implements AutoCloseable {
  final List<LogRecord> records = new CopyOnWriteArrayList<>();
  private final Logger logger = Logger.getLogger(OccupancyClient.class.getName());
  private final boolean usedParentHandlers;

  CapturedLog() {
    usedParentHandlers = logger.getUseParentHandlers();
    logger.setUseParentHandlers(false);
    logger.addHandler(this);
    setLevel(Level.ALL);
  }

  @Override
  public void publish(LogRecord record) {
    records.add(record);
  }

  @Override
  public void flush() {}

  @Override
  public void close() {
    logger.removeHandler(this);
    logger.setUseParentHandlers(usedParentHandlers);
  }
}
