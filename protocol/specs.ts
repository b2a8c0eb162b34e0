import { FenError } from "./errors.js";
import { isMailId } from "./ids.js";
import type { MailId } from "./ids.js";
import { StreamSubjects } from "./subjects.js";

/**
 * Streams, consumers and buckets, with NATS server JSON field names kept as
 * the server spells them. Durations are nanoseconds, as on the wire.
 * Provisioning compares these fields with what the server holds: identical →
 * no-op, different → an error naming the field. Besides what FastEmailNet
 * chooses, each spec pins the server defaults the design relies on (no limit
 * that drops messages, no filter that leaves some undelivered), at the values
 * the server reports for an object created without them, so an object
 * someone changed on the server is named rather than taken as it is. A field
 * pinned as `undefined` must be unset on the server.
 */

const SECOND_NS = 1_000_000_000;

/**
 * The work stream's duplicate window: a work item published again within
 * it (same Nats-Msg-Id) is not stored twice. It is also how long an
 * identical mail submitted without idempotency key counts as a
 * resubmission (see `mailIdFromContent`).
 */
export const DUPLICATE_WINDOW_MS = 2 * 3600 * 1000;

/**
 * Ack wait of the work consumer: a node that took a work item keeps it with
 * `working()` once it has held it a third of this (holdMessages); a node
 * that died gives its work items back after this long. It is the most a
 * work item waits when a consumer leader change lost it (see LEDGER_ACK_WAIT_MS; at 30 s the step-down probe
 * saw 7 of 1,500 mails delivered 30 s late).
 */
export const WORK_ACK_WAIT_MS = 10_000;

/**
 * How long a claim (a DeliveryScheduled status entry) is left to its node by
 * another node that gets the same work item meanwhile (a redelivery around a
 * consumer leader change, a duplicate item), counted from the claim or its
 * last renewal (`claimRenewedAt`); the claimant renews it every third of
 * this while its delivery lasts. Past it, the claimant is taken for dead and
 * the mail is sent again, flagged in doubt. Kept apart from the ack wait, and
 * long: a live claimant's renewal can be late by a store write's timeout and
 * retries, and nodes of the previous version (renewing every 10 s, taking
 * over after 30 s) must agree with this one during a rolling upgrade.
 */
export const CLAIM_TTL_MS = 30_000;

/**
 * Ack wait of the ledger consumer: the longest an event waits to be
 * delivered again when the ledger node never got it or its ack was lost.
 * Both happen around a change of the consumer's leader: nats-server 2.15.3
 * can record events as delivered that no inbox ever receives (a sniffer on
 * every inbox saw 26 such events in one run), and acks sent to the leader
 * that stepped down are lost. The ledger commits within milliseconds and
 * recognises a redelivered event, so a short wait costs little; a node keeps
 * the events it holds longer than a third of this with `working()`.
 */
export const LEDGER_ACK_WAIT_MS = 10_000;

/** Names as operators see them in `nats stream ls`, `nats kv ls`, … */
export const Names = {
  workStream: "MAIL_WORK",
  eventsStream: "MAIL_EVENTS",
  quarantineStream: "MAIL_QUARANTINE",
  /** Durable pull consumer of the processing nodes on MAIL_WORK. */
  workConsumer: "processing",
  /** Durable pull consumer of the ledger node on MAIL_EVENTS. */
  ledgerConsumer: "ledger",
  /** KV: mail id → current state record (compare-and-swap per transition). */
  statusBucket: "mail_status",
  /** KV: the ledger's entries, tiles, blocks and head. */
  ledgerBucket: "ledger",
  /** Object store: message bodies too large to ride in a work item. */
  bodiesBucket: "mail_bodies",
  /** Micro-service names in `nats micro ls`. */
  gatewayService: "fen-gateway",
  processingService: "fen-processing",
  ledgerService: "fen-ledger",
} as const;

/**
 * The stream behind the `mail_bodies` object store, for a read the object
 * store API has no call for: whether any chunk of an object is stored (an
 * object whose chunks are all gone makes the client's read wait for ever).
 * Subjects as the object store lays them out (ADR-20).
 */
