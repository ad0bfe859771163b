// Local checks shared by the real client and the fake, so both reject exactly
// the same arguments, before any call (and so even while the gate is down).
import { status } from "@grpc/grpc-js";

import { OccupancyError } from "./errors.js";

/** The proto's channel name rule: 1 to 164 characters of `A-Z a-z 0-9 _ - = @ , . ;`. */
const CHANNEL_NAME = /^[A-Za-z0-9_\-=@,.;]{1,164}$/;
/** Most channels one publish may name. */
export const MAX_CHANNELS = 100;
/** Longest event name, in characters. */
export const MAX_EVENT_LENGTH = 200;

function invalid(details: string): OccupancyError {
  return new OccupancyError(status.INVALID_ARGUMENT, details);
}

/** Throws INVALID_ARGUMENT unless `channel` is a valid Pusher channel name. */
export function checkChannel(channel: unknown, field = "channel"): string {
  if (typeof channel !== "string") {
    throw invalid(`${field} must be a string, got ${typeof channel}`);
  }
  if (!CHANNEL_NAME.test(channel)) {
    throw invalid(
      `${field} ${JSON.stringify(channel.length > 200 ? channel.slice(0, 200) + "..." : channel)} is not a ` +
        "Pusher channel name: 1 to 164 characters of A-Z a-z 0-9 _ - = @ , . ;",
    );
  }
  return channel;
}

/** The arguments of one publish, checked. */
export interface CheckedPublish {
  channels: string[];
  event: string;
  data: string;
  socketId: string;
}

/** Throws INVALID_ARGUMENT unless the arguments of a publish are well formed. */
export function checkPublish(channels: unknown, event: unknown, data: unknown, socketId: unknown): CheckedPublish {
  if (!Array.isArray(channels)) {
    throw invalid("channels must be an array of channel names");
  }
  if (channels.length < 1 || channels.length > MAX_CHANNELS) {
    throw invalid(`channels must name 1 to ${MAX_CHANNELS} channels, got ${channels.length}`);
  }
  channels.forEach((channel, i) => checkChannel(channel, `channels[${i}]`));
  if (typeof event !== "string") {
    throw invalid(`event must be a string, got ${typeof event}`);
  }
  // Characters, as the proto counts them (code points, not UTF-16 units).
  const eventLength = [...event].length;
  if (eventLength < 1 || eventLength > MAX_EVENT_LENGTH) {
    throw invalid(`event must be 1 to ${MAX_EVENT_LENGTH} characters, got ${eventLength}`);
  }
  if (typeof data !== "string") {
    throw invalid("data must be a string (serialize objects with JSON.stringify)");
  }
  if (typeof socketId !== "string") {
    throw invalid("socketId must be a string");
  }
  return { channels: [...(channels as string[])], event, data, socketId };
}
