import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";

/** JetStream API error codes meaning "no such stream / consumer / message". */
const NOT_FOUND_CODES = new Set([10059, 10014, 10037]);

/**
 * True for JetStream's "not found" answers: an API error with a not-found
 * code (stream info, consumer info), or a 404 status (Direct Get past the
 * last message). Classified by code, never by message text.
 */
export function isNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return NOT_FOUND_CODES.has(err.code) || err.status === 404;
  // JetStreamStatusError (a status reply, e.g. Direct Get) is not exported; it is a JetStreamError with a numeric code.
  if (err instanceof JetStreamError) return (err as JetStreamError & { code?: unknown }).code === 404;
  return false;
}
