import type { JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { RequestError } from "@nats-io/nats-core";
import { isNoStreamListening, isRequestTimeout } from "./js-errors.js";

/** Options of {@link ackConfirmed}. */
export interface AckOptions {
  /** How long one attempt waits for the server's confirmation. @default 2000 */
  readonly attemptMs?: number;
  /**
   * No attempt begins once this long has passed since the first (keep it
   * under the consumer's ack_wait, or the messages may be redelivered
   * meanwhile). @default 6000
   */
  readonly budgetMs?: number;
}

/** What {@link ackConfirmed} came to. */
export interface AckConfirmation {
  /** The server confirmed the acks (the last attempt's). */
  readonly confirmed: boolean;
  /** Attempts made (1 when the first was answered). */
  readonly attempts: number;
  /** Why the last attempt failed, when not confirmed. */
  readonly error?: unknown;
}

const ACK = new TextEncoder().encode("+ACK");

/** The subject a message's acks go to. nats.js's JsMsg keeps it as `reply` (its interface does not show it). */
function ackSubject(m: JsMsg): string | undefined {
  const reply = (m as JsMsg & { readonly reply?: unknown }).reply;
  return typeof reply === "string" && reply.length > 0 ? reply : undefined;
}

/** No one took the ack: a consumer between leaders has no subscription for a moment (the server answers at once). */
function isNoResponders(err: unknown): boolean {
  return (err instanceof RequestError && err.isNoResponders()) || isNoStreamListening(err);
}

/**
 * Acknowledges `msgs`, messages of one consumer received on one connection,
 * and has the server confirm it: plain acks for all but the last, a double
 * ack (`ackAck`) for the last. The consumer handles one connection's acks in
 * order, so its reply to the last covers them all.
 *
 * Around a change of the consumer's leader acks are lost: the old leader
 * drops those it took and has not replicated, with the reply, and for a
 * moment no server takes them at all ("no responders"). The messages would
 * come back after ack_wait (about 20 per processing node in a 28 s run of
 * the step-down probe). So an attempt left unanswered for `attemptMs`, or
 * refused for want of a responder (then after a pause, 100 ms doubling),
 * is made again, every ack sent again to the same subject, until
 * `budgetMs` has passed since the first attempt. Sending an ack again is
 * harmless: one of a message already acknowledged is confirmed too, and a
 * new leader that has not caught up answers nothing (the next attempt asks
 * again).
 *
 * Never rejects: any other failure (the connection closed) ends the
 * attempts, and `confirmed: false` says the messages may come back; no
 * guarantee may rest on an ack.
 */
export async function ackConfirmed(nc: NatsConnection, msgs: readonly JsMsg[], opts: AckOptions = {}): Promise<AckConfirmation> {
  const last = msgs.at(-1);
  if (!last) return { confirmed: true, attempts: 0 };
  const attemptMs = opts.attemptMs ?? 2000;
  const budgetMs = opts.budgetMs ?? 6000;
  const start = performance.now();
  const subject = ackSubject(last);
  let error: unknown;
  let pause = 100;
  for (let attempts = 1; ; attempts++) {
    try {
      if (attempts === 1) {
        for (const m of msgs) if (m !== last) m.ack();
        await last.ackAck({ timeout: attemptMs });
      } else {
        for (const m of msgs) {
          const s = m === last ? undefined : ackSubject(m);
          if (s) nc.publish(s, ACK);
        }
        await nc.request(subject!, ACK, { timeout: attemptMs });
      }
      return { confirmed: true, attempts };
    } catch (err) {
      error = err;
    }
    const refused = isNoResponders(error);
    if (!(refused || isRequestTimeout(error)) || !subject || nc.isClosed()) return { confirmed: false, attempts, error };
    if (refused) {
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(1000, pause * 2);
    }
    if (performance.now() - start >= budgetMs) return { confirmed: false, attempts, error };
  }
}
