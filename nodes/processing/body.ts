import type { ObjectStore } from "@nats-io/obj";
import { FenError } from "../../protocol/index.js";

/** Time allowed for reading a body object: this, plus BODY_READ_MS_PER_MB for each MiB of it. */
export const BODY_READ_BASE_MS = 15_000;
export const BODY_READ_MS_PER_MB = 1_000;

/**
 * The bytes of object `name` in `bodies`, or null when the store has no such object (or only its deletion).
 *
 * The client's `getBlob` reads the chunks through an ordered consumer and waits, without end, for a chunk
 * that is the last one stored: if every chunk was purged after the info was read (a purge by subject, a
 * partial restore), none comes, and the mail and its work item would be held for ever. (Chunks missing in part
 * end the read with a digest mismatch.) Here the read is given up after `timeoutMs` (by default
 * BODY_READ_BASE_MS plus BODY_READ_MS_PER_MB per MiB of the object), its consumer stopped, and the failure is
 * STORE_UNAVAILABLE: transient, so the work item is retried, and the retry's own checks (info, first chunk)
 * decide whether the body is gone. A read whose chunks do not match the object's digest fails with the
 * client's "received a corrupt object" error, as `getBlob` does; any other failure of the read, as it is.
 */
export async function readObject(bodies: ObjectStore, name: string, timeoutMs?: number): Promise<Uint8Array | null> {
  const r = await bodies.get(name);
  if (!r) return null;
  // The client rejects `error` and errors the stream alike when its consumer fails; the stream's error is the one
  // thrown below, so this one must not go unhandled (it would end the process).
  r.error.catch(() => undefined);
  const limit = timeoutMs ?? BODY_READ_BASE_MS + Math.ceil((r.info.size / (1024 * 1024)) * BODY_READ_MS_PER_MB);
  const reader = r.data.getReader();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // Cancelling the stream stops the client's consumer; the read below then ends, and is ignored.
      reader.cancel().catch(() => undefined);
      reject(new FenError("STORE_UNAVAILABLE", `reading body object ${name} (${r.info.size} bytes) took over ${limit} ms; given up, to be read again`));
    }, limit);
  });
  const readAll = async (): Promise<Uint8Array> => {
    const parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      size += value.length;
    }
    // The stream ends after the digest is checked (a mismatch errors the stream itself): `error` is settled.
    const err = await r.error;
    if (err) throw err;
    return Buffer.concat(parts, size);
  };
  const reading = readAll();
  reading.catch(() => undefined); // a read ended by the timeout's cancel must not be an unhandled rejection
  try {
    return await Promise.race([reading, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
