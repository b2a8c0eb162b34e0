import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import type { ObjectInfo, ObjectStore } from "@nats-io/obj";
import { BodyObjects, Codecs, Names, quarantineSubject, workSubject } from "../../protocol/index.js";
import type { MailId } from "../../protocol/index.js";
import type { Clock, Random } from "../common/clock.js";
import { decodeStored, firstBySubjectFromLeader, storeFailure, storeRead } from "../common/js-errors.js";
import type { Logger } from "../common/logger.js";
import type { MailStateStore, Versioned } from "../common/mail-state.js";
import type { Metrics } from "../common/metrics.js";

/** What a pass of the body reaper reads and writes. */
export interface BodyReapDeps {
  /** Reads MAIL_WORK and MAIL_QUARANTINE through their stream leaders (STREAM.MSG.GET), never a Direct Get. */
  readonly jsm: JetStreamManager;
  /** `mail_bodies`: listed, and its orphaned objects deleted. */
  readonly bodies: ObjectStore;
  /** The mails' status entries (read only; `get` reads through the bucket's stream leader). */
  readonly state: Pick<MailStateStore, "get">;
  /** Ages are `clock.now()` less the object's mtime. */
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: Metrics;
}

export interface BodyReapOptions {
  /** Objects younger than this are kept whatever refers to them (FEN_BODY_REAP_AGE_MS). */
  readonly minAgeMs: number;
  /** Asked before each mail: true ends the pass there (the node is draining). */
  readonly stopping?: () => boolean;
}

/** What one pass did. Every object listed is `seen`; each one judged is counted once more, in one of the others. */
export interface BodyReapReport {
  readonly seen: number;
  /** Deleted by this pass. */
  readonly reaped: number;
  /** Bytes of the objects this pass deleted. */
  readonly bytes: number;
  /** Younger than `minAgeMs`, named by a work item or kept copy, or not named as a body (BodyObjects). */
  readonly kept: number;
  /** A read failed, or the mail's state moved while its references were read: judged again next pass. */
  readonly skipped: number;
  /** Deleted meanwhile (another node's pass, its mail's settle). */
  readonly gone: number;
  /** The pass ended early (`stopping`); objects not judged yet are in `seen` only. */
  readonly stopped: boolean;
}

/** Most messages one mail has on its work or quarantine subject that a pass reads; past it the mail is skipped. */
const MAX_MESSAGES_PER_SUBJECT = 64;

/**
 * Every message of `stream` on `subject`, oldest first, each read through the stream leader. A stored message
 * is never missed for a replica that lags (a Direct Get might be answered by one). @throws on any failed read
 */
async function allOnSubject(jsm: JetStreamManager, stream: string, subject: string): Promise<StoredMsg[]> {
  const found: StoredMsg[] = [];
  for (let seq = 1; ;) {
    const m = await storeRead(`${subject} in ${stream}`, () => firstBySubjectFromLeader(jsm, stream, subject, seq));
    if (!m) return found;
    found.push(m);
    if (found.length > MAX_MESSAGES_PER_SUBJECT) throw storeFailure(`reading ${subject} in ${stream}`, new Error(`more than ${MAX_MESSAGES_PER_SUBJECT} messages`));
    seq = m.seq + 1;
  }
}

/** A mail's references, read while its state stood still (`moved`: it did not). */
type References = { readonly moved: false; readonly names: ReadonlySet<string> } | { readonly moved: true };

const sameEntry = (a: Versioned | undefined, b: Versioned | undefined): boolean =>
  a === undefined ? b === undefined : b !== undefined && a.revision === b.revision;

/**
 * The body objects the work items (MAIL_WORK) and kept copies (MAIL_QUARANTINE) of `mailId` name, read through
 * the stream leaders, between two reads of the mail's status entry; `moved` when the entry changed in between.
 *
 * A mail goes from one stream to the other by copying first and removing second: quarantining stores the kept
 * copy, swaps the state to Quarantined, then acks the work item; a release swaps the state, queues the released
 * item, then removes the kept copy. Reading MAIL_QUARANTINE, MAIL_WORK, then MAIL_QUARANTINE again sees the copy
 * or the original of a move made during the reads, and a move whose swap falls between the two status reads is
 * seen as `moved`. @throws on any failed read, and on an item or copy that does not decode
 */
