import { randomInt } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { Codecs, FenError, Names, canTransition, eventSubject } from "../../protocol/index.js";
import type { EventDetail, MailEvent, MailId, MailState, StatusRecord } from "../../protocol/index.js";
import type { Clock } from "./clock.js";
import { STORE_READ_ATTEMPT_MS, decodeStored, isRequestTimeout, isWrongLastSequence, lastBySubjectFromLeader, orItsCause, publishOnce, retryUnstored, storeRead } from "./js-errors.js";

/**
 * A status record with the KV revision it was read at (for compare-and-swap).
 * Revision 0: the mail has no KV entry yet (it is PendingProcessing, known
 * only from its work item and event); the next advance creates the entry.
 */
export interface Versioned {
  readonly record: StatusRecord;
  readonly revision: number;
}

/** One step of a transition: the state entered and what to record with it. */
export interface Step {
  readonly state: MailState;
  readonly detail?: EventDetail;
}

/**
 * The mail state machine's storage. The `mail_status` KV entry is the
 * current state, advanced only by compare-and-swap, so two nodes can never
 * both move a mail forward; every state entered is also published as a
 * life-cycle event on MAIL_EVENTS (de-duplicated by event id), which is the
 * history the ledger folds.
 *
 * PendingProcessing is recorded as its event only: the KV entry is written
 * first by the claim that moves the mail on (a create-if-absent), so a mail
 * costs one replicated write fewer, and the gateway and a node taking the
 * work item at once never race to create it. A mail without a KV entry is
 * PendingProcessing if it has events (see `createStatusHandler` in the gateway).
 */
export interface MailStateStore {
  /**
   * The status entry, read through the bucket's stream leader (STREAM.MSG.GET:
   * the bucket is bound without `allow_direct`, see openMailStateStore), so it
   * has every swap acknowledged so far. @throws FenError STORE_UNAVAILABLE when the read fails.
   */
  get(mailId: MailId): Promise<Versioned | undefined>;
  /**
   * Publishes the PendingProcessing event (a no-op when it is stored already)
   * and returns that state at revision 0, without a KV write. Called by the
   * gateway once the work item is stored, and by a node that finds no KV
   * entry (the gateway may not have published yet, or died before it).
   * With `budgetMs`, for a caller to whom the event is not essential (the
   * gateway), a publish unanswered for a second is made again, and the wait
   * for the ack ends, failed, after `budgetMs` (default: as every event,
   * see EVENT_PUBLISH).
   */
  begin(mailId: MailId, submittedAt: string, recipients: readonly string[], detail?: EventDetail, opts?: { budgetMs?: number }): Promise<Versioned>;
  /**
   * Walks `steps` in order from `from`: publishes one event per step, then
   * swaps the KV entry to the last step's state (creates it from revision
   * 0). Throws STATE_CONFLICT when the entry moved since it was read, and
   * INTERNAL for a transition the life cycle forbids.
   */
  advance(from: Versioned, steps: readonly Step[], recipients: readonly string[], attempt?: number, opts?: AdvanceOptions): Promise<Versioned>;
  /**
   * Renews the claim of a DeliveryScheduled mail (its `claimRenewedAt`,
   * swapped like a transition, with no event). Throws STATE_CONFLICT when
   * the entry moved since it was read (another node took the mail over).
   */
  renewClaim(current: Versioned): Promise<Versioned>;
  /**
   * Re-publishes the event of the current state (a no-op inside the
   * duplicate window). Resolves true when this call stored it (it was not
   * stored before, or its id has left the 2 h window), false when the stream
   * already had it. One publish, with the client's timeout: one made again
   * after going unanswered could not tell its own stored copy from an
   * earlier one.
   */
  republish(current: Versioned, recipients: readonly string[]): Promise<boolean>;
}

