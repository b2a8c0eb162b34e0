import type { JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { isNoStreamListening, isRequestTimeout } from "./js-errors.js";
import type { Logger } from "./logger.js";

/** How long one attempt waits for the server's confirmation. */
const ATTEMPT_MS = 2000;
/** No attempt begins once this long has passed since the first: under the consumers' 10 s ack waits. */
const BUDGET_MS = 6000;

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
 * the step-down probe). So an attempt left unanswered for ATTEMPT_MS, or
 * refused for want of a responder (then after a pause, 100 ms doubling),
 * is made again, every ack sent again to the same subject, until
 * BUDGET_MS has passed since the first attempt. Sending an ack again is
 * harmless: one of a message already acknowledged is confirmed too, and a
 * new leader that has not caught up answers nothing (the next attempt asks
 * again).
 *
 * Never rejects: any other failure (the connection closed) ends the
 * attempts, and `confirmed: false` says the messages may come back (logged
 * as a warning; a confirmation that needed a resend is logged too); no
 * guarantee may rest on an ack.
 */
export async function ackConfirmed(nc: NatsConnection, msgs: readonly JsMsg[], log: Logger): Promise<AckConfirmation> {
  const r = await confirm(nc, msgs);
  const seq = msgs.at(-1)?.seq;
  if (!r.confirmed) log.warn({ err: r.error, attempts: r.attempts, seq, acks: msgs.length }, "ack unconfirmed; the message comes back after the ack wait and is recognised");
  else if (r.attempts > 1) log.info({ attempts: r.attempts, seq, acks: msgs.length }, "ack confirmed after it was sent again");
  return r;
}

async function confirm(nc: NatsConnection, msgs: readonly JsMsg[]): Promise<AckConfirmation> {
  const last = msgs.at(-1);
  if (!last) return { confirmed: true, attempts: 0 };
  const start = performance.now();
  const subject = ackSubject(last);
  let error: unknown;
  let pause = 100;
  for (let attempts = 1; ; attempts++) {
    try {
      if (attempts === 1) {
        for (const m of msgs) if (m !== last) m.ack();
        await last.ackAck({ timeout: ATTEMPT_MS });
      } else {
        for (const m of msgs) {
          const s = m === last ? undefined : ackSubject(m);
          if (s) nc.publish(s, ACK);
        }
        await nc.request(subject!, ACK, { timeout: ATTEMPT_MS });
      }
      return { confirmed: true, attempts };
    } catch (err) {
      error = err;
    }
    const refused = isNoStreamListening(error);
    if (!(refused || isRequestTimeout(error)) || !subject || nc.isClosed()) return { confirmed: false, attempts, error };
    if (refused) {
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(1000, pause * 2);
    }
    if (performance.now() - start >= BUDGET_MS) return { confirmed: false, attempts, error };
  }
}
