import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import type { JetStreamClient, JetStreamManager, MsgRequest, PubAck, StoredMsg } from "@nats-io/jetstream";
import { NoRespondersError, PermissionViolationError, RequestError, TimeoutError } from "@nats-io/nats-core";
import { FenError } from "../../protocol/index.js";
import type { Codec } from "../../protocol/index.js";

/**
 * `err`'s `cause` (undefined when it has none). nats.js wraps a request's
 * failure (a timeout, no responders) as the cause of the error it throws,
 * and our stores wrap theirs as a FenError's cause: one level is all either does.
 */
function causeOf(err: unknown): unknown {
  return (err as { cause?: unknown } | null | undefined)?.cause;
}

/** `err` or its {@link causeOf cause}, whichever `is` holds for first (undefined: neither). */
export function selfOrCause<T>(err: unknown, is: (e: unknown) => e is T): T | undefined {
  if (is(err)) return err;
  const cause = causeOf(err);
  return is(cause) ? cause : undefined;
}

/** Whether `test` holds for `err` or for its {@link causeOf cause}. */
export function orItsCause(err: unknown, test: (e: unknown) => boolean): boolean {
  return test(err) || test(causeOf(err));
}

/** JetStream API error codes meaning "no such stream / consumer / message". */
const NOT_FOUND_CODES = new Set([10059, 10014, 10037]);

/**
 * True for JetStream's "not found" answers: an API error with a not-found
 * code (stream info, consumer info), or a 404 status (Direct Get past the
 * last message). Classified by code, never by message text.
 */
export function isNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return NOT_FOUND_CODES.has(err.code) || err.status === 404;
  // JetStreamStatusError (a status reply, e.g. Direct Get) is not exported; it is a JetStreamError with a numeric code.
  if (err instanceof JetStreamError) return (err as JetStreamError & { code?: unknown }).code === 404;
  return false;
}

/** JetStream's "no message found" (10037): the stream answered, and holds no such message (not "no such stream"). */
export function isNoSuchMessage(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === 10037;
}

/** JetStream's "wrong last sequence" (10071): an expected-sequence publish, e.g. a KV compare-and-swap, lost. */
export function isWrongLastSequence(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === 10071;
}

/**
 * JetStream's "duplicate message id is in process" (10158): another publish
 * with the same Nats-Msg-Id is being replicated right now. Its outcome is
 * not known yet; the same publish retried a moment later gets the duplicate
 * ack (or, if that one failed, stores the message).
 */
export function isDuplicateInProcess(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === 10158;
}

/**
 * JetStream's "message size exceeds maximum allowed" (10054): the message is
 * larger than the stream's max_msg_size. The stream refused it and will
 * refuse the same bytes whenever they are published again.
 */
export function isOverMaxMsgSize(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === 10054;
}

/**
 * A JetStream publish that no stream listened to ("no responders"; the client
 * reports it as "jetstream is not enabled", with the no-responders error as
 * its cause). A clustered stream's subjects are subscribed by its leader
 * only, so this is what a publish gets while the stream changes leaders (a
 * step-down, a rolling restart), for a moment; also with the stream gone.
 * Nothing was stored: the same publish may be made again.
 */
export function isNoStreamListening(err: unknown): boolean {
  if (err instanceof NoRespondersError) return true;
  const cause = causeOf(err);
  return (cause instanceof RequestError && cause.isNoResponders()) || cause instanceof NoRespondersError;
}

/** Attempts of {@link retryUnstored} (about 3 s in all). */
const UNSTORED_ATTEMPTS = 40;

/**
 * Runs a store write again while it fails in a way that proves nothing was
 * stored: a leader change's moment (no stream listening, see
 * {@link isNoStreamListening}; or JetStream's "temporarily unavailable",
 * 10008, which a KV create's own read can meet), or what `also` says (e.g.
 * another writer's publish of the same message id still in process). 5 ms
 * more between attempts each time, at most 100 ms, UNSTORED_ATTEMPTS
 * attempts (about 3 s in all) and only while `more()`; then, or on any
 * other failure, the error is thrown. (Other refusals, e.g. insufficient
 * resources, are not asked again: they last.)
 */
export async function retryUnstored<T>(write: () => Promise<T>, also: (err: unknown) => boolean = () => false, more: () => boolean = () => true): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await write();
    } catch (err) {
      const unstored = isNoStreamListening(err) || (err instanceof JetStreamApiError && err.code === 10008);
      if (!(unstored || also(err)) || i >= UNSTORED_ATTEMPTS || !more()) throw err;
      await new Promise((r) => setTimeout(r, Math.min(100, 5 * i)));
    }
  }
}