export interface AdvanceOptions {
  /**
   * Swap the KV entry first, then publish the events. For operator
   * requests, which can race each other with different outcomes (a release
   * and a delete of one quarantined mail): the loser's swap fails before it
   * has written an event, so the history shows only what happened. Racing
   * nodes do not need it (they write the same event ids). If publishing
   * fails after the swap, the caller's repeat must `republish` the state.
   */
  readonly commitFirst?: boolean;
  /** This attempt does not count against the mail's attempts (`attemptsNotCounted` goes up by one). */
  readonly notCounted?: true;
  /** The steps' events are stored already (found in MAIL_EVENTS): only the status entry is swapped. */
  readonly published?: true;
}

/**
 * How an event is published (publishOnce): an attempt left unanswered for `unansweredMs` (a leader stepping
 * down dropped it) is made again with the same message id, until `budgetMs` has passed; then the timeout is the
 * caller's (a work item redelivered, an outcome recorded again). An ack takes milliseconds, up to a few hundred
 * under full load: 2 s unanswered is a dropped publish, and the client's own 5 s wait had cost the mail those
 * 5 s and a redelivery.
 */
export const EVENT_PUBLISH = { unansweredMs: 2000, budgetMs: 6000 } as const;

/**
 * An unanswered status swap is looked for in the entry this many times, this
 * far apart (a write still being replicated lands within moments), before
 * its outcome is called unknown.
 */
const UNANSWERED_SWAP_READS = 4;
const UNANSWERED_SWAP_PAUSE_MS = 250;

/** How long `begin` with a budget (the gateway's) waits for a publish's ack before making it again. */
export const UNANSWERED_EVENT_MS = 1000;

/**
 * A claim's time stamp (`claimRenewedAt`): `iso` (a `toISOString()`) with six
 * random digits below the millisecond. They make every claim's bytes this
 * writer's own, so that an unanswered claim found in the entry is known to be
 * this one and not a same-millisecond claim of another node from the same
 * revision (see `swap`). Readers parse it as the same instant.
 */
export function claimStamp(iso: string): string {
  return `${iso.slice(0, -1)}${randomInt(0, 1_000_000).toString().padStart(6, "0")}Z`;
}

/** Event id `<mailId>.<state>.<attempt>`, also the JetStream Nats-Msg-Id. */
export function eventIdOf(mailId: string, state: MailState, attempt: number): string {
  return `${mailId}.${state}.${attempt}`;
}

function isWrongRevision(err: unknown): boolean {
  return isWrongLastSequence(err) || /wrong last sequence|key exists/i.test(String((err as Error | undefined)?.message));
}

/**
 * `kv` is written (compare-and-swap) and, unless `readKv` is given, read;
 * `readKv`, the same bucket opened with a short request timeout (see
 * {@link openMailStateStore}), serves `get`.
 */