async function referencesOf(deps: BodyReapDeps, mailId: MailId): Promise<References> {
  const before = await deps.state.get(mailId);
  const names = new Set<string>();
  const reads: readonly (readonly [string, string])[] = [
    [Names.quarantineStream, quarantineSubject(mailId)], [Names.workStream, workSubject(mailId)], [Names.quarantineStream, quarantineSubject(mailId)],
  ];
  for (const [stream, subject] of reads) {
    for (const m of await allOnSubject(deps.jsm, stream, subject)) {
      const item = decodeStored(Codecs.workItem, m.data, `message ${m.seq} of ${stream}`);
      if ("object" in item.body) names.add(item.body.object);
    }
  }
  const after = await deps.state.get(mailId);
  return sameEntry(before, after) ? { moved: false, names } : { moved: true };
}

/**
 * One pass of the body reaper over `mail_bodies`: deletes the objects no
 * mail can still need, and only those. (Losing a live body loses its mail:
 * it ends Rejected BODY_UNAVAILABLE.)
 *
 * An object is deleted when all of these hold, else kept:
 * - it is named as a body (`<mailId>.<16 hex>`, {@link BodyObjects});
 * - it is at least `minAgeMs` old (its mtime). Until its work item is
 *   stored nothing refers to a body (a gateway between its put and its
 *   publish, at most FEN_SUBMIT_TIMEOUT_MS): only the age protects it;
 * - no work item of its mail in MAIL_WORK and no kept copy in
 *   MAIL_QUARANTINE names it, every one of them read through the stream
 *   leader, all of them, and the mail's status entry the same before and
 *   after (see `referencesOf`). Any failed read keeps the mail's objects
 *   until the next pass.
 *
 * Every state in which a mail still needs its body has an item or copy
 * naming it, so the object of a mail in any state may go once nothing
 * names it:
 * - no status entry, PendingProcessing: its work item waits in MAIL_WORK
 *   (acked only from a later state); a released mail's kept copy stays
 *   until its released item is queued;
 * - Processing, Validated, DeliveryScheduled: the node at work holds the
 *   work item, acked only after the outcome is recorded;
 * - Deferred: the work item, nak'ed until its retry;
 * - Quarantined: the kept copy (stored before the work item is acked), until
 *   a release queues a new item with the same body or a delete drops it;
 * - Sent, Bounced, Rejected: none needed; an item or copy still naming the
 *   object keeps it for whoever finishes that mail (settle, a repeated
 *   quarantine delete) to delete.
 *
 * Several nodes may run passes at once: each deletes only what it judged
 * unreferenced, and deleting an object twice is harmless.
 */