export const BodiesBucketStream = {
  /** Stream name. */
  name: `OBJ_${Names.bodiesBucket}`,
  /** Subject of the chunks of the object with this nuid. */
  chunks(nuid: string): string {
    return `$O.${Names.bodiesBucket}.C.${nuid}`;
  },
} as const;

const BODY_OBJECT_RE = /^([a-z2-7]{26})\.[0-9a-f]{16}$/;

/**
 * Names of the objects in `mail_bodies`: `<mailId>.<16 hex digits>`, the
 * digits random per submission that stores a body (two submissions of one
 * mail compose different bytes, and one must not overwrite the object the
 * other's work item refers to). A body is referred to by work items and kept
 * copies of its own mail only: the body reaper reads that mail's, and leaves
 * an object of any other name alone.
 */
export const BodyObjects = {
  /** The name of a body of `mailId`; `nonce`: 8 random bytes. */
  name(mailId: MailId, nonce: Uint8Array): string {
    if (!isMailId(mailId) || nonce.length !== 8) throw new FenError("INTERNAL", `not a body object name: mail ${JSON.stringify(mailId)}, ${nonce.length} nonce bytes`);
    return `${mailId}.${Buffer.from(nonce).toString("hex")}`;
  },
  /** The mail a body object name belongs to, or undefined when `name` is not one. */
  mailIdOf(name: string): MailId | undefined {
    return BODY_OBJECT_RE.exec(name)?.[1] as MailId | undefined;
  },
} as const;

/** Options that differ between deployments. */
export interface SpecOptions {
  /** Replicas of every stream and bucket. @default 3 */
  readonly replicas: number;
}

/** The subset of a stream config FastEmailNet sets and checks. */
export interface StreamSpec {
  readonly name: string;
  readonly subjects: string[];
  readonly retention: "workqueue" | "limits";
  readonly storage: "file";
  readonly num_replicas: number;
  readonly duplicate_window: number;
  readonly max_msg_size: number;
  readonly max_age: number;
  readonly discard: "old" | "new";
  readonly allow_direct: boolean;
  /** -1, no limit: with discard "old" a limit silently drops the oldest work items or events. */
  readonly max_msgs: -1;
  /** -1, no limit (as max_msgs). */
  readonly max_bytes: -1;
  /** -1, no limit (as max_msgs; a work item's or an event's subject is one mail's). */
  readonly max_msgs_per_subject: -1;
  /** false: a sealed stream takes no new message. */
  readonly sealed: false;
  /** false: a quarantine release deletes the held message (`processing/service.ts`). */
  readonly deny_delete: false;
  /** false, the server's default (nothing purges these streams). */
  readonly deny_purge: false;
  /** false: a message with a `Nats-Rollup` header would purge the stream or a subject. */
  readonly allow_rollup_hdrs: false;
}

/** The subset of a consumer config FastEmailNet sets and checks. */
export interface ConsumerSpec {
  readonly stream: string;
  readonly durable_name: string;
  readonly ack_policy: "explicit";
  readonly ack_wait: number;
  readonly max_deliver: number;
  readonly max_ack_pending: number;
  readonly deliver_policy: "all";
  /** Unset: the consumer takes every subject of its stream; a filter would leave the other work items or events undelivered. */
  readonly filter_subject: undefined;
  /** Unset, as filter_subject. */
  readonly filter_subjects: undefined;
  /** Unset: a pull consumer (the nodes fetch); a deliver subject makes it a push consumer. */
  readonly deliver_subject: undefined;
  /** Unset: a redelivery waits the ack wait or the node's nak(delay); a backoff list would override both. */
  readonly backoff: undefined;
}

/** KV and object store buckets. */
export interface BucketSpec {
  readonly name: string;
  readonly kind: "kv" | "object";
  readonly replicas: number;
  readonly history: number;
  /**
   * Whether the bucket's stream accepts atomic batch publishes (nats-server
   * 2.12+): the ledger writes each block's roll-forward keys as one batch.
   * @default false
   */
  readonly allow_atomic?: boolean;
}

