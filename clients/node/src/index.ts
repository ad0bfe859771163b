/**
 * `@occupancy/client`: Node.js client of the occupancy gate, which tells
 * encoders whether anyone watches a Pusher Channels channel and publishes to
 * Pusher only when someone does. Behaviour: ../CONTRACT.md.
 *
 * @packageDocumentation
 */
export {
  OccupancyClient,
  DEFAULT_CHECK_TIMEOUT_MS,
  DEFAULT_PUBLISH_TIMEOUT_MS,
  DEFAULT_SYNC_TIMEOUT_MS,
  DEFAULT_CHANNEL_OPTIONS,
  ADDRESS_ENV,
  TARGET_ENV,
  type OccupancyClientOptions,
} from "./client.js";
export { FakeOccupancyClient, type FakeOccupancyClientOptions, type RecordedPublish } from "./fake.js";
export { OccupancyError, OccupancyClosedError, OUTAGE_CODES, isOutage } from "./errors.js";
export {
  createWarningHook,
  DEFAULT_WARNING_INTERVAL_MS,
  type ErrorHook,
  type WarningHookOptions,
} from "./policy.js";
export { RESUBSCRIBE_INITIAL_MS, RESUBSCRIBE_MAX_MS } from "./cache.js";
export type { OccupancyGate, PublishOptions, PublishResult } from "./types.js";
/**
 * gRPC status codes, re-exported so callers can compare `OccupancyError.code`
 * (e.g. `status.UNAVAILABLE`) without depending on `@grpc/grpc-js` themselves.
 */
export { status } from "@grpc/grpc-js";