export function createMailStateStore(deps: { js: JetStreamClient; kv: KV; readKv?: KV; clock: Clock; node: string }): MailStateStore {
  const { js, kv, clock, node } = deps;
  const readKv = deps.readKv ?? kv;
  const iso = () => new Date(clock.now()).toISOString();

  /** Publishes one event; `retry` says how (see EVENT_PUBLISH), null: one publish with the client's timeout. */
  const publishEvent = async (
    mailId: MailId, state: MailState, attempt: number, detail: EventDetail, recipients: readonly string[], at: string,
    retry: { readonly unansweredMs: number; readonly budgetMs: number } | null = EVENT_PUBLISH,
  ) => {
    const eventId = eventIdOf(mailId, state, attempt);
    const ev: MailEvent = { kind: "mail.event", v: 1, eventId, mailId, state, attempt, at, node, recipients: [...recipients], detail };
    const data = Codecs.mailEvent.encode(ev);
    const subject = eventSubject(mailId, state);
    // The gateway and a processing node can write the same event at once (the node takes the work item while
    // the gateway is still recording PendingProcessing): publishOnce waits for the other write rather than
    // failing the work item, which would cost a redelivery and its backoff.
    return publishOnce(js, subject, data, { msgID: eventId, ...retry });
  };

  /**
   * The compare-and-swap of a mail's entry from `revision` (0: creates it): STATE_CONFLICT when the entry moved,
   * STORE_UNAVAILABLE ("could not <what> <mailId>") on any other failure. A write that found no stream listening
   * (KV_mail_status changing leaders) stored nothing and is made again (retryUnstored): failing it cost the mail
   * a redelivery and its backoff, or a warning and a retry of its outcome.
   *
   * A write left unanswered may have landed (its reply lost, a leader stepping down after storing it): the
   * entry is read until it moves past `revision` (UNANSWERED_SWAP_READS reads), and if it then holds exactly
   * these bytes the write is this one, and its revision is returned. (A claim's bytes are its writer's own:
   * `claimRenewedAt` has random digits, see claimStamp. Other swaps can be made by two writers from one
   * revision with identical bytes, e.g. two nodes recording an outcome they both found in its event, or two
   * identical operator requests; both then do the same thing, so either may take the write for its own.)
   * Otherwise (another write, no move, a read failing) the outcome is unknown: STORE_UNAVAILABLE. (An
   * unanswered claim that had landed used to leave its mail to wait out the claim's life, then be sent
   * flagged in doubt.)
   */
  const swap = async (record: StatusRecord, revision: number, what: string): Promise<number> => {
    const bytes = Codecs.statusRecord.encode(record);
    try {
      return await retryUnstored(() => revision === 0 ? kv.create(record.mailId, bytes) : kv.update(record.mailId, bytes, revision));
    } catch (err) {
      if (isWrongRevision(err)) throw new FenError("STATE_CONFLICT", `mail ${record.mailId} changed concurrently`, { cause: err });
      if (orItsCause(err, isRequestTimeout)) {
        for (let read = 1; read <= UNANSWERED_SWAP_READS; read++) {
          await new Promise((r) => setTimeout(r, UNANSWERED_SWAP_PAUSE_MS));
          const now = await storeRead(`the status of ${record.mailId}`, () => readKv.get(record.mailId)).catch(() => undefined);
          if (now === undefined) break; // the store does not answer either: unknown
          if (!now || now.revision <= revision) continue; // not landed yet: look again
          if (now.operation === "PUT" && Buffer.from(now.value).equals(Buffer.from(bytes))) return now.revision;
          break; // another write is there
        }
      }
      throw new FenError("STORE_UNAVAILABLE", `could not ${what} ${record.mailId}`, { cause: err });
    }
  };

  const store: MailStateStore = {
    async get(mailId) {
      // "Temporarily unavailable" or no answer within STORE_READ_ATTEMPT_MS, e.g. while the bucket's stream
      // changes leaders: storeRead asks again.
      const e = await storeRead(`the status of ${mailId}`, () => readKv.get(mailId));
      if (!e || e.operation !== "PUT") return undefined;
      // A record this version cannot read (a newer version's, in a rolling upgrade) is no fault of the caller's
      // request: STORE_UNAVAILABLE (a node of that version can read it) or INTERNAL, never BAD_REQUEST.
      return { record: decodeStored(Codecs.statusRecord, e.value, `the status entry of ${mailId}`), revision: e.revision };
    },

    async begin(mailId, submittedAt, recipients, detail = {}, opts = {}) {
      const at = iso();
      await publishEvent(mailId, "PendingProcessing", 0, detail, recipients, at,
        opts.budgetMs === undefined ? EVENT_PUBLISH : { unansweredMs: UNANSWERED_EVENT_MS, budgetMs: opts.budgetMs });
      const record: StatusRecord = {
        kind: "mail.status-record", v: 1, mailId, state: "PendingProcessing", attempt: 0, updatedAt: at, submittedAt, detail,
      };
      return { record, revision: 0 };
    },

    async advance(from, steps, recipients, attempt = from.record.attempt, opts = {}) {
      let prev = from.record.state;
      for (const s of steps) {
        if (!canTransition(prev, s.state)) {
          throw new FenError("INTERNAL", `forbidden transition ${prev} → ${s.state} for ${from.record.mailId}`);
        }
        prev = s.state;
      }
      const at = iso();
      const mailId = from.record.mailId;
      // Events go out pipelined on one connection (so in order); the KV swap
      // is the commit point and happens only once every event is stored
      // (or, with commitFirst, before any is).
      const publishAll = () => Promise.all(steps.map((s) => publishEvent(mailId, s.state, attempt, s.detail ?? {}, recipients, at)));
      if (!opts.commitFirst && !opts.published) await publishAll();
      const last = steps[steps.length - 1];
      if (!last) return from;
      const { claimRenewedAt: _renewed, ...base } = from.record;
      const record: StatusRecord = {
        ...base, state: last.state, attempt, updatedAt: at, detail: last.detail ?? {},
        ...(opts.notCounted ? { attemptsNotCounted: (from.record.attemptsNotCounted ?? 0) + 1 } : {}),
        // A claim carries its own stamp, unique to this write, taken now (after the events went out) so that
        // its age counts from the swap.
        ...(last.state === "DeliveryScheduled" ? { claimRenewedAt: claimStamp(iso()) } : {}),
      };
      const revision = await swap(record, from.revision, `record ${last.state} for`);
      if (opts.commitFirst && !opts.published) await publishAll();
      return { record, revision };
    },

    async renewClaim(current) {
      if (current.record.state !== "DeliveryScheduled" || current.revision === 0) {
        throw new FenError("INTERNAL", `no claim to renew: ${current.record.mailId} is ${current.record.state}`);
      }
      const record: StatusRecord = { ...current.record, claimRenewedAt: claimStamp(iso()) };
      return { record, revision: await swap(record, current.revision, "renew the claim on") };
    },

    async republish(current, recipients) {
      const r = current.record;
      const ack = await publishEvent(r.mailId, r.state, r.attempt, r.detail, recipients, r.updatedAt, null);
      return !ack.duplicate;
    },
  };
  return store;
}

