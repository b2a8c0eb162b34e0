import { createHash, randomBytes } from "node:crypto";
import { JetStreamApiError } from "@nats-io/jetstream";
import type { JetStreamClient, JetStreamManager, PubAck } from "@nats-io/jetstream";
import type { ObjectStore } from "@nats-io/obj";
import {
  BodyObjects, Codecs, DUPLICATE_WINDOW_MS, FenError, INLINE_BODY_LIMIT, Names, contentSha256, mailIdFromContent, mailIdFromIdempotencyKey, mailboxOf, messageIdFor,
  workSubject,
} from "../../protocol/index.js";
import type { BodyRef, Envelope, MailEvent, MailId, SubmitReply, StructuredMail, SubmitRequest, WorkItem } from "../../protocol/index.js";
import {
  decodeStored, firstBySubject, isDuplicateInProcess, orItsCause, isNoStreamListening, isNotFound, isOverMaxMsgSize, isRequestTimeout, storeRead, storeWrite,
} from "../common/js-errors.js";
import type { Clock } from "../common/clock.js";
import type { MailStateStore } from "../common/mail-state.js";
import type { Logger } from "../common/logger.js";
import type { Metrics } from "../common/metrics.js";
import { composeStructured, composedSizeAtLeast, prepareRaw, rawEnvelope, structuredRecipients } from "./compose.js";
import { checkMime } from "./mime.js";
import { createAdmission } from "../common/admission.js";
import { pendingEvent } from "./status.js";

/** What `mail.submit` needs. */
export interface SubmitDeps {
  readonly js: JetStreamClient;
  /** Reads only; its requests should time out early enough for storeRead to ask again (STORE_READ_ATTEMPT_MS). */
  readonly jsm: JetStreamManager;
  readonly bodies: ObjectStore;
  readonly state: MailStateStore;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: Metrics;
}

export interface SubmitOptions {
  readonly maxMessageBytes: number;
  readonly messageIdDomain: string;
  readonly submitTimeoutMs: number;
  /** Most request bytes worked on at once (one request is always taken). @default SUBMIT_MAX_BYTES_IN_FLIGHT */
  readonly maxBytesInFlight?: number;
}

/** JSON with object keys sorted, so equal mails hash equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** @throws FenError MESSAGE_TOO_LARGE naming the field `mail`. */
export function tooLarge(size: number, max: number, atLeast = false): never {
  const is = atLeast ? "at least " : "";
  throw new FenError("MESSAGE_TOO_LARGE", `message is ${is}${size} bytes, the limit is ${max}`, {
    fields: [{ field: "mail", code: "MESSAGE_TOO_LARGE", message: `${is}${size} > ${max} bytes` }],
  });
}

/** Refuses a structured mail whose parts alone exceed the limit, before it is composed. @throws FenError MESSAGE_TOO_LARGE */
export function checkStructuredSize(mail: StructuredMail, max: number): void {
  const atLeast = composedSizeAtLeast(mail);
  if (atLeast > max) tooLarge(atLeast, max, true);
}

/** Most request bytes one gateway works on at once; more are answered BUSY (nothing stored). */
export const SUBMIT_MAX_BYTES_IN_FLIGHT = 128 * 1024 * 1024;

/**
 * How many request bytes a byte of a mail may take: base64 makes 4 of 3,
 * and the line breaks MIME tools wrap it with add more, most as CRLF, which
 * JSON writes as 4 bytes (`\r\n`): 4/3 × 80/76 ≈ 1.404 at 76 columns,
 * 1.417 at 64. Generous on purpose (wrapped at 46 columns or more): the
 * exact verdict is the decoded size's.
 */
const REQUEST_BYTES_PER_MAIL_BYTE = 1.45;

/**
 * The largest request that can carry a mail of `maxMessageBytes`: base64, wrapped (REQUEST_BYTES_PER_MAIL_BYTE),
 * plus room for the JSON around it. A bound, not a measure: it must stay below the NATS servers' max_payload.
 */
