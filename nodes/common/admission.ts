import { FenError } from "../../protocol/index.js";

/**
 * Bounds what a request handler works on at once: past `maxBytes` of
 * request data (or `maxRequests` requests) in flight, a request is refused
 * with BUSY (transient, nothing done) before any work. One request is always
 * taken, however large. Only requests whose work awaits pile up: a handler
 * that runs to its reply without yielding has one in flight at a time.
 */
export function createAdmission(
  limits: { readonly maxBytes: number; readonly maxRequests?: number },
  busyMessage: (requests: number, bytes: number) => string,
): <T>(size: number, work: () => Promise<T>) => Promise<T> {
  let requests = 0;
  let bytes = 0;
  return async (size, work) => {
    if (requests >= (limits.maxRequests ?? Infinity) || (requests > 0 && bytes + size > limits.maxBytes)) {
      throw new FenError("BUSY", busyMessage(requests, bytes));
    }
    requests++;
    bytes += size;
    try {
      return await work();
    } finally {
      requests--;
      bytes -= size;
    }
  };
}
