/**
 * `@occupancy/client`: Node.js client of the occupancy gate, which tells
 * encoders whether anyone watches a Pusher Channels channel and publishes to
 * Pusher only when someone does.
 *
 * @packageDocumentation
 */
export {
  OccupancyClient,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_PUBLISH_TIMEOUT_MS,
  type OccupancyClientOptions,
  type PublishOptions,
  type PublishResult,
} from "./client";
export { OccupancyError } from "./errors";
/**
 * gRPC status codes, re-exported so callers can compare `OccupancyError.code`
 * (e.g. `status.UNAVAILABLE`) without depending on `@grpc/grpc-js` themselves.
 */
export { status } from "@grpc/grpc-js";
/** TLS and other channel credentials for the `credentials` option. */
export { credentials, type ChannelCredentials } from "@grpc/grpc-js";