/**
 * A de-duplicated publish (`msgID` set) that two writers may make at once (a
 * racing gateway and node, two operators repeating one request): JetStream
 * answers the second "duplicate message id is in process" until the first is
 * stored, and the same publish a moment later gets the duplicate ack. Made
 * again, as is a publish made in a leader change's moment (see
 * {@link retryUnstored}), so the caller sees a stored message or a real
 * failure.
 *
 * A timeout (the client's, by default) ends it: that publish may have been
 * stored. With `unansweredMs`, an attempt unanswered for that long (a
 * leader stepping down drops what it was given) is made again instead, the
 * same message id making a stored one a duplicate, until `budgetMs` has
 * passed since the first: then the last failure is thrown. (No attempt is
 * begun with less than 10 ms of the budget left.)
 */
export async function publishOnce(
  js: JetStreamClient, subject: string, data: Uint8Array, opts: { msgID: string; unansweredMs?: number; budgetMs?: number },
): Promise<PubAck> {
  const start = performance.now();
  const left = () => (opts.budgetMs ?? Infinity) - (performance.now() - start);
  const { msgID, unansweredMs } = opts;
  return retryUnstored(
    () => js.publish(subject, data, unansweredMs === undefined ? { msgID } : { msgID, timeout: Math.min(left(), unansweredMs) }),
    (err) => isDuplicateInProcess(err) || (unansweredMs !== undefined && isRequestTimeout(err)),
    () => left() >= 10,
  );
}

/**
 * A pull request the server ended with "409 Leadership Change": the
 * consumer's leader changed (a step-down, a rolling restart) and the
 * requests the old one held are void. Routine: pull again. nats-server
 * tells its 409s apart by the status description only (nats.js does the
 * same for "consumer deleted" and the others), hence the text.
 */
export function isLeadershipChange(err: unknown): boolean {
  return err instanceof JetStreamError && (err as JetStreamError & { code?: unknown }).code === 409 && /^leadership change$/i.test(err.message);
}

/**
 * JetStream's "no suitable peers for placement" (10005): the meta leader
 * cannot find enough servers to hold a replicated asset right now (some are
 * down, or have not sent it their stats since it was elected).
 */
export function isNoPlacement(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === 10005;
}

/**
 * A request that got no answer in time (nats-core's TimeoutError). Whether
 * the server acted on it is unknown: only an idempotent request may simply
 * be sent again.
 */
export function isRequestTimeout(err: unknown): boolean {
  return err instanceof TimeoutError;
}

/**
 * The first message of `stream` on `subject` (a filter may hold wildcards), or null. A Direct Get with
 * `next_by_subj` from sequence 1 (not `last_by_subj`): the request goes to the stream's Direct Get subject
 * itself, which every role that reads the stream has.
 *
 * Any replica may answer a Direct Get, including one that has not yet stored a message the stream
 * acknowledged a moment ago (a publish is acknowledged once a majority has it). With `confirmAbsence`, a
 * miss is asked again of the stream leader (STREAM.MSG.GET, which the role must be allowed), so null means
 * the leader had no such message: for callers that act on absence (resend a mail, answer NOT_FOUND). Hits
 * are never re-read, so the common path costs one Direct Get either way.
 */
export async function firstBySubject(
  jsm: JetStreamManager, stream: string, subject: string, opts: { confirmAbsence?: boolean } = {},
): Promise<StoredMsg | null> {
  const found = await jsm.direct.getMessage(stream, { seq: 1, next_by_subj: subject }).catch((err: unknown) => {
    if (isNotFound(err)) return null;
    throw err;
  });
  if (found || !opts.confirmAbsence) return found;
  return firstBySubjectFromLeader(jsm, stream, subject, 1);
}

/**
 * The first message of `stream` on `subject` at or after `seq`, read through the stream leader, or null.
 * The server's STREAM.MSG.GET takes `seq` with `next_by_subj` (since 2.9); the client's type knows only one
 * or the other, hence the cast.
 *
 * Null means the stream answered "no message found" (10037). Every other failure is thrown, "no such stream"
 * (10059) included: a stream not yet recovered after a restart says nothing about what it holds, and callers
 * act on absence (send a mail again, reject it for want of its body, end a history).
 */
