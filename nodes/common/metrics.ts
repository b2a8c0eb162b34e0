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
  /**
   * Body objects the body reaper looked at, by `outcome`: `reaped` (deleted), `kept` (young, still referred to, or not
   * named as a body), `skipped` (a read failed or the mail moved meanwhile: looked at again next pass), `gone` (deleted
   * meanwhile, by another node).
   */
  readonly bodyReaper: Counter<"outcome">;
  /** Bytes of the body objects the body reaper deleted. */
  readonly bodyReaperBytes: Counter;
}

/**
 * `role`: the node the registry serves; it exports only the metrics that
 * node sets (a gateway's `fen_ledger_height 0` would mislead dashboards
 * that aggregate with min or avg). Without a role (tests), all of them.
 */
export function createMetrics(opts: { defaults?: boolean; role?: "gateway" | "processing" | "ledger" } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaults !== false) collectDefaultMetrics({ register: registry, prefix: "fen_" });
  const of = (role: "gateway" | "processing" | "ledger") => (opts.role === undefined || opts.role === role ? [registry] : []);
  const counter = (name: string, help: string, role: "gateway" | "processing") => new Counter({ name, help, registers: of(role) });
  return {
    registry,
    submitted: counter("fen_mails_submitted_total", "Mails accepted by the gateway (not duplicates).", "gateway"),
    delivered: counter("fen_mails_delivered_total", "Mails the relay accepted (Sent).", "processing"),
    deferred: counter("fen_mails_deferred_total", "Delivery attempts that ended Deferred: failed transiently, split by a relay's 452 (too many recipients), or given up at a node's drain.", "processing"),
    bounced: counter("fen_mails_bounced_total", "Mails that bounced.", "processing"),
    quarantined: counter("fen_mails_quarantined_total", "Mails quarantined by the classifier.", "processing"),
    rejected: counter("fen_mails_rejected_total", "Mails that ended Rejected: unparseable, or deleted from quarantine by an operator.", "processing"),
    deliveryLatency: new Histogram({
      name: "fen_delivery_latency_seconds", help: "Submit to relay acceptance.", registers: of("processing"),
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
    }),
    recipientsRefused: new Counter({
      name: "fen_recipients_refused_total", help: "Recipients a relay refused at RCPT TO (transient ones are retried).", labelNames: ["class"], registers: of("processing"),
    }),
    workLag: new Gauge({ name: "fen_work_consumer_pending", help: "Work items waiting for the processing consumer.", registers: of("processing") }),
    workAckPending: new Gauge({
      name: "fen_work_consumer_ack_pending",
      help: "Work items taken and not yet acked: in flight, plus Deferred mails waiting for their retry (the consumer's max_ack_pending caps it).",
      registers: of("processing"),
    }),
    bodyReaper: new Counter({
      name: "fen_body_reaper_objects_total", help: "Body objects the body reaper looked at, by outcome (reaped, kept, skipped: read failed or mail moved, gone: deleted meanwhile).",
      labelNames: ["outcome"], registers: of("processing"),
    }),
    bodyReaperBytes: new Counter({ name: "fen_body_reaper_reaped_bytes_total", help: "Bytes of the orphaned body objects the body reaper deleted.", registers: of("processing") }),
    ledgerHeight: new Gauge({ name: "fen_ledger_height", help: "Tree size of the latest ledger checkpoint.", registers: of("ledger") }),
  };
}