export const maxRequestBytesFor = (maxMessageBytes: number): number => Math.ceil(maxMessageBytes * REQUEST_BYTES_PER_MAIL_BYTE) + 64 * 1024;

/**
 * How many request bytes a byte of a structured mail may take, at most, for a printable text: JSON may write
 * every character as `\uXXXX` (Python's default, ensure_ascii), 6 bytes for a character of 2 UTF-8 bytes that
 * the composed mail carries as base64 (2 × 4/3 × 78/76 = 2.74 bytes): 2.19. (A CJK character: 6 for 4.1, 1.46,
 * over REQUEST_BYTES_PER_MAIL_BYTE, which refused such a mail of 10,478,952 composed bytes before decoding it.)
 */
const ESCAPED_REQUEST_BYTES_PER_MAIL_BYTE = 2.5;

/**
 * The bound {@link checkRequestSize} holds a request to before decoding it: one carrying a mail of
 * `maxMessageBytes` however its JSON is written (ESCAPED_REQUEST_BYTES_PER_MAIL_BYTE). Loose on purpose; at the
 * default limit the servers' max_payload is the tighter one.
 */
export const requestBoundFor = (maxMessageBytes: number): number => Math.ceil(maxMessageBytes * ESCAPED_REQUEST_BYTES_PER_MAIL_BYTE) + 64 * 1024;

/** The largest message limit whose requests (maxRequestBytesFor) fit a server's `max_payload`. */
export function maxMessageBytesWithin(maxPayload: number): number {
  let bytes = Math.floor((maxPayload - 64 * 1024) / REQUEST_BYTES_PER_MAIL_BYTE);
  while (bytes > 0 && maxRequestBytesFor(bytes) > maxPayload) bytes--;
  return Math.max(bytes, 0);
}

/**
 * Refuses a message limit (FEN_MAX_MESSAGE_BYTES) whose largest request the NATS server the gateway is
 * connected to would not carry (its `max_payload`, from the connection's INFO): mails under the limit would be
 * refused by the client before they reach any gateway, with a message that names no limit the operator set.
 * Nothing is checked when the server's limit is not known.
 * @throws FenError CONFIG_INVALID naming FEN_MAX_MESSAGE_BYTES and the server's max_payload
 */
export function checkServerPayload(maxMessageBytes: number, maxPayload: number | undefined): void {
  if (maxPayload === undefined) return;
  const request = maxRequestBytesFor(maxMessageBytes);
  if (request <= maxPayload) return;
  const message = `FEN_MAX_MESSAGE_BYTES (${maxMessageBytes}) needs requests of up to ${request} bytes, more than the NATS server's max_payload (${maxPayload}) carries: ` +
    `set it to at most ${maxMessageBytesWithin(maxPayload)}, or raise the servers' max_payload`;
  throw new FenError("CONFIG_INVALID", message, { fields: [{ field: "FEN_MAX_MESSAGE_BYTES", code: "CONFIG_INVALID", message }] });
}

/**
 * Refuses, before decoding it, a request larger than one carrying a mail of `maxMessageBytes` can be, so a huge
 * request costs no decoding. The refusal names the request's size: the mail's is not known before decoding.
 * A request under the bound may still carry a mail over the limit: the decoded (or composed) size decides.
 * @throws FenError MESSAGE_TOO_LARGE
 */
export function checkRequestSize(length: number, maxMessageBytes: number): void {
  const most = requestBoundFor(maxMessageBytes);
  if (length <= most) return;
  throw new FenError("MESSAGE_TOO_LARGE", `the request is ${length} bytes, more than one carrying a message of at most ${maxMessageBytes} bytes (the limit) takes (${most})`, {
    fields: [{ field: "mail", code: "MESSAGE_TOO_LARGE", message: `request of ${length} > ${most} bytes, for a limit of ${maxMessageBytes} bytes` }],
  });
}

/** The mail of an idempotency key and its PendingProcessing event (any age), if it was stored. */
async function byKey(jsm: JetStreamManager, mailId: MailId): Promise<{ mailId: MailId; first: MailEvent | undefined }> {
  return { mailId, first: await pendingEvent(jsm, mailId) };
}