/**
 * Stream fields of every bucket's stream, pinned at the values the bucket APIs
 * create them with: no limit that expires or refuses entries (a status record
 * or a ledger entry that expired would be gone).
 */
export const BUCKET_STREAM_LIMITS = { max_age: 0, max_bytes: -1, max_msgs: -1 } as const;

/**
 * Largest work item body carried inline; larger bodies go to the object
 * store. Kept well under the stream's max_msg_size so headers and the JSON
 * envelope always fit.
 */
export const INLINE_BODY_LIMIT = 512 * 1024;

/** Largest life-cycle event MAIL_EVENTS stores (NATS's default max_payload). */
export const EVENT_MAX_BYTES = 1024 * 1024;

/** All streams, in creation order. */
export function streamSpecs(opts: SpecOptions): StreamSpec[] {
  const common = {
    storage: "file",
    num_replicas: opts.replicas,
    discard: "old",
    allow_direct: true,
    max_msgs: -1,
    max_bytes: -1,
    max_msgs_per_subject: -1,
    sealed: false,
    deny_delete: false,
    deny_purge: false,
    allow_rollup_hdrs: false,
  } as const;
  return [
    {
      ...common,
      name: Names.workStream,
      subjects: [StreamSubjects.work],
      retention: "workqueue",
      duplicate_window: DUPLICATE_WINDOW_MS * 1_000_000,
      max_msg_size: 1024 * 1024,
      max_age: 0,
    },
    {
      ...common,
      name: Names.eventsStream,
      subjects: [StreamSubjects.events],
      retention: "limits",
      duplicate_window: 2 * 3600 * SECOND_NS,
      // An event carries every recipient's address (and, for an attempt the
      // relay refused in part, the pending and refused ones): with up to
      // MAX_RECIPIENTS addresses of up to 254 characters that is far more
      // than 64 KiB (test/ledger-node/limits.test.ts pins the bound).
      max_msg_size: EVENT_MAX_BYTES,
      max_age: 0,
    },
    {
      ...common,
      name: Names.quarantineStream,
      subjects: [StreamSubjects.quarantine],
      retention: "limits",
      duplicate_window: 2 * 3600 * SECOND_NS,
      max_msg_size: 1024 * 1024,
      max_age: 0,
    },
  ];
}

/** All durable consumers. */
export function consumerSpecs(): ConsumerSpec[] {
  const common = { filter_subject: undefined, filter_subjects: undefined, deliver_subject: undefined, backoff: undefined } as const;
  return [
    {
      ...common,
      stream: Names.workStream,
      durable_name: Names.workConsumer,
      ack_policy: "explicit",
      ack_wait: (WORK_ACK_WAIT_MS / 1000) * SECOND_NS,
      // Attempts are counted by the processing node (SMTP attempts), not by
      // redeliveries, so the server never drops a work item on its own.
      max_deliver: -1,
      // A Deferred mail waits for its retry as a nak(delay) and holds an
      // ack-pending slot all that time (up to FEN_RETRY_MAX_MS). When the
      // slots are full the server stops delivering new work, so mail that
      // defers for long (one relay refusing one domain for an hour) must not
      // be able to hold back the rest. Nodes bound what they take at once
      // themselves (FEN_CONCURRENCY); this bounds only the deferred queue.
      max_ack_pending: 100_000,
      deliver_policy: "all",
    },
    {
      ...common,
      stream: Names.eventsStream,
      durable_name: Names.ledgerConsumer,
      ack_policy: "explicit",
      ack_wait: (LEDGER_ACK_WAIT_MS / 1000) * SECOND_NS,
      max_deliver: -1,
      max_ack_pending: 10_000,
      deliver_policy: "all",
    },
  ];
}

/** All KV and object store buckets. */
export function bucketSpecs(opts: SpecOptions): BucketSpec[] {
  return [
    { name: Names.statusBucket, kind: "kv", replicas: opts.replicas, history: 1 },
    { name: Names.ledgerBucket, kind: "kv", replicas: opts.replicas, history: 1, allow_atomic: true },
    { name: Names.bodiesBucket, kind: "object", replicas: opts.replicas, history: 1 },
  ];
}
