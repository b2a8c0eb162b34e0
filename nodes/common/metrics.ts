import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/**
 * The Prometheus metrics of a node. One registry per node process, created
 * by the composition root and injected; actors only increment.
 */
export interface Metrics {
  readonly registry: Registry;
  readonly submitted: Counter;
  readonly delivered: Counter;
  readonly deferred: Counter;
  readonly bounced: Counter;
  readonly quarantined: Counter;
  readonly rejected: Counter;
  /** Seconds from submission to the relay's 250. */
  readonly deliveryLatency: Histogram;
  /** Recipients a relay refused at RCPT TO, by class (`transient` ones are retried). */
  readonly recipientsRefused: Counter<"class">;
  /** Work items not yet delivered to the work consumer (num_pending). */
  readonly workLag: Gauge;
  /** Work items delivered and not yet acked (num_ack_pending): in flight at the nodes, plus Deferred mails waiting for their retry. */
  readonly workAckPending: Gauge;
  /** Entries in the ledger (tree size of the latest checkpoint). */
  readonly ledgerHeight: Gauge;
}

export function createMetrics(opts: { defaults?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaults !== false) collectDefaultMetrics({ register: registry, prefix: "fen_" });
  const counter = (name: string, help: string) => new Counter({ name, help, registers: [registry] });
  return {
    registry,
    submitted: counter("fen_mails_submitted_total", "Mails accepted by the gateway (not duplicates)."),
    delivered: counter("fen_mails_delivered_total", "Mails the relay accepted (Sent)."),
    deferred: counter("fen_mails_deferred_total", "Delivery attempts that failed transiently (Deferred)."),
    bounced: counter("fen_mails_bounced_total", "Mails that bounced."),
    quarantined: counter("fen_mails_quarantined_total", "Mails quarantined by the classifier."),
    rejected: counter("fen_mails_rejected_total", "Mails rejected by the processing node (e.g. unparseable)."),
    deliveryLatency: new Histogram({
      name: "fen_delivery_latency_seconds", help: "Submit to relay acceptance.", registers: [registry],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
    }),
    recipientsRefused: new Counter({
      name: "fen_recipients_refused_total", help: "Recipients a relay refused at RCPT TO (transient ones are retried).", labelNames: ["class"], registers: [registry],
    }),
    workLag: new Gauge({ name: "fen_work_consumer_pending", help: "Work items waiting for the processing consumer.", registers: [registry] }),
    workAckPending: new Gauge({
      name: "fen_work_consumer_ack_pending",
      help: "Work items taken and not yet acked: in flight, plus Deferred mails waiting for their retry (the consumer's max_ack_pending caps it).",
      registers: [registry],
    }),
    ledgerHeight: new Gauge({ name: "fen_ledger_height", help: "Tree size of the latest ledger checkpoint.", registers: [registry] }),
  };
}
