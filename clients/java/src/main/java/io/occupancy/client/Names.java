package io.occupancy.client;

import io.grpc.Status;
import java.util.List;

/**
 * The request checks every client makes locally, before any call (clients/CONTRACT.md, "Checked
 * locally"): the same rules as the proto's, so a malformed request fails even while the gate is
 * down, and a fail-open client never answers "occupied" for a name Pusher would reject. Shared by
 * {@link OccupancyClient} and {@link FakeOccupancyGate}, so the fake refuses exactly what the real
 * client refuses.
 */
final class Names {
  static final int MAX_CHANNEL_LENGTH = 164;
  static final int MAX_CHANNELS_PER_PUBLISH = 100;
  static final int MAX_EVENT_LENGTH = 200;
  private static final int MAX_QUOTED = 200;

  private Names() {}

  /** Whether {@code name} is 1 to 164 characters of {@code A-Z a-z 0-9 _ - = @ , . ;}. */
  static boolean isValidChannel(String name) {
    int length = name.length();
    if (length == 0 || length > MAX_CHANNEL_LENGTH) {
      return false;
    }
    for (int i = 0; i < length; i++) {
      char c = name.charAt(i);
      boolean ok =
          (c >= 'A' && c <= 'Z')
              || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9')
              || c == '_'
              || c == '-'
              || c == '='
              || c == '@'
              || c == ','
              || c == '.'
              || c == ';';
      if (!ok) {
        return false;
      }
    }
    return true;
  }

  /** Throws the INVALID_ARGUMENT {@link OccupancyException} for a malformed channel name. */
  static void checkChannel(String name) {
    if (!isValidChannel(name)) {
      throw invalid(
          "channel "
              + quote(name)
              + " is not a valid Pusher channel name (1 to 164 characters of"
              + " A-Z a-z 0-9 _ - = @ , . ;)");
    }
  }

  /** Checks a publish request: 1 to 100 valid channel names and an event name of 1 to 200. */
  static void checkPublish(List<String> channels, String event) {
    if (channels.isEmpty() || channels.size() > MAX_CHANNELS_PER_PUBLISH) {
      throw invalid(
          "channels: 1 to " + MAX_CHANNELS_PER_PUBLISH + " names are needed, got " + channels.size());
    }
    for (String channel : channels) {
      checkChannel(channel);
    }
    int eventLength = event.codePointCount(0, event.length());
    if (eventLength == 0 || eventLength > MAX_EVENT_LENGTH) {
      throw invalid(
          "event: the event name must be 1 to "
              + MAX_EVENT_LENGTH
              + " characters, got "
              + eventLength);
    }
  }

  private static OccupancyException invalid(String description) {
    return new OccupancyException(Status.INVALID_ARGUMENT.withDescription(description), null);
  }

  private static String quote(String name) {
    String shown =
        name.length() > MAX_QUOTED ? name.substring(0, MAX_QUOTED) + "...(" + name.length() + " chars)" : name;
    return "\"" + shown + "\"";
  }
}