/**
 * The mail id of a submission without idempotency key: that of an
 * identical mail submitted less than DUPLICATE_WINDOW_MS ago (found in the
 * previous or the current window), or the current window's.
 */
async function byContent(deps: SubmitDeps, contentHash: string): Promise<{ mailId: MailId; first: MailEvent | undefined }> {
  const now = deps.clock.now();
  const window = Math.floor(now / DUPLICATE_WINDOW_MS);
  const recent = (found: { first: MailEvent | undefined }) => found.first !== undefined && now - Date.parse(found.first.at) < DUPLICATE_WINDOW_MS;
  // Looked up at once. (Two identical submissions racing across a window boundary, neither stored yet, get two ids.)
  const [previous, current] = await Promise.all([
    byKey(deps.jsm, mailIdFromContent(contentHash, window - 1)),
    byKey(deps.jsm, mailIdFromContent(contentHash, window)),
  ]);
  return recent(previous) ? previous : current;
}

/**
 * The content hash of the first submission of `mailId`, for a submission
 * that lost the race to store it: from its PendingProcessing event, or,
 * while the first submission is still on its way to that event, from its
 * work item. If neither shows up within ~2 s (the first submission's
 * gateway died between the two, and no node has taken the item yet), this
 * cannot tell a duplicate from a conflict: STORE_UNAVAILABLE, retry.
 */
