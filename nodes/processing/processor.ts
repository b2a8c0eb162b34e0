import { createHash } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Service } from "@nats-io/services";
import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { ObjectStore } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/nats-core";
import { simpleParser } from "mailparser";
import { BodiesBucketStream, CLAIM_TTL_MS, Codecs, FenError, Names, WORK_ACK_WAIT_MS, isTerminal, quarantineSubject, toFenError } from "../../protocol/index.js";
import type { Classification, EventDetail, MailEvent, MailId, RecipientRefusal, WorkItem } from "../../protocol/index.js";
import type { Actor, ActorStatus } from "../common/actor.js";
import { ackConfirmed } from "../common/acks.js";
import type { Clock, Random } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import type { AdvanceOptions, MailStateStore, Step, Versioned } from "../common/mail-state.js";
import { newestEvent, openMailStateStore } from "../common/mail-state.js";
import { firstBySubjectFromLeader, startStep } from "../common/js-errors.js";
import { readKeptCopy, removeKeptCopy } from "./kept-copy.js";
import type { Metrics } from "../common/metrics.js";
import { holdMessages } from "../common/held-messages.js";
import { createPullFeed, createRoomGate } from "../common/pull-feed.js";
import type { PullFeed } from "../common/pull-feed.js";
import type { ProcessingConfig } from "../config/index.js";
import { backoffDelay } from "./backoff.js";
import { readObject } from "./body.js";
import type { MailClassifier } from "./classifier.js";
import { createBatchingClassifier } from "./classifier.js";
import { MAILPARSER_OPTIONS } from "../classifier/index.js";
import type { Delivery } from "./delivery.js";
import { REFUSAL_REPLY_BYTES, cutBytes, isTooManyRecipients, refusalsWithin } from "./smtp-outcome.js";
import { cutChars } from "../common/text.js";
import type { Outcome } from "./smtp-outcome.js";
import { startProcessingService } from "./service.js";
import { createBodyReaper } from "./body-reaper.js";
import type { BodyReaper } from "./body-reaper.js";
import { requestsSettled } from "../common/rpc.js";

export interface ProcessingDeps {
  readonly nc: NatsConnection;
  readonly log: Logger;
  readonly clock: Clock;
  readonly random: Random;
  readonly node: string;
  readonly metrics: Metrics;
  readonly delivery: Delivery;
  readonly classifier: MailClassifier;
}

/** What failed, for a log line (no relay text: it may quote an address; the SMTP code says the rest). */
const failureOf = (o: Outcome): string | undefined => (o.kind === "transient" || o.kind === "permanent" ? o.failure : undefined);

/** Longest wait before a work item this node cannot read comes back to a node (see `handle`). */
export const UNREADABLE_RETRY_MAX_MS = 10 * 60_000;

/** How often a copy of a work item whose mail another node claimed moments ago checks back for its outcome, at first (then 2, 3, ... 8 times this). */
export const CLAIM_RECHECK_MS = 2000;

/** Reads, BODY_READ_PAUSE_MS apart, that must all find a body object missing or damaged before its mail is Rejected BODY_UNAVAILABLE. */
export const BODY_READS = 3;
export const BODY_READ_PAUSE_MS = 1000;

/** How often the node delivering a mail renews its claim while the delivery lasts: a third of CLAIM_TTL_MS. */
export const CLAIM_RENEW_MS = CLAIM_TTL_MS / 3;

/**
 * Life of each pull request on MAIL_WORK. A draining node waits for its
 * outstanding request to end, so this bounds that wait on an idle stream;
 * an idle node makes one request per this long.
 */
export const WORK_PULL_EXPIRES_MS = 3000;

/** The processing node actor: pulls work items and walks each mail's life cycle. */
export type ProcessingNode = Actor;

