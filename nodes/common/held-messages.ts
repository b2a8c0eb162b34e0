import type { JsMsg } from "@nats-io/jetstream";
import type { Clock } from "./clock.js";

/**
 * The JetStream messages a node holds (received, neither acknowledged nor
 * given back), kept from redelivery: see {@link holdMessages}.
 */
export interface HeldMessages {
  /** Holds `m` from now on (again: no-op). */
  add(m: JsMsg): void;
  /** Stops holding `m` (call it once `m` is acknowledged, terminated or `nak`ed). */
  delete(m: JsMsg): void;
  readonly size: number;
  /** The messages held, oldest first. */
  messages(): IterableIterator<JsMsg>;
  /** Holds nothing more; the keep-alive stops. */
  clear(): void;
}

/**
 * Holds messages of a consumer whose ack wait is `ackWaitMs`: a message held
 * for a third of it since it came or was last kept is kept with `working()`,
 * checked every sixth, so none is kept later than half the ack wait after
 * the last time and the server does not send a held message again. The
 * timer runs only while something is held (and never keeps the process up).
 */
export function holdMessages(ackWaitMs: number, clock: Clock): HeldMessages {
  const keepMs = ackWaitMs / 3;
  const held = new Map<JsMsg, number>();
  let timer: ReturnType<typeof setInterval> | undefined;
  const stopTimer = () => { clearInterval(timer); timer = undefined; };
  const tick = () => {
    if (held.size === 0) { stopTimer(); return; }
    const stale = clock.now() - keepMs;
    // A connection closed under a stopping node makes working() throw: nothing to keep alive then.
    try {
      for (const [m, at] of held) if (at <= stale) { m.working(); held.set(m, clock.now()); }
    } catch { /* closed */ }
  };
  return {
    add(m) {
      if (held.has(m)) return;
      held.set(m, clock.now());
      if (!timer) {
        timer = setInterval(tick, keepMs / 2);
        timer.unref();
      }
    },
    delete(m) { held.delete(m); },
    get size() { return held.size; },
    messages: () => held.keys(),
    clear() { held.clear(); stopTimer(); },
  };
}