export async function reapBodies(deps: BodyReapDeps, opts: BodyReapOptions): Promise<BodyReapReport> {
  const started = performance.now();
  const listed = await deps.bodies.list().catch((err: unknown) => { throw storeFailure("listing mail_bodies", err); });
  const objects = listed.filter((o) => !o.deleted);
  const counts = { reaped: 0, bytes: 0, kept: 0, skipped: 0, gone: 0 };
  const count = (outcome: "reaped" | "kept" | "skipped" | "gone", n = 1) => {
    counts[outcome] += n;
    if (n > 0) deps.metrics.bodyReaper.inc({ outcome }, n);
  };
  const now = deps.clock.now();
  const byMail = new Map<MailId, ObjectInfo[]>();
  for (const o of objects) {
    const mailId = BodyObjects.mailIdOf(o.name);
    // A future mtime (clocks apart) or none that parses is young too.
    const age = now - Date.parse(o.mtime);
    if (!mailId || !(age >= opts.minAgeMs)) { count("kept"); continue; }
    byMail.set(mailId, [...(byMail.get(mailId) ?? []), o]);
  }
  let stopped = false;
  let failures = 0;
  for (const [mailId, old] of byMail) {
    if (opts.stopping?.()) { stopped = true; break; }
    let refs: References;
    try {
      refs = await referencesOf(deps, mailId);
    } catch (err) {
      if (failures++ === 0) deps.log.warn({ err, mailId }, "body reaper: reading what refers to a mail's bodies failed; kept until the next pass");
      count("skipped", old.length);
      continue;
    }
    if (refs.moved) {
      deps.log.debug({ mailId }, "body reaper: the mail's state moved while its references were read; kept until the next pass");
      count("skipped", old.length);
      continue;
    }
    for (const o of old) {
      if (refs.names.has(o.name)) { count("kept"); continue; }
      try {
        // The object judged, not one put since under its name (none is: the names are random).
        const current = await deps.bodies.info(o.name);
        if (!current || current.deleted) { count("gone"); continue; }
        if (current.nuid !== o.nuid) { count("skipped"); continue; }
        await deps.bodies.delete(o.name);
        count("reaped");
        counts.bytes += o.size;
        deps.metrics.bodyReaperBytes.inc(o.size);
        deps.log.debug({ mailId, object: o.name, size: o.size, mtime: o.mtime }, "body reaper: orphaned body deleted");
      } catch (err) {
        if (failures++ === 0) deps.log.warn({ err, mailId, object: o.name }, "body reaper: deleting an orphaned body failed; tried again next pass");
        count("skipped");
      }
    }
  }
  const report: BodyReapReport = { seen: objects.length, ...counts, stopped };
  deps.log.info({ ...report, failures, ms: Math.round(performance.now() - started) }, "body reaper pass");
  return report;
}

/** The periodic body reaper of a processing node. */
export interface BodyReaper {
  /** Schedules the passes: the first at a random point of the first interval. Nothing when the interval is 0. */
  start(): void;
  /** No pass starts after this; resolves once the pass under way, if any, has ended (it stops before its next mail). */
  stop(): Promise<void>;
}

/** {@link BodyReapDeps} plus the random source of the jitter. */
export interface BodyReaperDeps extends BodyReapDeps {
  readonly random: Random;
}

/**
 * Runs {@link reapBodies} every `intervalMs` (FEN_BODY_REAP_INTERVAL_MS; 0: never): the first pass at a random
 * point of the first interval, each next one 0.75 to 1.25 intervals after the previous one ended, so the nodes
 * of a deployment spread theirs. One pass at a time; a pass that fails is logged, and the next one is scheduled.
 */
export function createBodyReaper(deps: BodyReaperDeps, opts: { readonly intervalMs: number; readonly minAgeMs: number }): BodyReaper {
  const log = deps.log.child({ actor: "body-reaper" });
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopping = false;
  let stopped: Promise<void> | undefined;
  const schedule = (delayMs: number) => {
    if (stopping) return;
    timer = setTimeout(pass, delayMs);
    // The node's life is its actor's: a pending pass does not hold the process.
    timer.unref();
  };
  const pass = () => {
    timer = undefined;
    running = reapBodies({ ...deps, log }, { minAgeMs: opts.minAgeMs, stopping: () => stopping })
      .then(() => undefined, (err: unknown) => log.warn({ err }, "body reaper pass failed; trying again at the next"))
      .finally(() => {
        running = undefined;
        schedule(Math.round(opts.intervalMs * (0.75 + 0.5 * deps.random())));
      });
  };
  return {
    start() {
      if (opts.intervalMs <= 0) { log.info("body reaper off (FEN_BODY_REAP_INTERVAL_MS 0)"); return; }
      schedule(Math.round(opts.intervalMs * deps.random()));
    },
    stop() {
      stopping = true;
      clearTimeout(timer);
      stopped ??= (async () => { await running; })();
      return stopped;
    },
  };
}