/**
 * Creates a processing node. Per work item:
 *
 * 1. A mail whose recorded state is terminal is acked without sending again
 *    (a redelivery after a crash, or a duplicate work item).
 * 2. The message is parsed (mailparser; broken MIME → Rejected) and
 *    classified (the model reads the raw bytes itself) before any state
 *    changes; then one compare-and-swap moves the mail to
 *    DeliveryScheduled, which is the claim: a second node holding the same
 *    work item loses the swap and backs off, and one that gets the item
 *    again while the claim is younger than CLAIM_TTL_MS leaves it to the
 *    node that made it. The node renews
 *    its claim every CLAIM_RENEW_MS while the delivery lasts.
 * 3. SMTP: 250 → Sent; 4xx/connection → Deferred and `nak(backoff)`, until
 *    `maxAttempts`, then Bounced; 5xx → Bounced with the reply kept.
 *    An attempt whose node died mid-delivery counts: past the last one
 *    allowed the mail is sent once more, and if that resend's node dies too
 *    it is Bounced (RETRIES_EXHAUSTED, in doubt) rather than sent again.
 * 4. The work item is `ackAck`ed only after the outcome is recorded.
 *
 * The SMTP boundary is at-least-once: a node killed after the relay's 250
 * and before Sent is recorded leaves the mail DeliveryScheduled; the next
 * delivery once the claim (its last renewal) is older than CLAIM_TTL_MS (the dead node's item
 * comes back after the ack wait) sends it again (same bytes, same Message-ID) and marks the
 * attempt `inDoubt`. Nothing is lost (but for a mail whose nodes died twice at its last attempts, Bounced in
 * doubt: it may not have been sent); such a mail may arrive twice. If the
 * killed node had stored the attempt's Sent, Bounced or Deferred event, which goes
 * before the status swap, that outcome is recorded and nothing is sent.
 *
 * Work items come from a pull feed ({@link createPullFeed}): one pull
 * request at a time, for a quarter of `concurrency` (at least one), the
 * next once that many slots are free, so the node holds at most
 * `concurrency` work items, each started as it arrives. (One that arrives
 * with no slot free, which only a failed pull request's successor can
 * bring, waits for one.)
 *
 * `drain()` stops the node's services, asks for no more work and waits for
 * the outstanding pull request to end (at most
 * {@link WORK_PULL_EXPIRES_MS}); every work item the server sent, before or
 * during that wait, is handled like the others, and the drain ends once
 * they are done and the operator requests taken before are answered. No
 * work item is left to ack_wait, as `consume().stop()` left those the
 * server sent while it unsubscribed. They are handled rather than `nak`ed:
 * while its pull request is open, a node would be sent back what it naks.
 * At `drainTimeoutMs` the SMTP transactions still running are given up
 * (recorded Deferred and `nak`ed with no delay), nothing more is started,
 * and the work items not started yet are `nak`ed, with no delay, once the
 * pull request has ended: another node takes them at once.
 *
 * The node also runs the body reaper ({@link createBodyReaper}, every
 * FEN_BODY_REAP_INTERVAL_MS): from its start; `drain()` stops it, and the
 * node is closed once its pass under way has ended.
 */
