import type { JetStreamClient, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { ObjectStore } from "@nats-io/obj";
import { Svcm } from "@nats-io/services";
import type { Service } from "@nats-io/services";
import {
  Codecs, FenError, Names, ServiceSubjects, quarantineRequestSubject, toFenError, workSubject,
} from "../../protocol/index.js";
import type { ClassifyReply, EventDetail, MailId, QuarantineReply, QueueReply, StatusRecord, WorkItem } from "../../protocol/index.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import type { MailStateStore, Versioned } from "../common/mail-state.js";
import { newestEvent } from "../common/mail-state.js";
import type { Metrics } from "../common/metrics.js";
import { serveEndpoint } from "../common/rpc.js";
import { createAdmission } from "../common/admission.js";
import { decodeStored, isNotFound, publishOnce, storeRead, storeWrite } from "../common/js-errors.js";
import { readKeptCopy, removeKeptCopy } from "./kept-copy.js";
import { checkMime, checkRequestSize, checkStructuredSize, composeStructured, messageIdForPreview, tooLarge } from "../gateway/index.js";
import type { MailClassifier } from "./classifier.js";
import { classifyAlone } from "./classifier.js";

export const PROCESSING_VERSION = "0.1.0";

/**
 * Most bytes of work items one `mail.queue` or `mail.quarantine.list` page reads (bodies up to 512 KiB ride in
 * them): a page of 1,000 large quarantined mails read 650 MB into the node and outlasted the caller's timeout.
 * A page cut short by it says so with `next`.
 */
const PAGE_BYTES = 8 * 1024 * 1024;

/** Prefix of the reason recorded on a mail released from quarantine. */
const RELEASED = "released:";

export interface ProcessingServiceDeps {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly state: MailStateStore;
  /** mail_bodies: a deleted quarantined mail's body object is dropped. */
  readonly bodies: ObjectStore;
  readonly classifier: MailClassifier;
  readonly clock: Clock;
  readonly log: Logger;
  /** A delete from quarantine ends the mail Rejected: counted in `fen_mails_rejected_total`. */
  readonly metrics: Metrics;
  readonly quarantineThreshold: number;
  /** Largest message `mail.classify` scores (the gateway's FEN_MAX_MESSAGE_BYTES). */
  readonly maxMessageBytes: number;
}

/**
 * Most request bytes `mail.classify` works on at once (and most requests);
 * past these a request is answered BUSY at once. With the committed model a
 * request is decoded and scored without yielding (~75 ms for 5 MB), so one
 * is in flight at a time and this bounds only classifiers that await. What
 * kept a burst of large requests from cutting the node off as a slow
 * consumer is the servers' `max_pending` (SERVER_LIMITS in
 * nodes/local/nats-cluster.ts), not this.
 */
const CLASSIFY_MAX_BYTES_IN_FLIGHT = 48 * 1024 * 1024;
const CLASSIFY_MAX_IN_FLIGHT = 256;

/**
 * The `fen-processing` micro-service: `mail.classify` ("would this be
 * flagged?", nothing is stored or sent), the operator's `mail.queue` (the
 * mails in MAIL_WORK and their states) and quarantine requests. A quarantined mail is kept in MAIL_QUARANTINE until an operator
 * releases it (a new work item that skips the classifier: delivered once)
 * or deletes it (Rejected, with the operator's reason).
 */
export async function startProcessingService(deps: ProcessingServiceDeps): Promise<Service> {
  const { js, jsm, state, log } = deps;
  const service = await new Svcm(deps.nc).add({
    name: Names.processingService, version: PROCESSING_VERSION, description: "FastEmailNet classification, queue and quarantine",
  });

  const admit = createAdmission({ maxBytes: CLASSIFY_MAX_BYTES_IN_FLIGHT, maxRequests: CLASSIFY_MAX_IN_FLIGHT },
    (requests, bytes) => `this node is scoring ${requests} mails (${bytes} request bytes); retry shortly`);
  serveEndpoint(service, { name: "classify", subject: ServiceSubjects.classify }, async (data) => {
    // The checks a submission gets (size, MIME), so the answer is about a mail the gateway would take.
    checkRequestSize(data.length, deps.maxMessageBytes);
    return admit(data.length, async () => {
      const req = Codecs.classifyRequest.decode(data);
      let raw: Buffer;
      if ("raw" in req.mail) {
        raw = Buffer.from(req.mail.raw, "base64");
        if (raw.length > deps.maxMessageBytes) tooLarge(raw.length, deps.maxMessageBytes);
        checkMime(raw);
      } else {
        checkStructuredSize(req.mail, deps.maxMessageBytes);
        raw = await composeStructured(req.mail, messageIdForPreview(), new Date(deps.clock.now()));
        if (raw.length > deps.maxMessageBytes) tooLarge(raw.length, deps.maxMessageBytes);
        checkMime(raw, "mail");
      }
      // A mail the classifier fails on alone is CLASSIFIER_UNSCORABLE (permanent: asking again cannot help).
      const { score } = await classifyAlone(deps.classifier, raw);
      const flagged = score >= deps.quarantineThreshold;
      const reply: ClassifyReply = { kind: "mail.classify.reply", v: 1, score, verdict: flagged ? "spam" : "ham", flagged, modelVersion: deps.classifier.version };
      return Codecs.classifyReply.encode(reply);
    });
  }, log);

  /**
   * One page of a stream of work items (MAIL_WORK, MAIL_QUARANTINE), oldest
   * first from sequence `after` + 1: each item with its mail's state record
   * (read at once), how many items there are from the first one on, and
   * the cursor of the next page (absent on the last).
   */
  const page = async (stream: string, after: number, limit: number, maxBytes?: number) => {
    const { read, remaining, pending } = await storeRead(`the ${stream} page`, async () => {
      const got = { read: [] as { seq: number; item: WorkItem }[], remaining: 0, pending: 0 };
      try {
        const it = await jsm.direct.getBatch(stream, { seq: after + 1, batch: limit, ...(maxBytes ? { max_bytes: maxBytes } : {}) });
        for await (const m of it) {
          if (got.read.length === 0) got.remaining = m.pending + 1;
          got.pending = m.pending;
          got.read.push({ seq: m.seq, item: decodeStored(Codecs.workItem, m.data, `work item ${m.seq} of ${stream}`) });
        }
      } catch (err) {
        if (!isNotFound(err)) throw err; // not found: nothing at or after `after` + 1
      }
      return got;
    });
    const records = await Promise.all(read.map(async (x) => (await state.get(x.item.mailId))?.record));
    const next = pending > 0 ? read.at(-1)?.seq : undefined;
    return { entries: read.map((x, i) => ({ ...x, record: records[i] })), remaining, next };
  };

  /**
   * `mail.queue`: one page of MAIL_WORK, each mail with its state (a mail
   * no node has claimed yet is PendingProcessing). A snapshot: a mail
   * settled while the page is read shows its final state.
   */
  serveEndpoint(service, { name: "queue", subject: ServiceSubjects.queue }, async (data) => {
    const req = Codecs.queueRequest.decode(data);
    const ci = await storeRead("the work consumer's info", () => jsm.consumers.info(Names.workStream, Names.workConsumer));
    const { entries, remaining, next } = await page(Names.workStream, req.after, req.limit, PAGE_BYTES);
    const reply: QueueReply = {
      kind: "mail.queue.reply", v: 1, remaining, waiting: ci.num_pending, held: ci.num_ack_pending, ...(next ? { next } : {}),
      mails: entries.map(({ seq, item, record: r }) => ({
        mailId: item.mailId, seq, state: r?.state ?? "PendingProcessing", attempt: r?.attempt ?? 0,
        submittedAt: item.submittedAt, since: r?.updatedAt ?? item.submittedAt, recipients: item.envelope.to.length,
        ...(r?.state === "Deferred" && r.detail.retryAt ? { retryAt: r.detail.retryAt } : {}),
        ...(r?.detail.error ? { error: { code: r.detail.error.code, message: r.detail.error.message } } : {}),
      })),
    };
    return Codecs.queueReply.encode(reply);
  }, log);

  /**
   * The quarantined mail `mailId` and its kept work item. Also a mail an
   * earlier release or delete left half done (its state moved, but the work
   * item was not queued or the kept copy not removed: a server failing over
   * in between), so repeating the request finishes it and nothing is stuck.
   */
  const keptCopy = (mailId: MailId) => readKeptCopy(jsm, mailId);
  /**
   * The operator request `r` shows stopped halfway, if any: its state moved (PendingProcessing "released: …", or
   * Rejected QUARANTINED) while the kept copy is still there. Repeating that request finishes it.
   */
  const unfinished = (r: StatusRecord): "release" | "delete" | undefined => {
    if (r.state === "PendingProcessing" && String(r.detail.reason ?? "").startsWith(RELEASED)) return "release";
    if (r.state === "Rejected" && r.detail.error?.code === "QUARANTINED") return "delete";
    return undefined;
  };

  const quarantined = async (mailId: MailId, kind: "release" | "delete") => {
    let cur = await state.get(mailId);
    let msg: StoredMsg | null | undefined;
    // The node quarantining a mail stores the kept copy and the events before it creates the status entry, and
    // mail.status shows Quarantined from the events alone: a request made right then finds no entry yet. With a
    // kept copy stored, the entry is read again for up to ~2 s before the answer is NOT_FOUND.
    if (!cur && (msg = await keptCopy(mailId))) {
      for (let i = 0; i < 40 && !cur; i++) {
        await new Promise((r) => setTimeout(r, 50));
        cur = await state.get(mailId);
      }
    }
    if (!cur) throw notFound(`no mail ${mailId}`);
    const r = cur.record;
    const resumed = unfinished(r) === kind;
    if (r.state !== "Quarantined" && !resumed) throw notFound(`mail ${mailId} is ${r.state}, not Quarantined`);
    msg ??= await keptCopy(mailId);
    if (!msg) throw notFound(`mail ${mailId} is ${r.state}, not in ${Names.quarantineStream}`);
    return { cur, msg, resumed };
  };

  /** NOT_FOUND on the request's `mailId`: no such mail, or not one the request can act on. */
  const notFound = (message: string) => new FenError("NOT_FOUND", message, { fields: [{ field: "mailId", code: "NOT_FOUND", message }] });

  /**
   * A mail as a quarantine reply lists it (score -1: no classification recorded). A mail past Quarantined (an
   * unfinished or just finished request) no longer carries its classification: it is read from its Quarantined
   * event.
   */
  const listed = async (r: StatusRecord, at: string): Promise<QuarantineReply["mails"][number]> => {
    const c = r.state === "Quarantined" ? r.detail.classification
      : await storeRead("the Quarantined event", () => newestEvent(jsm, r.mailId, "Quarantined")).then((e) => e?.detail.classification, () => undefined);
    const left = r.state === "Quarantined" ? undefined : unfinished(r);
    return { mailId: r.mailId, score: c?.score ?? -1, modelVersion: c?.modelVersion ?? "", at, ...(left ? { unfinished: left } : {}) };
  };

  /** Store writes of a request: a failure is STORE_UNAVAILABLE (repeat the request: it finishes what was begun). */
  const write = <T>(what: string, step: Promise<T>): Promise<T> => storeWrite(what, step, "repeat the request: it finishes what this one began");

  serveEndpoint(service, { name: "quarantine", subject: ServiceSubjects.quarantineAll }, async (data, m) => {
    const req = Codecs.quarantineRequest.decode(data);
    if (m.subject !== quarantineRequestSubject(req.kind)) {
      throw new FenError("BAD_REQUEST", `a ${req.kind} request must be sent to ${quarantineRequestSubject(req.kind)}, not ${m.subject}`, {
        fields: [{ field: "kind", code: "BAD_REQUEST", message: `sent to ${m.subject}` }],
      });
    }
    const reply: QuarantineReply = { kind: "mail.quarantine.reply", v: 1, mails: [], done: true };
    if (req.kind === "mail.quarantine.list") {
      // A page of the oldest `limit` kept mails after `after` (fewer past PAGE_BYTES; a released or deleted one is skipped); `next` continues it.
      const { entries, next } = await page(Names.quarantineStream, req.after, req.limit, PAGE_BYTES);
      // Also a mail whose release or delete stopped halfway (its kept copy is still here), marked `unfinished`.
      for (const { record } of entries) {
        if (record && (record.state === "Quarantined" || unfinished(record))) reply.mails.push(await listed(record, record.updatedAt));
      }
      reply.done = next === undefined;
      if (next !== undefined) reply.next = next;
      return Codecs.quarantineReply.encode(reply);
    }
    const release = req.kind === "mail.quarantine.release";
    const { cur, msg, resumed } = await quarantined(req.mailId, release ? "release" : "delete");
    const item: WorkItem = decodeStored(Codecs.workItem, msg.data, `kept copy ${msg.seq} of ${Names.quarantineStream}`);
    const recipients = item.envelope.to;
    /**
     * The operator's transition, swapped before its event is written: of a
     * release and a delete racing on one mail, the loser writes nothing
     * (and is told what the mail now is). A repeat of a request whose
     * events may not have gone out (resumed) publishes them again.
     */
    const decide = async (step: { state: "PendingProcessing" | "Rejected"; detail: EventDetail }): Promise<{ next: Versioned; recorded: boolean }> => {
      // recorded: this request stored the transition's event (a repeat that finds it stored did not).
      if (resumed) return { next: cur, recorded: await republish(cur) };
      try {
        return { next: await write(`recording ${step.state} for ${req.mailId}`, state.advance(cur, [step], recipients, undefined, { commitFirst: true })), recorded: true };
      } catch (err) {
        if (toFenError(err).code !== "STATE_CONFLICT") throw err;
        // The winner's swap is known to the leader (it refused ours) before it is stored: wait until it reads back.
        let now = await state.get(req.mailId).catch(() => undefined);
        for (let i = 0; i < 40 && now && now.revision <= cur.revision; i++) {
          await new Promise((r) => setTimeout(r, 25));
          now = await state.get(req.mailId).catch(() => undefined);
        }
        // The same request made again while this one was under way (a caller whose first try went unanswered),
        // or another operator's identical one: carried on as its repeat, so neither answer is a refusal.
        if (now && unfinished(now.record) === (release ? "release" : "delete")) return { next: now, recorded: await republish(now) };
        throw notFound(`mail ${req.mailId} is ${now?.record.state ?? "in an unknown state (its read failed)"}, not Quarantined: another request changed it just now`);
      }
    };
    /**
     * Publishes the state `v` records again, for a request finishing what another began; true if this stored it.
     * Looked for first (its newest event of that state, through the leader): MAIL_EVENTS drops a repeated event
     * id only within its 2 h duplicate window, and an operator may repeat a request days later.
     */
    const republish = async (v: Versioned): Promise<boolean> => {
      const r = v.record;
      const found = await storeRead(`the ${r.state} event`, () => newestEvent(jsm, r.mailId, r.state));
      if (found?.attempt === r.attempt) return false;
      return write(`publishing the ${r.state} event of ${r.mailId}`, state.republish(v, recipients));
    };
    if (release) {
      const { next } = await decide({ state: "PendingProcessing", detail: { reason: `${RELEASED} ${req.reason}` } });
      // Same message id for a repeated release of the same quarantine: queued once.
      // The attempts so far that count (the processor subtracts attemptsNotCounted itself).
      const releasedItem: WorkItem = { ...item, released: true, attemptsBefore: next.record.attempt - (next.record.attemptsNotCounted ?? 0) };
      // A repeat of this release handled at the same moment (on this node or another) publishes the same message id.
      await write(`queueing ${item.mailId}`, publishOnce(js, workSubject(item.mailId), Codecs.workItem.encode(releasedItem), { msgID: `${item.mailId}.release.${next.record.attempt}` }));
      log.info({ mailId: item.mailId, resumed }, "released from quarantine");
    } else {
      const { recorded } = await decide({ state: "Rejected", detail: { reason: `deleted from quarantine: ${req.reason}`, error: { code: "QUARANTINED", message: req.reason } } });
      // Counted by the request that stored the Rejected event: the one that moved the mail, or a repeat finishing a
      // delete whose event publish failed after its swap (a repeat finding the event stored counts nothing).
      if (recorded) deps.metrics.rejected.inc();
      // Before the kept copy goes: a failure here leaves the request to be repeated, not the body for ever.
      // (Deleting an object that is gone already succeeds.)
      if ("object" in item.body) await write(`deleting the body of ${item.mailId}`, deps.bodies.delete(item.body.object));
      log.info({ mailId: item.mailId, resumed }, "deleted from quarantine");
    }
    // A repeat of this request handled at the same moment may have removed the kept copy first (the server then
    // answers 10057 "no message found", a code it gives any failed delete): done if the copy is gone.
    await write(`removing the kept copy of ${item.mailId}`, removeKeptCopy(jsm, msg.seq));
    reply.mails.push(await listed(cur.record, new Date(deps.clock.now()).toISOString()));
    return Codecs.quarantineReply.encode(reply);
  }, log);
  return service;
}