/**
 * A node's status store on the `mail_status` bucket, written through `js`.
 * Opened by binding (`Kvm.open`), which leaves `allow_direct` unset, so the
 * KV client reads through the stream leader, never a lagging replica: the
 * processing node acts on what it reads (a Quarantined mail's work item is
 * acked), and so does mail.status (no entry: not claimed).
 * With `shortReads` (for a node that answers requests with what it reads:
 * the gateway) it reads through a handle whose requests time out after
 * STORE_READ_ATTEMPT_MS, so a read a stepping-down leader dropped is asked
 * again within the caller's time; without it (the processing node, which
 * reads every work item's entry, under load too) with the client's 5 s,
 * asked once. (Opening binds to the bucket: no request.)
 */
export async function openMailStateStore(deps: { nc: NatsConnection; js: JetStreamClient; clock: Clock; node: string; shortReads?: boolean }): Promise<MailStateStore> {
  const kv = await new Kvm(deps.js).open(Names.statusBucket);
  const readKv = deps.shortReads ? await new Kvm(jetstream(deps.nc, { timeout: STORE_READ_ATTEMPT_MS })).open(Names.statusBucket) : kv;
  return createMailStateStore({ js: deps.js, kv, readKv, clock: deps.clock, node: deps.node });
}

/**
 * The newest event of mail `mailId` in `state` (the latest attempt's: attempts only grow), read through the
 * events stream's leader, so a stored one is never missed for a lagging replica; undefined when there is none.
 * Read once: callers that answer requests wrap it in storeRead.
 */
export async function newestEvent(jsm: JetStreamManager, mailId: MailId, state: MailState): Promise<MailEvent | undefined> {
  const msg = await lastBySubjectFromLeader(jsm, Names.eventsStream, eventSubject(mailId, state));
  return msg ? decodeStored(Codecs.mailEvent, msg.data, `event ${msg.seq} of ${Names.eventsStream}`) : undefined;
}
