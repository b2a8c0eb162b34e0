import type { Consumer, JsMsg } from "@nats-io/jetstream";
import { ClosedConnectionError, DrainingConnectionError } from "@nats-io/nats-core";
import { isLeadershipChange } from "./js-errors.js";
import type { Logger } from "./logger.js";

/** Options of {@link createPullFeed}. */
export interface PullFeedOptions {
  /** Messages one pull request asks for. */
  readonly batch: number;
  /**
   * Life of one pull request, in milliseconds (at least 1000). A draining
   * feed waits for its outstanding request to end, so this bounds
   * {@link PullFeed.drain} when the stream is idle.
   */
  readonly expiresMs: number;
  /** First delay before a pull request is tried again after one failed; doubles up to 5 s. @default 250 */
  readonly retryMs?: number;
  /**
   * Resolves when the caller can take another `batch` messages; each pull
   * request after the first waits for it. Without it, messages are pulled
   * as fast as the server sends them.
   */
  readonly room?: () => Promise<void>;
}

/** Pause before pulling again after the consumer's leader changed (a new leader is in place by then). */
const LEADERSHIP_CHANGE_PAUSE_MS = 20;

/** A feed of a durable pull consumer's messages; see {@link createPullFeed}. */
export interface PullFeed {
  /**
   * Asks for nothing more and resolves once the outstanding pull request
   * has ended (filled, or expired: the server's 408 says so): from then on
   * the server sends this feed nothing, and every message it sent has been
   * passed to `onMessage`. Takes up to `expiresMs` on an idle stream.
   */
  drain(): Promise<void>;
  /**
   * Stops at once, for a node that gives up: messages the server is sending
   * right now are dropped and come back only after the consumer's ack_wait.
   */
  stop(): void;
  /** Resolves once the feed has ended (drained, stopped, or its connection closed); never rejects. */
  readonly closed: Promise<void>;
  /**
   * Why pulling fails, while the last pull request failed (e.g. the durable
   * consumer was deleted: the feed keeps trying, in silence but for a log
   * line per failure), or undefined once a request succeeds again.
   */
  failing(): string | undefined;
}

/**
 * Feeds `onMessage` the messages of a durable pull consumer, in the order
 * they arrive, from one pull request at a time (`fetch`), each asking for
 * `batch` messages and living `expiresMs`, the next one once `room()` says
 * so; a failed request is logged and made again (with backoff), one voided
 * by a change of the consumer's leader is made again at once. Unlike `consume()`, whose `stop()` unsubscribes while its
 * pull requests are still open (the messages the server sends meanwhile are
 * dropped by the client and wait out ack_wait), the feed can be drained:
 * every message delivered to it reaches `onMessage`, which can then handle
 * or `nak()` it.
 */
export function createPullFeed(consumer: Consumer, onMessage: (m: JsMsg) => void, opts: PullFeedOptions, log: Logger): PullFeed {
  let draining = false;
  let stopped = false;
  let current: { stop(): void } | undefined;
  let cancelRetry: (() => void) | undefined;
  let failing: string | undefined;
  const retryMs = opts.retryMs ?? 250;
  let onDrain!: () => void;
  const drained = new Promise<void>((r) => (onDrain = r));

  const closed = (async () => {
    for (let failures = 0, first = true; !draining && !stopped; first = false) {
      // Back-pressure: every request after the first waits until the caller has room for a batch, after a failed or
      // voided request too (messages may have come before it failed); a drain need not wait.
      if (!first && opts.room) {
        await Promise.race([opts.room(), drained]);
        if (draining || stopped) break;
      }
      try {
        const messages = await consumer.fetch({ max_messages: opts.batch, expires: opts.expiresMs });
        current = messages;
        if (stopped) messages.stop();
        for await (const m of messages) {
          failing = undefined;
          onMessage(m);
        }
        failures = 0;
        failing = undefined;
      } catch (err) {
        // A closed connection ends the feed, as it ends a `consume()`.
        // A draining feed asks for nothing more: with no request outstanding, it is done.
        if (stopped || draining || err instanceof ClosedConnectionError || err instanceof DrainingConnectionError) break;
        // The consumer's leader changed and the server voided the request: the messages it sent before came through;
        // pull again from the new leader, with no failure counted (a backoff here left a ledger node 30 s behind and
        // unready under repeated step-downs).
        if (isLeadershipChange(err)) {
          log.debug({ err }, "the consumer's leader changed; pulling again");
          await new Promise((r) => setTimeout(r, LEADERSHIP_CHANGE_PAUSE_MS));
          continue;
        }
        failures++;
        const delay = Math.min(5000, retryMs * 2 ** (failures - 1));
        failing = `pulling from the consumer fails (${String((err as Error)?.message ?? err).slice(0, 200)}); retried every ${delay} ms`;
        log.warn({ err, failures, delay }, "pull request failed; pulling again");
        // An interruptible sleep: a drain need not wait it out, nothing is outstanding.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          cancelRetry = () => { clearTimeout(timer); resolve(); };
        });
        cancelRetry = undefined;
      } finally {
        current = undefined;
      }
    }
  })();

  return {
    closed,
    failing: () => failing,
    async drain() {
      draining = true;
      onDrain();
      cancelRetry?.();
      await closed;
    },
    stop() {
      stopped = true;
      onDrain();
      cancelRetry?.();
      current?.stop();
    },
  };
}

/**
 * The `room` option of a feed whose caller frees room as it works:
 * `room()` resolves at once while `hasRoom()` holds, else at the first
 * `freed()` call after which it holds. Call `freed()` whenever room may have
 * been made (a message handled, a batch taken off a queue).
 */
export function createRoomGate(hasRoom: () => boolean): { room: () => Promise<void>; freed: () => void } {
  let waiter: (() => void) | undefined;
  return {
    room: () => hasRoom() ? Promise.resolve() : new Promise<void>((r) => (waiter = r)),
    freed: () => {
      if (!waiter || !hasRoom()) return;
      const w = waiter;
      waiter = undefined;
      w();
    },
  };
}