export async function firstBySubjectFromLeader(jsm: JetStreamManager, stream: string, subject: string, seq: number): Promise<StoredMsg | null> {
  return fromLeader(jsm, stream, { seq, next_by_subj: subject } as unknown as MsgRequest);
}

/**
 * The last message of `stream` on `subject`, read through the stream leader (STREAM.MSG.GET with
 * `last_by_subj`), or null when the stream has none ("no message found", 10037). Every other failure is
 * thrown, as by {@link firstBySubjectFromLeader}.
 */
export async function lastBySubjectFromLeader(jsm: JetStreamManager, stream: string, subject: string): Promise<StoredMsg | null> {
  return fromLeader(jsm, stream, { last_by_subj: subject });
}

/** STREAM.MSG.GET of `query`; null for "no message found" (10037), any other failure thrown. */
async function fromLeader(jsm: JetStreamManager, stream: string, query: MsgRequest): Promise<StoredMsg | null> {
  return jsm.streams.getMessage(stream, query).catch((err: unknown) => {
    if (isNoSuchMessage(err)) return null;
    throw err;
  });
}

/**
 * The server refused the request: this client's NATS user lacks a
 * permission (a deployment whose authorization does not match the node's
 * role). Asking again cannot help.
 */
function isPermissionViolation(err: unknown): boolean {
  return orItsCause(err, (e) => e instanceof PermissionViolationError);
}

/**
 * A store request the server refused for want of a permission: INTERNAL (a fault of the deployment, logged by
 * the endpoint), not STORE_UNAVAILABLE, which would have clients ask again for ever. `action` names the request
 * ("reading the status entry", "storing the body ...").
 */
function refused(action: string, err: unknown): FenError {
  return new FenError("INTERNAL", `${action} was refused: this node's NATS user lacks a permission (${String((err as Error)?.message ?? err).slice(0, 200)})`, { cause: err });
}

/**
 * A store answer that a leader change gives for a moment: JetStream's
 * "system temporarily unavailable" (10008, or a bare 503 status), or no one
 * listening (see {@link isNoStreamListening}). Nothing was read or written;
 * the same request a moment later is answered by the new leader.
 */
export function isMomentarilyUnavailable(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.code === 10008 || err.status === 503;
  if (err instanceof JetStreamError && (err as JetStreamError & { code?: unknown }).code === 503) return true;
  return isNoStreamListening(err);
}

/** Most tries of one {@link storeRead}. */
const READ_ATTEMPTS = 8;

/**
 * How long one read through a node's read handles (the gateway's
 * JetStreamManager, the gateway's status-store KV) waits for its answer. A
 * stream leader that steps down drops the requests it holds unanswered;
 * with the client's default 5 s a read that met one would outlast the
 * caller's own timeout, with this one {@link storeRead} asks once more.
 * (nats.js waits 5 s for batched Direct Gets whatever the handle says.)
 */
export const STORE_READ_ATTEMPT_MS = 1500;

/**
 * {@link storeRead} asks again only while less than this has passed since
 * its first try: after one unanswered STORE_READ_ATTEMPT_MS read, not
 * after two, so a slow store gets at most one extra copy of a read.
 */
const READ_BUDGET_MS = 2000;

/**
 * A read of JetStream (a status entry, a history, a work item, consumer
 * info). A read is idempotent, so one that met a leader change is made
 * again while less than READ_BUDGET_MS (2 s) has passed since the first
 * try, at most READ_ATTEMPT_MS times, after pauses of 25, 50, ... ms: one
 * answered "momentarily unavailable" (see {@link isMomentarilyUnavailable}),
 * and one left unanswered (dropped by a leader stepping down), which only a
 * read whose timeout is below the budget can be (STORE_READ_ATTEMPT_MS).
 * What still fails is STORE_UNAVAILABLE (ask again, or `advice`), not
 * INTERNAL; a read the server refused for want of a permission is INTERNAL
 * ({@link refused}). FenErrors pass through.
 */
export async function storeRead<T>(what: string, read: () => Promise<T>, advice = "ask again"): Promise<T> {
  return whileBetweenLeaders(read, {
    passing: (err) => isMomentarilyUnavailable(err) || isRequestTimeout(err),
    budgetMs: READ_BUDGET_MS, attempts: READ_ATTEMPTS, pauseMs: (i) => Math.min(200, 25 * i),
  }).catch((err: unknown) => { throw storeFailure(`reading ${what}`, err, advice); });
}