export function createProcessingNode(deps: ProcessingDeps, config: ProcessingConfig): ProcessingNode {
  let status: ActorStatus = { state: "created" };
  let feed: PullFeed | undefined;
  let service: Service | undefined;
  let reaper: BodyReaper | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const inFlight = new Set<Promise<void>>();
  /** The mails whose work items this node is handling (see `handle`). */
  const handling = new Set<MailId>();
  const log = deps.log.child({ actor: "processing" });
  const classify = createBatchingClassifier(deps.classifier);

  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let state: MailStateStore;
  let bodies: ObjectStore;

  const loadBody = async (item: WorkItem): Promise<Buffer> => {
    if ("inline" in item.body) return Buffer.from(item.body.inline, "base64");
    const object = item.body.object;
    // An object whose chunks are all gone (a purge by subject, a partial restore) would make the read wait until
    // its timeout, at every retry: whether its first chunk is stored is asked of the stream's leader first.
    const info = await bodies.info(object);
    if (!info || info.deleted) throw new FenError("BODY_UNAVAILABLE", `body object ${object} is missing`);
    if (info.size > 0) {
      const chunk = await firstBySubjectFromLeader(jsm, BodiesBucketStream.name, BodiesBucketStream.chunks(info.nuid), 1);
      if (!chunk) throw new FenError("BODY_UNAVAILABLE", `body object ${object} has no chunk stored`);
    }
    const data = await readObject(bodies, object).catch((err: unknown) => {
      // The client checks the chunks against the object's own digest: a chunk gone or altered is a damaged body,
      // as much as one that does not match the work item's hash (and asking again a few times cannot mend it).
      if (/received a corrupt object/.test(String((err as Error | undefined)?.message))) {
        throw new FenError("BODY_UNAVAILABLE", `body object ${object} is damaged (${String((err as Error).message).split("\n")[0]})`, { cause: err });
      }
      throw err;
    });
    if (!data) throw new FenError("BODY_UNAVAILABLE", `body object ${item.body.object} is missing`);
    const raw = Buffer.from(data);
    if (createHash("sha256").update(raw).digest("hex") !== item.body.sha256) {
      throw new FenError("BODY_UNAVAILABLE", `body object ${item.body.object} does not match its hash`);
    }
    return raw;
  };

  const finish = async (m: JsMsg) => {
    // Double ack: the outcome is recorded; make sure the server has the ack
    // too (sent again across a consumer leader change). A lost ack only means
    // a redelivery, which step 1 absorbs.
    await ackConfirmed(deps.nc, [m], log);
  };

  /**
   * Acks a work item whose mail is settled for good (Sent, Bounced or
   * Rejected), after dropping its body object if it has one: nothing will
   * read it again. Dropped first, so a node dying in between leaves no
   * orphan (the redelivery finds the outcome and comes here again). A
   * quarantined mail keeps its body for a release.
   */
  const settle = async (m: JsMsg, item: WorkItem) => {
    if ("object" in item.body) await bodies.delete(item.body.object).catch(() => undefined);
    await finish(m);
  };

  /**
   * The event of `attempt` of the mail in `state`, if one is stored: the newest of that state's events, read
   * through the events stream's leader (a lagging replica answering "none" would get the mail sent again). The
   * attempt in doubt is the mail's latest, so its outcome event is the newest in its state.
   */
  const eventOf = async (mailId: MailId, s: "Sent" | "Bounced" | "Deferred", attempt: number): Promise<MailEvent | undefined> => {
    const e = await newestEvent(jsm, mailId, s);
    return e?.attempt === attempt ? e : undefined;
  };

  /**
   * The outcome event (Sent, Bounced or Deferred) of `attempt` of the mail, if one is stored: a node that died
   * (or could not reach the status store) after publishing it and before the status swap settled that attempt.
   */
  const recordedOutcome = async (mailId: MailId, attempt: number): Promise<MailEvent | undefined> => {
    const found = await Promise.all((["Sent", "Bounced", "Deferred"] as const).map((s) => eventOf(mailId, s, attempt)));
    return found.find((e) => e !== undefined);
  };

  const handle = async (m: JsMsg): Promise<void> => {
    let item: WorkItem;
    try {
      item = Codecs.workItem.decode(m.data);
    } catch (err) {
      if (Codecs.workItem.fromNewerVersion(m.data)) {
        // A work item written by a newer version (a higher v, or fields this one does not know), during a rolling
        // upgrade: left for a node that can read it (terminating it would lose the mail), coming back ever more slowly.
        const delay = backoffDelay({ baseMs: 5_000, maxMs: UNREADABLE_RETRY_MAX_MS }, m.info.deliveryCount, deps.random);
        log.error({ err: toFenError(err), seq: m.seq, delivery: m.info.deliveryCount, delay }, "work item this node cannot read (a newer version's?); left for another node");
        m.nak(delay);
        return;
      }
      log.error({ err, seq: m.seq }, "undecodable work item, terminated");
      m.term(`undecodable: ${toFenError(err).code}`);
      return;
    }
    const mlog = log.child({ mailId: item.mailId, delivery: m.info.deliveryCount });
    const recipients = item.envelope.to;
    // A copy of the work item of a mail this node is still handling: JetStream gave it out again after the ack
    // wait while this node was cut off from NATS (its keep-alives and claim renewals lost), so the claim looks
    // abandoned by now, and taking it would send the mail again from this very node, whose first attempt may
    // have been delivered and is still being recorded. Looked at again once that is done.
    if (handling.has(item.mailId)) {
      mlog.info("this node is still handling the mail; its copy is looked at again later");
      m.nak(CLAIM_RECHECK_MS);
      return;
    }
    handling.add(item.mailId);
    try {
      let cur = await state.get(item.mailId);
      if (!cur) cur = await state.begin(item.mailId, item.submittedAt, recipients, item.contentSha256 ? { contentSha256: item.contentSha256 } : {});
      // Only a PendingProcessing entry can be ahead of its event (an operator's release swaps first and
      // publishes after); every other state's event precedes its swap. Republishing those would add a second
      // copy to the history once the event is older than MAIL_EVENTS' 2 h duplicate window (a long retry wait).
      else if (m.info.deliveryCount > 1 && cur.record.state === "PendingProcessing") await state.republish(cur, recipients);

      const r = cur.record;
      // PendingProcessing past attempt 0 is a mail released from quarantine (nothing else leads back there), and
      // the released work item carries it. This is a copy from before (its ack after quarantining was lost):
      // classified again it could be quarantined again, undoing the release.
      if (!item.released && r.state === "PendingProcessing" && r.attempt > 0) {
        mlog.info({ attempt: r.attempt }, "mail released from quarantine; its released work item carries it, this earlier copy is acked");
        await finish(m);
        return;
      }
      if (isTerminal(r.state)) {
        mlog.debug({ state: r.state }, "outcome already recorded; acking without sending");
        await (r.state === "Quarantined" ? finish(m) : settle(m, item));
        return;
      }
      if (r.state === "Deferred" && r.detail.retryAt) {
        const wait = Date.parse(r.detail.retryAt) - deps.clock.now();
        if (wait > 50) { m.nak(wait); return; }
      }
      const inDoubt = r.state === "DeliveryScheduled";
      if (inDoubt) {
        // The node that died may have stored the outcome's event and not yet swapped the status entry (events
        // go first): that outcome stands, and the mail is not sent again.
        const outcome = await recordedOutcome(item.mailId, r.attempt);
        if (outcome) {
          // A Deferred one is recorded as counted (whether its node counted it, e.g. not for a recipient limit, is
          // not in the event): at worst the mail bounces one attempt early. Its pending recipients and retry time
          // stand: the recipients who took the mail are not sent it again.
          await state.advance(cur, [{ state: outcome.state, detail: outcome.detail }], recipients, r.attempt, { published: true });
          (outcome.state === "Sent" ? deps.metrics.delivered : outcome.state === "Bounced" ? deps.metrics.bounced : deps.metrics.deferred).inc();
          mlog.warn({ attempt: r.attempt, state: outcome.state }, "previous attempt's outcome found in its event; recorded, not sending again");
          if (outcome.state === "Deferred") m.nak(Math.max(0, Date.parse(outcome.detail.retryAt ?? "") - deps.clock.now()) || 0);
          else await settle(m, item);
          return;
        }
        // JetStream can deliver an item again while the node that claimed it is still at work (a consumer leader
        // change, a duplicate item): that node is not dead, and sending now would deliver the mail twice. A claim
        // is left to its node for CLAIM_TTL_MS after the claim or its last renewal (a dead node's item has come
        // back by then anyway); meanwhile this copy checks back every few seconds (and finds the outcome, once
        // recorded).
        const claimAge = deps.clock.now() - Date.parse(r.claimRenewedAt ?? r.updatedAt);
        if (claimAge < CLAIM_TTL_MS) {
          // Checked back less often the longer the claimant's delivery lasts (it renews its claim until it ends).
          const wait = Math.min(CLAIM_TTL_MS - claimAge, CLAIM_RECHECK_MS * Math.min(8, m.info.deliveryCount));
          mlog.debug({ attempt: r.attempt, claimAge, wait }, "mail claimed moments ago (by a node still at work?); checking back later");
          m.nak(wait);
          return;
        }
        // The attempt in doubt counts (counted as record() counts). Past the last one allowed, the mail is sent
        // once more only if that attempt was not itself such a resend (its claim says inDoubt): its node may have
        // died before it reached the relay, and a mail never sent must not bounce for it. Otherwise nodes that keep
        // dying mid-delivery (a mail that kills its node, say) would send it again without bound, as no outcome is
        // ever recorded to check the limit against: at most FEN_MAX_ATTEMPTS + 1 sends.
        const tried = r.attempt - (item.attemptsBefore ?? 0) - (r.attemptsNotCounted ?? 0);
        if (tried >= config.maxAttempts && r.detail.inDoubt === true) {
          const message = `attempt ${r.attempt}, past the last of ${config.maxAttempts} (FEN_MAX_ATTEMPTS), ended with its node (it died or lost the mail mid-delivery), as the one before it did: its outcome is unknown, and no attempt is left`;
          await state.advance(cur, [{ state: "Bounced", detail: { inDoubt: true, error: { code: "RETRIES_EXHAUSTED", message } } }], recipients, r.attempt);
          deps.metrics.bounced.inc();
          mlog.warn({ attempt: r.attempt, maxAttempts: config.maxAttempts, code: "RETRIES_EXHAUSTED", inDoubt: true }, "bounced: the last attempt's node died mid-delivery; not sending again");
          await settle(m, item);
          return;
        }
      }
      const attempt = r.attempt + 1;
      const alog = mlog.child({ attempt });
      if (inDoubt) alog.warn("previous attempt's outcome unknown (node died mid-delivery); sending again");
      if (item.released && r.state === "PendingProcessing") {
        // The release is done once its work item is here; a release request that stopped before removing the
        // kept copy can no longer be repeated once this mail moves on, so the copy is removed now (if still there).
        const copy = await readKeptCopy(jsm, item.mailId);
        if (copy) await removeKeptCopy(jsm, copy.seq);
      }
      const processing: EventDetail = inDoubt ? { inDoubt: true } : {};

      let raw: Buffer | undefined;
      for (let read = 1; !raw; read++) {
        try {
          raw = await loadBody(item);
        } catch (err) {
          // A body the store says is gone or damaged is read again, BODY_READS times in all, a second apart, so that
          // a store answering wrongly for a moment cannot end a mail; then it is gone for good, and retrying for
          // ever would send nothing either. Any other failure is the store's: the work item is retried.
          if (!(err instanceof FenError && err.code === "BODY_UNAVAILABLE")) throw err;
          if (read < BODY_READS) { await new Promise((r) => setTimeout(r, BODY_READ_PAUSE_MS)); continue; }
          // A body object is dropped only once its mail's final state is recorded (settle): another node holding a
          // copy of this work item (a consumer leader change) may have settled the mail since its state was read
          // here. Its outcome stands: a Rejected recorded now would follow its Sent in the history (the events go
          // before the status swap, which only then fails).
          const now = await state.get(item.mailId);
          if ((now?.revision ?? 0) !== cur.revision) {
            if (!now || !isTerminal(now.record.state)) throw new FenError("STATE_CONFLICT", `mail ${item.mailId} moved to ${now?.record.state ?? "no state"} while its body was read`, { cause: err });
            alog.info({ state: now.record.state }, "body gone: another node settled the mail meanwhile; acking without recording");
            await (now.record.state === "Quarantined" ? finish(m) : settle(m, item));
            return;
          }
          await state.advance(cur, [{ state: "Processing", detail: processing }, { state: "Rejected", detail: { error: { code: err.code, message: cutChars(err.message, 300) } } }], recipients, attempt);
          deps.metrics.rejected.inc();
          alog.error({ err }, "rejected: the mail's body is gone");
          await settle(m, item);
          return;
        }
      }
      try {
        await simpleParser(raw, MAILPARSER_OPTIONS);
      } catch (err) {
        await state.advance(cur, [{ state: "Processing", detail: processing }, { state: "Rejected", detail: { error: { code: "INVALID_MIME", message: cutChars(String((err as Error).message), 300) } } }], recipients, attempt);
        deps.metrics.rejected.inc();
        await settle(m, item);
        return;
      }

      let classification: Classification | undefined;
      // A Deferred or in-doubt mail passed the classifier at an earlier attempt, and some recipients may have it:
      // it is scored again (its events carry the verdict) but never quarantined now (a release would send it to
      // every recipient again).
      const passedBefore = r.state === "Deferred" || r.state === "DeliveryScheduled";
      let notScored: EventDetail | undefined;
      if (!item.released) {
        /** Kept in the quarantine stream, then Quarantined with `detail`: held for an operator, never dropped. */
        const from = cur;
        const quarantine = async (detail: EventDetail) => {
          await js.publish(quarantineSubject(item.mailId), m.data, { msgID: `${item.mailId}.q.${attempt}` });
          await state.advance(from, [
            { state: "Processing", detail: processing }, { state: "Validated", detail }, { state: "Quarantined", detail },
          ], recipients, attempt);
          deps.metrics.quarantined.inc();
          await finish(m);
        };
        let score: number;
        try {
          ({ score } = await classify(raw));
        } catch (err) {
          // A mail the classifier cannot score while it scores others is held unscored rather than retried for ever.
          if (!(err instanceof FenError && err.code === "CLASSIFIER_UNSCORABLE")) throw err;
          const error = { code: err.code, message: cutChars(err.message, 300) };
          if (passedBefore) {
            notScored = { error, reason: "not scored at this attempt; it passed the classifier at an earlier one" };
            score = -1;
          } else {
            await quarantine({ error, reason: "not scored: the classifier fails on this mail" });
            alog.warn({ err }, "quarantined unscored: the classifier fails on this mail");
            return;
          }
        }
        const spam = score >= config.quarantineThreshold;
        if (!notScored) classification = { score, verdict: spam ? "spam" : "ham", modelVersion: deps.classifier.version };
        if (spam && passedBefore) alog.warn({ score }, "scored as spam at a retry; not quarantined, it passed at an earlier attempt");
        else if (spam) {
          await quarantine({ classification });
          alog.info({ score }, "quarantined");
          return;
        }
      }
      const validated: EventDetail = classification ? { classification } : notScored ?? { reason: "released by operator" };
      // An earlier attempt may have delivered to some recipients (or had
      // some refused for good): this one sends to the rest only.
      const rest = (r.state === "Deferred" || r.state === "DeliveryScheduled") && r.detail.pending?.length ? r.detail.pending : undefined;
      cur = await state.advance(cur, [
        { state: "Processing", detail: processing }, { state: "Validated", detail: validated },
        // A resend of an attempt whose node died says so on its claim too (see the attempt limit above).
        { state: "DeliveryScheduled", ...(rest || inDoubt ? { detail: { ...(rest ? { pending: rest } : {}), ...(inDoubt ? { inDoubt: true } : {}) } } : {}) },
      ], recipients, attempt);

      const to = rest ?? item.envelope.to;
      // A delivery can outlast CLAIM_TTL_MS (a busy relay, a wait for a connection; up to
      // FEN_SMTP_TRANSACTION_TIMEOUT_MS): the claim is renewed meanwhile, so that a copy of the item JetStream
      // hands another node (after a consumer leader change) is left to this one rather than sent again.
      let claimed = cur;
      let renewing = Promise.resolve();
      const renewer = setInterval(() => {
        renewing = renewing.then(async () => {
          try {
            claimed = await state.renewClaim(claimed);
          } catch (err) {
            // A renewal whose write landed unanswered leaves `claimed` a revision behind: the entry as read is still
            // this attempt's claim, renewed from then on. Another state or attempt means the claim is gone.
            const now = await state.get(item.mailId).catch(() => undefined);
            if (now?.record.state === "DeliveryScheduled" && now.record.attempt === attempt) claimed = now;
            else if (now) {
              clearInterval(renewer);
              alog.warn({ err, state: now.record.state, attempt: now.record.attempt }, "the claim on the mail is lost (taken over?); no more renewals");
            }
            if (!now) alog.warn({ err }, "could not renew the claim on the mail; trying again at the next renewal");
          }
        });
      }, CLAIM_RENEW_MS);
      let outcome;
      try {
        outcome = await deps.delivery.send({ ...item.envelope, to }, raw);
      } finally {
        clearInterval(renewer);
        await renewing;
      }
      // An earlier attempt whose outcome is unknown (recorded in doubt, or taken over from a node that died) may
      // have delivered the mail: whatever this one comes to, the mail's record keeps saying so.
      const doubtedBefore = inDoubt || (r.state === "Deferred" && r.detail.inDoubt === true);
      await record(m, claimed, item, outcome, attempt, alog, to, doubtedBefore);
    } catch (err) {
      const fe = toFenError(err);
      const delay = fe.code === "STATE_CONFLICT" ? 1000 : backoffDelay({ baseMs: 500, maxMs: 30_000 }, m.info.deliveryCount, deps.random);
      mlog.warn({ err: fe, code: fe.code, delay }, "work item failed; will be redelivered");
      m.nak(delay);
    } finally {
      handling.delete(item.mailId);
    }
  };

  /**
   * Records the outcome of an SMTP attempt that happened. Unlike the claim,
   * this must not give up on a transient store fault (e.g. a server failing
   * over): giving up would leave the mail DeliveryScheduled and the
   * redelivery would send it again. It retries, keeping the work item alive
   * with `working()`, and treats "already recorded" (a write whose reply was
   * lost) as success.
   */
  const advanceDurably = async (m: JsMsg, from: Versioned, steps: Step[], recipients: readonly string[], attempt: number, opts: AdvanceOptions = {}): Promise<Versioned> => {
    let cur = from;
    const target = steps[steps.length - 1]!.state;
    for (let i = 0; ; i++) {
      try {
        return await state.advance(cur, steps, recipients, attempt, opts);
      } catch (err) {
        if (i >= 40) throw err;
        log.warn({ err: toFenError(err), mailId: cur.record.mailId, attempt, try: i + 1 }, "recording the outcome failed; retrying");
        m.working();
        await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** i)));
        const now = await state.get(cur.record.mailId).catch(() => undefined);
        if (!now) continue;
        if (now.record.state === target && now.record.attempt === attempt) return now;
        if (now.record.state !== from.record.state || now.record.attempt !== from.record.attempt) {
          throw new FenError("STATE_CONFLICT", `mail ${cur.record.mailId} moved to ${now.record.state} while recording ${target}`);
        }
        cur = now;
      }
    }
  };

  /**
   * Records what an SMTP attempt to `to` came to. Recipients are settled
   * one by one: accepted ones and those refused for good (5xx at RCPT TO)
   * are done; those refused for now (4xx, e.g. 452 "too many recipients")
   * make the mail Deferred with them as `pending`, and the next attempt
   * sends to them only. A transaction that failed as a whole after some
   * recipients were refused for good is retried without those; one refused
   * for good as a whole (5xx at DATA) settles the recipients it carried, and
   * those put off at RCPT TO are still retried. A split by
   * 452 ("too many recipients") is not an attempt. At the last attempt every
   * other refusal is final: a recipient put off then is recorded in the Sent
   * or Bounced record as not transient, and the record's error is
   * RETRIES_EXHAUSTED. `doubtedBefore`: an earlier attempt's outcome is
   * unknown (see `inDoubt` on EventDetailSchema); a Deferred or Bounced
   * record says so too.
   */
  const record = async (m: JsMsg, cur: Versioned, item: WorkItem, outcome: Outcome, attempt: number, alog: Logger, to: readonly string[], doubtedBefore: boolean) => {
    const recipients = item.envelope.to;
    const smtp = outcome.smtp ? { smtp: outcome.smtp } : {};
    const rcptRefusals = outcome.rejected ?? [];
    // Recipients put off at RCPT TO (4xx) were not in the transaction: whatever became of it, they are still to be
    // tried. (After a transient failure of the whole transaction every recipient not refused for good is.)
    const later = outcome.kind === "transient" ? [] : rcptRefusals.filter((x) => x.transient).map((x) => x.recipient);
    // A transaction refused for good as a whole (e.g. 554 at DATA) refused the recipients it carried, each recorded
    // with that reply; those put off at RCPT TO are retried (they used to bounce with it).
    const refusedWithMessage: RecipientRefusal[] = outcome.kind === "permanent" && later.length > 0
      ? to.filter((x) => !rcptRefusals.some((r) => r.recipient === x)).map((recipient) => ({
        recipient, transient: false, ...(outcome.smtp ? { smtp: { ...outcome.smtp, response: cutBytes(outcome.smtp.response, REFUSAL_REPLY_BYTES) } } : {}),
      }))
      : [];
    const refusals = [...rcptRefusals, ...refusedWithMessage];
    // Bounded so that the event fits MAIL_EVENTS; `later`, `gone` and `pending` come from the refusals whole. No
    // attempt follows a Sent or Bounced record (`final`): a recipient still put off for now (4xx) is given up there,
    // recorded not transient (transient ones are those retried).
    const rejected = (final: boolean) => refusals.length === 0 ? {}
      : { rejected: refusalsWithin(final ? refusals.map((x) => (x.transient ? { ...x, transient: false } : x)) : refusals) };
    const retry = outcome.kind === "transient" || later.length > 0;
    // The attempt failed with the whole message out and no reply, or an earlier one's outcome is unknown: the relay
    // may have the mail, so a retry may deliver it twice, and a bounce may be of a mail that was delivered.
    const doubt = (outcome.kind === "transient" && outcome.inDoubt) || doubtedBefore ? { inDoubt: true } : {};
    // Counted once the outcome is recorded, like the delivered/deferred/bounced counters.
    // The metric counts refusals at RCPT TO only (a 5xx to the message is counted as the mail's bounce or deferral).
    const countRefused = () => {
      for (const x of rcptRefusals) deps.metrics.recipientsRefused.inc({ class: x.transient ? "transient" : "permanent" });
    };

    // Delivery attempts: a mail released from quarantine used some attempt numbers before (its classification),
    // and attempts a node gave up as it stopped or a relay split with 452 do not count (attemptsNotCounted).
    const tries = attempt - (item.attemptsBefore ?? 0) - (cur.record.attemptsNotCounted ?? 0);
    // 452 "too many recipients" asks for the rest in another transaction now (RFC 5321 4.5.3.1.10), not later:
    // such a split is progress, not a failure, so it neither counts as an attempt nor ends the mail.
    const tooMany = (outcome.kind === "sent" || outcome.kind === "permanent") && later.length > 0
      && rcptRefusals.every((x) => !x.transient || isTooManyRecipients(x.smtp));
    if (outcome.kind === "sent" && (later.length === 0 || (tries >= config.maxAttempts && !tooMany))) {
      // Recipients put off at the last attempt are given up: RETRIES_EXHAUSTED, as a bounce would say.
      const first = rcptRefusals.find((x) => x.transient);
      const exhausted = first ? {
        error: { code: "RETRIES_EXHAUSTED", message: cutChars(`${later.length} of ${to.length} recipients still refused for now at the last attempt (${first.recipient}: ${first.smtp?.response ?? "no reply"}); given up`, 500) },
      } : {};
      await advanceDurably(m, cur, [{ state: "Sent", detail: { ...smtp, ...rejected(true), ...exhausted } }], recipients, attempt);
      deps.metrics.delivered.inc();
      countRefused();
      deps.metrics.deliveryLatency.observe((deps.clock.now() - Date.parse(item.submittedAt)) / 1000);
      alog.info({ smtp: outcome.smtp.code, refused: outcome.rejected.length }, "sent");
      await settle(m, item);
      return;
    }
    // An attempt the node gave up as it stopped is not the relay's failure: never the last one, retried at once.
    const stopped = outcome.kind === "transient" && outcome.stopped === true;
    if (retry && (tries < config.maxAttempts || stopped || tooMany)) {
      const delay = tooMany || stopped ? 0 : backoffDelay({ baseMs: config.retryBaseMs, maxMs: config.retryMaxMs }, tries, deps.random);
      const retryAt = new Date(deps.clock.now() + delay).toISOString();
      const first = rcptRefusals.find((x) => x.transient);
      const putOff = `${later.length} of ${to.length} recipients refused for now (${first?.recipient}: ${first?.smtp?.response ?? "no reply"})`;
      const message = cutChars(outcome.kind === "transient" ? outcome.reason
        : outcome.kind === "permanent" ? `${putOff}; the message was refused for good for the other ${refusedWithMessage.length}: ${outcome.reason}`
          : putOff, 500);
      const gone = new Set(refusals.filter((x) => !x.transient).map((x) => x.recipient));
      const rest = later.length > 0 ? later : to.filter((x) => !gone.has(x));
      const pending = rest.length < recipients.length ? { pending: rest } : {};
      await advanceDurably(m, cur, [{ state: "Deferred", detail: { ...smtp, ...rejected(false), ...pending, ...doubt, retryAt, error: { code: "SMTP_TRANSIENT", message } } }], recipients, attempt, stopped || tooMany ? { notCounted: true } : {});
      deps.metrics.deferred.inc();
      countRefused();
      alog.info({ delay, smtp: outcome.smtp?.code, enhanced: outcome.smtp?.enhanced, failure: failureOf(outcome), ...doubt, pending: later.length || undefined }, "deferred");
      m.nak(delay);
      return;
    }
    const code = retry ? "RETRIES_EXHAUSTED" : "SMTP_PERMANENT";
    const reason = outcome.kind === "permanent" && refusedWithMessage.length > 0
      ? cutChars(`${later.length} of ${to.length} recipients refused for now at the last attempt; the message was refused for good for the other ${refusedWithMessage.length}: ${outcome.reason}`, 500)
      : outcome.kind === "transient" || outcome.kind === "permanent" ? outcome.reason
      : to.length < recipients.length
        ? `every remaining recipient refused (${to.length} of ${recipients.length}; the others were settled by earlier attempts, see the history)`
        : `every recipient refused (${to.length})`;
    await advanceDurably(m, cur, [{ state: "Bounced", detail: { ...smtp, ...rejected(true), ...doubt, error: { code, message: reason } } }], recipients, attempt);
    deps.metrics.bounced.inc();
    countRefused();
    alog.info({ smtp: outcome.smtp?.code, enhanced: outcome.smtp?.enhanced, code, failure: failureOf(outcome), ...doubt }, "bounced");
    await settle(m, item);
  };

  /** Work items per pull request; a request is made once this many slots are free. */
  const pullBatch = Math.max(1, Math.ceil(config.concurrency / 4));
  /** Work items not started yet (see the factory's doc), oldest first. */
  const waiting: JsMsg[] = [];
  /**
   * Every work item the node holds, started or waiting for a slot, until its handler ends: kept alive with
   * `working()`, so the server hands none to another node while this one has it (a delivery, a wait for a slot).
   */
  const kept = holdMessages(WORK_ACK_WAIT_MS, deps.clock);
  /** Set when the node starts no more work items: at its drain deadline, or when its feed ended without a drain. */
  let startNoMore = false;
  const held = () => inFlight.size + waiting.length;
  /** Set once the feed has ended: no pull request is open, so a nak'ed item goes to another node. */
  let feedEnded = false;
  /** Naks (no delay) the work items not started yet. On a closed connection nak throws: those come back after ack_wait. */
  const returnWaiting = () => {
    const given = waiting.splice(0);
    for (const m of given) kept.delete(m);
    try { for (const m of given) m.nak(); } catch { /* closed */ }
  };
  /** Room for a whole pull batch beside what the node holds. */
  const { room, freed } = createRoomGate(() => held() <= config.concurrency - pullBatch);

  const start = (m: JsMsg) => {
    const p = handle(m).catch((err: unknown) => log.error({ err }, "handler crashed"));
    inFlight.add(p);
    void p.finally(() => {
      kept.delete(m);
      inFlight.delete(p);
      const next = startNoMore ? undefined : waiting.shift();
      if (next) start(next);
      freed();
    });
  };
  const take = (m: JsMsg) => {
    kept.add(m);
    if (!startNoMore && inFlight.size < config.concurrency) start(m);
    else waiting.push(m);
  };

  return {
    closed,
    status: () => status,
    notReady: () => {
      const why = feed?.failing();
      return why && `the work consumer ${Names.workStream}/${Names.workConsumer} (provision it again if it was deleted): ${why}`;
    },
    async start() {
      js = jetstream(deps.nc);
      jsm = await jetstreamManager(deps.nc);
      bodies = await new Objm(js).open(Names.bodiesBucket);
      state = await openMailStateStore({ nc: deps.nc, js, clock: deps.clock, node: deps.node });
      service = await startProcessingService({
        nc: deps.nc, js, jsm, state, bodies, classifier: deps.classifier, clock: deps.clock, log, metrics: deps.metrics,
        quarantineThreshold: config.quarantineThreshold, maxMessageBytes: config.maxMessageBytes,
      });
      const consumer = await startStep("the work consumer", () => js.consumers.get(Names.workStream, Names.workConsumer), log);
      status = { state: "running" };
      log.info({ concurrency: config.concurrency, classifier: deps.classifier.version }, "processing node running");
      reaper = createBodyReaper({ jsm, bodies, state, clock: deps.clock, random: deps.random, log, metrics: deps.metrics },
        { intervalMs: config.bodyReapIntervalMs, minAgeMs: config.bodyReapAgeMs });
      reaper.start();
      // A deleted work consumer makes each pull request fail: the feed keeps trying (it works again once the
      // consumer is provisioned again) and /readyz says why meanwhile (notReady).
      feed = createPullFeed(consumer, take, { batch: pullBatch, expiresMs: WORK_PULL_EXPIRES_MS, room }, log);
      void feed.closed.then(async () => {
        // A feed ends without a drain when its connection closed: nothing can be started or finished then.
        if (status.state !== "draining") startNoMore = true;
        // Work items still waiting are started as slots free up (the loop waits for those too), unless past the
        // deadline; those are returned now that no pull request is open (an open one could take them back).
        feedEnded = true;
        if (startNoMore) returnWaiting();
        while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
        returnWaiting();
        // Operator requests taken before the service stopped are answered before the node reports itself closed.
        if (service) await requestsSettled(service);
        await reaper?.stop();
      }).then(
        () => { status = { state: "closed" }; resolveClosed(); },
        (error: unknown) => { status = { state: "closed", error }; resolveClosed(); },
      );
    },
    async drain() {
      status = { state: "draining" };
      if (!feed) { resolveClosed(); return; }
      // Its pass under way ends before its next mail; the node is closed once it has (see start).
      void reaper?.stop();
      await service?.stop();
      // Past the deadline, the transactions still running are given up and recorded (Deferred), not cut off by a kill.
      const deadline = setTimeout(() => {
        log.warn({ inFlight: inFlight.size, waiting: waiting.length, drainTimeoutMs: config.drainTimeoutMs }, "drain deadline: giving up the SMTP transactions in progress");
        startNoMore = true;
        // Not started, and no pull request open to take them back: returned now, not after the given-up transactions.
        if (feedEnded) returnWaiting();
        deps.delivery.abortAll(`FEN_DRAIN_TIMEOUT_MS ${config.drainTimeoutMs}`);
      }, config.drainTimeoutMs);
      // Asks for no more work; what the server sends until the outstanding pull request ends is still taken.
      await feed.drain();
      await closed;
      clearTimeout(deadline);
      deps.delivery.close();
    },
  };
}