async function firstContentHash(deps: SubmitDeps, mailId: MailId): Promise<string | undefined> {
  for (let i = 0; i < 20; i++) {
    const event = await pendingEvent(deps.jsm, mailId);
    if (event) return event.detail.contentSha256;
    const item = await firstBySubject(deps.jsm, Names.workStream, workSubject(mailId));
    if (item) return decodeStored(Codecs.workItem, item.data, `work item ${item.seq} of ${Names.workStream}`).contentSha256;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new FenError("STORE_UNAVAILABLE", `mail ${mailId} is being stored by a concurrent submission; retry with the same idempotency key`);
}

/** How a STORE_UNAVAILABLE answer to a submission ends. */
const NOTHING_STORED = "nothing was stored; retry (with the same idempotency key, if the request has one)";

/**
 * A store write of a submission before its work item is stored (its body
 * object): a failure (a timeout, a lost connection, a stream that does not
 * answer) is STORE_UNAVAILABLE, which tells the publisher to retry with the
 * same idempotency key, not INTERNAL (see storeWrite). (Reads go through
 * storeRead, which also asks again.)
 */
const storeStep = <T>(what: string, step: Promise<T>): Promise<T> => storeWrite(what, step, NOTHING_STORED);

/** The longest one attempt to publish a work item waits for its ack, unless FEN_SUBMIT_TIMEOUT_MS / 4 is longer. */
export const WORK_PUBLISH_ATTEMPT_MS = 1000;

/**
 * How long one publish of a submission waits for its ack, for a submit timeout of `timeoutMs`: a quarter of
 * it, at least WORK_PUBLISH_ATTEMPT_MS (an answer takes milliseconds unless a leader stepping down dropped it).
 */
const publishAttemptMs = (timeoutMs: number): number => Math.max(WORK_PUBLISH_ATTEMPT_MS, Math.floor(timeoutMs / 4));

/**
 * How a work item's publish ended: stored by this submission (`mine`
 * true), found stored by another submission of the same mail (false), or
 * found stored by a submission that may have been this one (undefined: an
 * attempt of ours went unanswered and the stored item can no longer be
 * read, e.g. a node already finished it).
 */
interface WorkPublished {
  readonly ack: PubAck;
  readonly mine: boolean | undefined;
}

/**
 * Publishes the work item until JetStream answers, within `timeoutMs` from
 * the first try (and at most timeoutMs / 25 tries, whatever the injected
 * clock says). Made again, 25 ms more each time and at most 250 ms apart:
 * - a publish that found no stream listening (a leader change of
 *   MAIL_WORK; nothing was stored, see isNoStreamListening);
 * - a publish left unanswered for an attempt's time (the larger of
 *   WORK_PUBLISH_ATTEMPT_MS and timeoutMs / 4): the leader may have taken it
 *   and dropped it as it stepped down. The same Nats-Msg-Id makes the next
 *   attempt store the item or get the duplicate ack of the stored one, so an
 *   unanswered attempt costs latency, not the caller's request;
 * - after such an attempt, "duplicate message id is in process" (it may be
 *   that very attempt, still being replicated).
 * A duplicate ack after an unanswered attempt is checked against the stored
 * item's bytes (`mine`). Any other failure, and the last attempt's timeout,
 * is thrown.
 */
async function publishWorkItem(deps: SubmitDeps, subject: string, data: Uint8Array, mailId: MailId, timeoutMs: number): Promise<WorkPublished> {
  const deadline = deps.clock.now() + timeoutMs;
  const maxTries = Math.max(1, Math.ceil(timeoutMs / 25));
  const attemptMs = publishAttemptMs(timeoutMs);
  let unanswered = 0;
  for (let i = 1; ; i++) {
    const left = deadline - deps.clock.now();
    try {
      const ack = await deps.js.publish(subject, data, { msgID: mailId, timeout: Math.max(1, Math.min(left, attemptMs)) });
      if (unanswered > 0) deps.log.info({ mailId, unanswered, duplicate: ack.duplicate }, "work item publish answered after unanswered attempts");
      if (!ack.duplicate) return { ack, mine: true };
      return { ack, mine: unanswered === 0 ? false : await storedIsThis(deps, ack, data) };
    } catch (err) {
      if (isRequestTimeout(err)) unanswered++;
      const again = isNoStreamListening(err) || isRequestTimeout(err) || (unanswered > 0 && isDuplicateInProcess(err));
      const pause = Math.min(250, 25 * i);
      if (!again || deadline - deps.clock.now() <= pause || i >= maxTries) {
        // After an unanswered attempt nothing proves the item unstored: whatever ended the tries, the caller must
        // treat it as a timeout (keep the body object), not as a refusal or another submission's write.
        if (unanswered === 0) throw err;
        throw new Error(`the work item's publish went unanswered ${unanswered} times, then: ${String((err as Error)?.message ?? err)}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}

/**
 * Whether the item a duplicate ack points at holds exactly `data`; undefined if it cannot be read (a node took
 * it from the work queue since, or the read failed, asked again as every store read is).
 */
async function storedIsThis(deps: SubmitDeps, ack: PubAck, data: Uint8Array): Promise<boolean | undefined> {
  const stored = await storeRead("the stored work item", () => deps.jsm.streams.getMessage(ack.stream, { seq: ack.seq }).catch((err: unknown) => {
    if (isNotFound(err)) return null;
    throw err;
  })).catch(() => null);
  return stored ? Buffer.from(stored.data).equals(Buffer.from(data)) : undefined;
}

/**
 * Handles one `mail.submit`. Validation happens before any write, so a
 * rejected request stores nothing. The reply is produced only after
 * JetStream acknowledged the work item (replicated and, with
 * `sync_interval: always`, fsynced).
 *
 * Idempotency: the mail id is derived from the idempotency key (or a hash of
 * the mail), checked against the events stream (any age) and used as the
 * work item's Nats-Msg-Id (concurrent submissions inside the duplicate
 * window).
 */
export function createSubmitHandler(deps: SubmitDeps, opts: SubmitOptions): (data: Uint8Array) => Promise<SubmitReply> {
  // Submissions wait for the object store and JetStream, so a flood of large ones piles up in memory
  // (1.6 GB for 40 of 8 MB in a probe): past the bytes in flight a request is answered BUSY at once.
  const admit = createAdmission({ maxBytes: opts.maxBytesInFlight ?? SUBMIT_MAX_BYTES_IN_FLIGHT },
    (requests, bytes) => `this gateway is storing ${requests} submissions (${bytes} request bytes); retry with the same idempotency key shortly`);
  const submitOne = async (data: Uint8Array): Promise<SubmitReply> => {
    const req: SubmitRequest = Codecs.submitRequest.decode(data);
    const mail = req.mail;
    let envelope: Envelope;
    let rawIn: Buffer | undefined;
    let ownMessageId: string | undefined;
    let canonical: string;
    if ("raw" in mail) {
      rawIn = Buffer.from(mail.raw, "base64");
      if (rawIn.length > opts.maxMessageBytes) tooLarge(rawIn.length, opts.maxMessageBytes);
      ownMessageId = checkMime(rawIn).messageId;
      envelope = rawEnvelope(mail.envelope);
      canonical = canonicalJson({ envelope, raw: createHash("sha256").update(rawIn).digest("hex") });
    } else {
      const to = structuredRecipients(mail);
      if (to.length === 0) {
        throw new FenError("NO_RECIPIENTS", "the mail has no recipient", { fields: [{ field: "mail.to", code: "NO_RECIPIENTS", message: "to, cc and bcc are all empty" }] });
      }
      checkStructuredSize(mail, opts.maxMessageBytes);
      envelope = { from: mailboxOf(mail.from), to };
      canonical = canonicalJson(mail);
    }
    const contentHash = contentSha256(canonical);
    // With a key: the key's mail, at any age. Without one: the identical
    // mail of the last DUPLICATE_WINDOW_MS, if any, else a new mail.
    const { mailId, first } = await storeRead("an earlier submission of this mail", () => req.idempotencyKey !== undefined
      ? byKey(deps.jsm, mailIdFromIdempotencyKey(req.idempotencyKey))
      : byContent(deps, contentHash), NOTHING_STORED);
    // The Message-ID recipients will see: a raw message's own, or the one assigned (every retry reuses it).
    const messageId = ownMessageId ?? messageIdFor(mailId, opts.messageIdDomain);
    const log = deps.log.child({ mailId });
    /**
     * A duplicate is the same mail again; the key reused for another mail
     * is refused (it would be dropped). `stored`: the first submission's
     * content hash (undefined for mails stored before it was kept).
     */
    const duplicateOf = (stored: string | undefined): SubmitReply => {
      if (stored !== undefined && stored !== contentHash) {
        // Only a caller's key can be reused: a keyless mail's id is its content's (mailIdFromContent).
        throw new FenError("IDEMPOTENCY_CONFLICT", `idempotency key ${JSON.stringify(req.idempotencyKey ?? "")} was used for another mail (${mailId}); nothing was stored`, {
          fields: [{ field: "idempotencyKey", code: "IDEMPOTENCY_CONFLICT", message: "already used for a different mail" }],
        });
      }
      return { kind: "mail.submit.reply", v: 1, mailId, messageId, duplicate: true };
    };

    // Every mail that got past this point once has its PendingProcessing
    // event (published here, or by the node that claims it before any
    // status entry exists), and MAIL_EVENTS keeps every event (max_age 0:
    // the ledger's source). The work item's Nats-Msg-Id covers only the
    // duplicate window, for submissions racing this check.
    if (first) {
      log.debug("duplicate submission (its PendingProcessing event exists)");
      return duplicateOf(first.detail.contentSha256);
    }

    const now = new Date(deps.clock.now());
    const raw = rawIn ? prepareRaw(rawIn, ownMessageId, messageId) : await composeStructured(mail as Exclude<typeof mail, { raw: string }>, messageId, now);
    // A raw message was measured as sent (the Message-ID line the gateway may add is not the sender's);
    // a structured one as composed.
    if (!rawIn && raw.length > opts.maxMessageBytes) tooLarge(raw.length, opts.maxMessageBytes);
    // Defence in depth: a composed message passes the raw path's checks too, so what nodemailer writes from an
    // input no schema rule foresaw (as a bare CR it kept in 7bit text was) is refused, not sent.
    if (!rawIn) checkMime(raw, "mail");

    let body: BodyRef;
    if (raw.length <= INLINE_BODY_LIMIT) {
      body = { inline: raw.toString("base64") };
    } else {
      // A name of its own per submission: two submissions of one mail
      // racing each other compose different bytes (MIME boundary, Date),
      // and one must not overwrite the object the stored work item refers to.
      const object = BodyObjects.name(mailId, randomBytes(8));
      await storeStep("storing the body in the object store", deps.bodies.putBlob({ name: object }, raw));
      body = { object, sha256: createHash("sha256").update(raw).digest("hex") };
    }
    const submittedAt = now.toISOString();
    const item: WorkItem = {
      kind: "mail.work", v: 1, mailId, messageId, submittedAt, envelope, size: raw.length, body, released: false, contentSha256: contentHash,
    };
    let published: WorkPublished | undefined;
    const encoded = Codecs.workItem.encode(item);
    try {
      published = await publishWorkItem(deps, workSubject(mailId), encoded, mailId, opts.submitTimeoutMs);
    } catch (err) {
      // "duplicate message id is in process": the first submission's write is still being replicated.
      if (!isDuplicateInProcess(err)) {
        // A refusal from the stream means nothing was stored: the body object is nobody's. A timeout or a
        // lost connection proves nothing (the work item may commit later), so the object is kept: a leak, not a loss.
        if ("object" in body && (err instanceof JetStreamApiError || isNoStreamListening(err))) await deps.bodies.delete(body.object).catch(() => undefined);
        // A work item over MAIL_WORK's max_msg_size is refused at every retry: permanent, not STORE_UNAVAILABLE
        // (a client would retry it for ever). (After unanswered attempts the refusal is the error's cause.)
        if (orItsCause(err, isOverMaxMsgSize)) {
          throw new FenError("MESSAGE_TOO_LARGE", `the mail's work item is ${encoded.length} bytes, more than the work stream takes (its max_msg_size); nothing was stored`, {
            cause: err, fields: [{ field: "mail", code: "MESSAGE_TOO_LARGE", message: `work item of ${encoded.length} bytes over the work stream's max_msg_size` }],
          });
        }
        throw new FenError("STORE_UNAVAILABLE", "JetStream did not acknowledge the mail; retry with the same idempotency key", { cause: err });
      }
    }
    if (!published || !published.mine) {
      // A submission racing the first one. Its body object is not referred to by anything (unless the stored
      // item, which could not be read, was this submission's own: then it is kept, a leak rather than a loss).
      log.debug("duplicate submission (inside the duplicate window)");
      if ("object" in body && (published === undefined || published.mine === false)) await deps.bodies.delete(body.object).catch(() => undefined);
      // (When the stored item may be this submission's own, the mail may well be stored: the advice says so.)
      const advice = published?.mine === undefined ? "the mail may be stored; retry with the same idempotency key" : NOTHING_STORED;
      return duplicateOf(await storeRead("the first submission of this mail", () => firstContentHash(deps, mailId), advice));
    }
    const ack = published.ack;
    // The work item is durable: the mail will be processed even if this
    // event fails (the processing node publishes a missing one itself). So
    // the reply waits for it one attempt's time at most, its publish made
    // again after a second unanswered: one that a stepping-down leader
    // dropped held the reply for the client's 5 s timeout, past the deadline
    // of a publisher waiting 5 s (NO_REPLY, once in ~1,500 submissions in
    // the step-down probe).
    try {
      await deps.state.begin(mailId, submittedAt, envelope.to, { contentSha256: contentHash }, { budgetMs: publishAttemptMs(opts.submitTimeoutMs) });
    } catch (err) {
      log.warn({ err }, "PendingProcessing event not published; the processing node will publish it");
    }
    deps.metrics.submitted.inc();
    log.info({ size: raw.length, seq: ack.seq }, "mail accepted");
    return { kind: "mail.submit.reply", v: 1, mailId, messageId, duplicate: false };
  };
  return async (data) => {
    checkRequestSize(data.length, opts.maxMessageBytes);
    return admit(data.length, () => submitOne(data));
  };
}
