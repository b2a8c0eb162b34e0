import type { JetStreamManager } from "@nats-io/jetstream";
import { Names } from "../../protocol/index.js";
import type { Logger } from "../common/logger.js";
import type { Metrics } from "../common/metrics.js";

/** Keeps the `fen_work_consumer_pending` (lag) and `fen_work_consumer_ack_pending` (in flight + deferred) gauges current. */
export interface WorkLagSampler {
  /** Reads the consumer once and sets the gauge; returns `num_pending`. */
  sample(): Promise<number>;
  /** Samples now and then every `everyMs` until `stop()`. */
  start(): void;
  stop(): void;
}

/** Schedules `fn` every `ms`; returns a cancel function. Injected so tests need no timers. */
export type Every = (ms: number, fn: () => void) => () => void;

const intervalEvery: Every = (ms, fn) => {
  const t = setInterval(fn, ms);
  t.unref();
  return () => clearInterval(t);
};

/**
 * Samples `num_pending` of the durable work consumer (MAIL_WORK/processing):
 * work items stored but not yet delivered to any processing node, the
 * number an autoscaler (KEDA's nats-jetstream scaler reads the same field)
 * or an alert compares with a threshold. Every processing node reports the
 * same shared value; aggregate with `max`, not `sum`. A failed read sets
 * both gauges to NaN until a read succeeds (the last value would be a lie:
 * with the consumer deleted, `0` hid mails piling up in MAIL_WORK), logged
 * once at warn and once when it reads again.
 */
export function createWorkLagSampler(deps: {
  readonly jsm: JetStreamManager; readonly metrics: Metrics; readonly log: Logger;
  /** @default 5000 */
  readonly everyMs?: number;
  readonly every?: Every;
}): WorkLagSampler {
  let cancel: (() => void) | undefined;
  let running = false;
  let failing = false;
  const sample = async () => {
    const info = await deps.jsm.consumers.info(Names.workStream, Names.workConsumer);
    deps.metrics.workLag.set(info.num_pending);
    deps.metrics.workAckPending.set(info.num_ack_pending);
    return info.num_pending;
  };
  const tick = () => {
    if (running) return;
    running = true;
    sample().then(() => {
      if (failing) deps.log.info("work consumer lag read again");
      failing = false;
    }, (err: unknown) => {
      deps.metrics.workLag.set(NaN);
      deps.metrics.workAckPending.set(NaN);
      if (!failing) deps.log.warn({ err }, "work consumer lag unknown: the consumer cannot be read");
      failing = true;
    }).finally(() => { running = false; });
  };
  return {
    sample,
    start() {
      if (cancel) return;
      tick();
      cancel = (deps.every ?? intervalEvery)(deps.everyMs ?? 5000, tick);
    },
    stop() {
      cancel?.();
      cancel = undefined;
    },
  };
}