/**
 * Runs `step` again while it fails as `passing` says (a leader change's moment), after `pauseMs(i)` following
 * the i-th try, while less than `budgetMs` has passed since the first and fewer than `attempts` were made;
 * `onRetry` hears each failure that is asked again. Any other failure, and the last, is thrown as it was.
 */
async function whileBetweenLeaders<T>(step: () => Promise<T>, opts: {
  passing(err: unknown): boolean; budgetMs: number; attempts?: number; pauseMs(i: number): number; onRetry?(err: unknown, i: number): void;
}): Promise<T> {
  const start = performance.now();
  for (let i = 1; ; i++) {
    try {
      return await step();
    } catch (err) {
      const again = opts.passing(err) && performance.now() - start < opts.budgetMs && i < (opts.attempts ?? Infinity);
      if (!again) throw err;
      opts.onRetry?.(err, i);
      await new Promise((r) => setTimeout(r, opts.pauseMs(i)));
    }
  }
}

/**
 * The error a caller sees for a failed store request, a read (see {@link storeRead}) or a write: FenErrors pass
 * through, a refusal for want of a permission is INTERNAL ({@link refused}), anything else STORE_UNAVAILABLE,
 * its message "`action` failed (cause); `advice`".
 */
export function storeFailure(action: string, err: unknown, advice = "ask again"): Error {
  if (err instanceof FenError) return err;
  if (isPermissionViolation(err)) return refused(action, err);
  return new FenError("STORE_UNAVAILABLE", `${action} failed (${String((err as Error)?.message ?? err).slice(0, 200)}); ${advice}`, { cause: err });
}

/**
 * A store write (`what`, e.g. "storing the body"): its failure is the caller's STORE_UNAVAILABLE ending in
 * `advice`, or INTERNAL when refused for want of a permission; FenErrors pass through (see {@link storeFailure}).
 * Writes are not made again here: whether one may be depends on what it writes.
 */
export async function storeWrite<T>(what: string, step: Promise<T>, advice: string): Promise<T> {
  return step.catch((err: unknown) => { throw storeFailure(what, err, advice); });
}

/** Narrows to this project's typed errors (for {@link selfOrCause}). */
export const isFenError = (e: unknown): e is FenError => e instanceof FenError;

/**
 * Decodes a record read from a stream (`what`, e.g. "event 12 of MAIL_EVENTS") for an answer to a request. A
 * record that does not decode is no fault of the request (a codec's BAD_REQUEST would say it is): one written
 * by a newer version (a rolling upgrade) is STORE_UNAVAILABLE, asked again (a node of that version can read
 * it); anything else INTERNAL.
 */
export function decodeStored<T>(codec: Codec<T>, data: Uint8Array, what: string): T {
  try {
    return codec.decode(data);
  } catch (err) {
    const why = String((err as Error | undefined)?.message ?? err).slice(0, 300);
    if (codec.fromNewerVersion(data)) {
      throw new FenError("STORE_UNAVAILABLE", `${what} was written by a newer version of FastEmailNet (${why}); retry: a node of that version can read it`, { cause: err });
    }
    throw new FenError("INTERNAL", `${what} does not decode: ${why}`, { cause: err });
  }
}

/**
 * A step of a node's start that asks JetStream something (its consumer, the ledger's head): made again while it
 * fails as a stream or consumer between leaders makes it fail (no responders, "temporarily unavailable", no
 * answer in time; also as the cause of a FenError a store wrapped it in), until `budgetMs` has passed since the
 * first try, a log line per retry; any other failure, and the last, is thrown. A just-started or busy cluster
 * has such moments: two fresh-clone CI runs had a stream without a leader as a ledger node started, which
 * refused to start.
 */
export async function startStep<T>(
  what: string, step: () => Promise<T>, log: { warn(obj: object, msg: string): void }, opts: { budgetMs?: number; pauseMs?: number } = {},
): Promise<T> {
  return whileBetweenLeaders(step, {
    passing: (err) => orItsCause(err, (e) => isMomentarilyUnavailable(e) || isRequestTimeout(e)),
    budgetMs: opts.budgetMs ?? 15_000, pauseMs: (i) => Math.min(1000, (opts.pauseMs ?? 100) * i),
    onRetry: (err, i) => log.warn({ err, try: i }, `${what}: JetStream is between leaders; asking again`),
  });
}
