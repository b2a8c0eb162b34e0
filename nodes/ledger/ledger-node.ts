import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { JsMsg } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import type { Service } from "@nats-io/services";
import { Codecs, FenError, LEDGER_ACK_WAIT_MS, LedgerBucketKeys, LedgerCodecs, Names, ServiceSubjects, toFenError } from "../../protocol/index.js";
import type { LedgerMeta, MailEvent } from "../../protocol/index.js";
import { encodeEntry, ledgerErrorCode, parseVerifierKey } from "../../ledger/index.js";
import type { NoteSigner } from "../../ledger/index.js";
import type { Actor, ActorStatus } from "../common/actor.js";
import { ackConfirmed } from "../common/acks.js";
import { startStep } from "../common/js-errors.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import type { Metrics } from "../common/metrics.js";
import { holdMessages } from "../common/held-messages.js";
import { createPullFeed, createRoomGate } from "../common/pull-feed.js";
import type { PullFeed } from "../common/pull-feed.js";
import { serveEndpoint } from "../common/rpc.js";
import type { LedgerConfig } from "../config/index.js";
import { entryOfEvent } from "./entry-of-event.js";
import { eventsProbe, headOf, proveConsistencyBetween, proveMail } from "./prove.js";
import { createSequencer } from "./sequencer.js";
import type { CommitOutcome, PendingEntry } from "./sequencer.js";
import { createLedgerStore } from "./store.js";
import type { LedgerStore } from "./store.js";

/** Version of the `fen-ledger` service in `nats micro ls`. */
export const LEDGER_VERSION = "0.1.0";

/**
 * Largest total of encoded entries in one block. The staged block carries
 * them base64-encoded in one KV value, which must stay under NATS's default
 * 1 MiB max_payload.
 */
export const BLOCK_MAX_ENTRY_BYTES = 600 * 1024;

/**
 * Life of each pull request on MAIL_EVENTS. A draining node waits for its
 * outstanding request to end before it commits its last block, so this
 * bounds a drain on an idle stream.
 */
export const EVENTS_PULL_EXPIRES_MS = 3000;

/** When an event this node cannot read (a newer version's) comes back to a ledger node. */
export const UNREADABLE_EVENT_RETRY_MS = 60_000;

/** What a committed block looked like, for instrumentation. */
export interface BlockCommitted extends CommitOutcome {
  /** Milliseconds from the start of the commit until its events were acknowledged. */
  readonly totalMs: number;
  /** Milliseconds the acknowledgements took. */
  readonly ackMs: number;
}

/** Dependencies of {@link createLedgerNode}. */
export interface LedgerNodeDeps {
  readonly nc: NatsConnection;
  readonly log: Logger;
  readonly clock: Clock;
  /** Instance name. */
  readonly node: string;
  readonly metrics: Metrics;
  /** The log's signing key (from FEN_LEDGER_SIGNING_KEY). */
  readonly signer: NoteSigner;
  /** Recipient commitment key (from FEN_LEDGER_COMMITMENT_KEY), at least 16 bytes. */
  readonly commitmentKey: Uint8Array;
  /** Called after each batch is committed and acknowledged (benchmarks, tests). */
  readonly onBlock?: (info: BlockCommitted) => void;
}

/** The ledger node actor. */
export type LedgerNode = Actor;

/**
 * Creates a ledger node: it consumes MAIL_EVENTS with the durable `ledger`
 * consumer, appends every event exactly once in signed blocks of up to
 * `ledgerBatchSize` events or `ledgerBatchMs` (see {@link createSequencer}
 * for the commit protocol), acknowledges events only once their block is
 * committed, and serves `fen-ledger` (`ledger.head`, `ledger.proof`,
 * `ledger.consistency`). Any number of ledger nodes may run at once.
 *
 * A `LEDGER_CORRUPT` fault (stored data that does not verify) stops the
 * node with that error in its status; storage faults are retried.
 *
 * `drain()` asks for no more events, takes every event already sent to the
 * node (it waits for the outstanding pull request to end, at most
 * {@link EVENTS_PULL_EXPIRES_MS}), commits and acknowledges them, then
 * closes. An event the node holds when it closes without committing it (a
 * commit that failed during the drain, a fault) is `nak`ed, so that it is
 * redelivered at once rather than after ack_wait.
 */
export function createLedgerNode(deps: LedgerNodeDeps, config: LedgerConfig): LedgerNode {
  let status: ActorStatus = { state: "created" };
  let feed: PullFeed | undefined;
  let service: Service | undefined;
  let draining = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const log = deps.log.child({ actor: "ledger" });
  const queue: JsMsg[] = [];
  /**
   * Events received and neither acknowledged nor terminated (queued or being
   * committed): kept alive, so the server does not send them again, and
   * `nak`ed if the node closes.
   */
  const held = holdMessages(LEDGER_ACK_WAIT_MS, deps.clock);
  let ended = false;
  /** A commit failed: take no more batches. */
  let failed = false;
  let wake: (() => void) | undefined;
  /** Events one pull request asks for; the next is made once the queue is shorter. */
  const pullBatch = Math.max(512, 2 * config.ledgerBatchSize);
  const { room, freed } = createRoomGate(() => queue.length < pullBatch);

  /** Resolves on the next queued message, the end of the stream of messages, or after `ms`. */
  const signal = (ms?: number) => new Promise<void>((resolve) => {
    const timer = ms === undefined ? undefined : setTimeout(() => { wake = undefined; resolve(); }, ms);
    wake = () => { if (timer) clearTimeout(timer); wake = undefined; resolve(); };
  });

  const nextBatch = async (): Promise<JsMsg[] | undefined> => {
    while (queue.length === 0) {
      if (ended || failed) return undefined;
      await signal();
    }
    const deadline = deps.clock.now() + config.ledgerBatchMs;
    while (queue.length < config.ledgerBatchSize && !ended && !draining) {
      const left = deadline - deps.clock.now();
      if (left <= 0) break;
      await signal(left);
    }
    let n = 0;
    let bytes = 0;
    while (n < queue.length && n < config.ledgerBatchSize) {
      const size = (queue[n] as JsMsg).data.length;
      if (n > 0 && bytes + size > BLOCK_MAX_ENTRY_BYTES) break;
      bytes += size;
      n++;
    }
    const batch = queue.splice(0, n);
    freed();
    return batch;
  };

  const toPending = (batch: JsMsg[]): { msgs: JsMsg[]; pending: PendingEntry[] } => {
    const msgs: JsMsg[] = [];
    const pending: PendingEntry[] = [];
    // An event that cannot be an entry never will be: say so loudly and drop it.
    const drop = (m: JsMsg, err: unknown) => {
      const code = ledgerErrorCode(err) ?? toFenError(err).code;
      log.error({ err, code, seq: m.seq, subject: m.subject }, "event cannot be recorded in the ledger; terminated");
      held.delete(m);
      m.term(`not recordable: ${code}`);
    };
    for (const m of batch) {
      let ev: MailEvent;
      try {
        ev = Codecs.mailEvent.decode(m.data);
      } catch (err) {
        if (!Codecs.mailEvent.fromNewerVersion(m.data)) { drop(m, err); continue; }
        // An event written by a newer version (a higher v, or fields this one does not know), during a rolling
        // upgrade: left for a ledger node that can read it (terminating it would leave it out of the ledger).
        log.error({ err: toFenError(err), seq: m.seq, subject: m.subject }, "event this node cannot read (a newer version's?); left for another ledger node");
        held.delete(m);
        m.nak(UNREADABLE_EVENT_RETRY_MS);
        continue;
      }
      try {
        const bytes = encodeEntry(entryOfEvent(ev, deps.commitmentKey));
        pending.push({ mailId: ev.mailId, eventId: ev.eventId, bytes });
        msgs.push(m);
      } catch (err) {
        drop(m, err);
      }
    }
    return { msgs, pending };
  };

  const commitWithRetry = async (sequencer: ReturnType<typeof createSequencer>, pending: PendingEntry[], onCommitted: () => void) => {
    // The events stay held (kept alive) while a commit waits out a server fail-over.
    for (let attempt = 0; ; attempt++) {
      try {
        return await sequencer.commit(pending, onCommitted);
      } catch (err) {
        const fe = toFenError(err);
        if (fe.code === "LEDGER_CORRUPT" || !fe.transient || draining) throw fe;
        const delay = Math.min(5000, 100 * 2 ** attempt);
        log.warn({ err: fe, code: fe.code, attempt, delay }, "committing a block failed; retrying");
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };

  const serve = (store: LedgerStore, meta: LedgerMeta, hasEvents: (mailId: string) => Promise<boolean>) => {
    const s = service as Service;
    serveEndpoint(s, { name: "head", subject: ServiceSubjects.ledgerHead }, async (d) => {
      LedgerCodecs.headRequest.decode(d);
      return LedgerCodecs.headReply.encode(await headOf(store, meta));
    }, log);
    serveEndpoint(s, { name: "proof", subject: ServiceSubjects.ledgerProof }, async (d) => {
      const req = LedgerCodecs.proofRequest.decode(d);
      return LedgerCodecs.proofReply.encode(await proveMail(store, req.mailId, hasEvents));
    }, log);
    serveEndpoint(s, { name: "consistency", subject: ServiceSubjects.ledgerConsistency }, async (d) => {
      const req = LedgerCodecs.consistencyRequest.decode(d);
      return LedgerCodecs.consistencyReply.encode(await proveConsistencyBetween(store, req.from, req.to));
    }, log);
  };

  const finish = (error?: unknown) => {
    if (held.size > 0) {
      log.warn({ events: held.size }, "returning the events not committed to the server (nak)");
      // On a closed connection (a drain given up with no server left) nak throws: they come back after ack_wait.
      try { for (const m of held.messages()) m.nak(); } catch { /* closed */ }
    }
    held.clear();
    status = error === undefined ? { state: "closed" } : { state: "closed", error };
    resolveClosed();
  };

  return {
    closed,
    status: () => status,
    notReady: () => {
      const why = feed?.failing();
      return why && `the events consumer ${Names.eventsStream}/${Names.ledgerConsumer}: ${why}`;
    },
    async start() {
      const js = jetstream(deps.nc);
      const kv = await new Kvm(js).open(Names.ledgerBucket);
      const jsm = await jetstreamManager(deps.nc);
      const store = createLedgerStore(kv, jsm);
      const origin = config.ledgerOrigin;
      const meta: LedgerMeta = { kind: "ledger.meta", v: 1, origin, verifierKey: deps.signer.verifierKey };
      if (await store.putImmutable(LedgerBucketKeys.meta, LedgerCodecs.meta.encode(meta)) === "conflict") {
        const have = await store.readMeta();
        throw new FenError("CONFIG_INVALID",
          `the ledger bucket belongs to origin ${JSON.stringify(have?.value.origin)} and key ${have?.value.verifierKey}; ` +
          `this node has origin ${JSON.stringify(origin)} and key ${meta.verifierKey} (FEN_LEDGER_ORIGIN, FEN_LEDGER_SIGNING_KEY)`);
      }
      const sequencer = createSequencer({
        store, signer: deps.signer, verifier: parseVerifierKey(deps.signer.verifierKey), origin, clock: deps.clock, log,
      });
      const tip = await startStep("reading the ledger's head", () => sequencer.load(), log);
      deps.metrics.ledgerHeight.set(tip.frontier.size);
      service = await new Svcm(deps.nc).add({
        name: Names.ledgerService, version: LEDGER_VERSION, description: "FastEmailNet transparency ledger",
      });
      serve(store, meta, eventsProbe(jsm));
      const consumer = await startStep("the events consumer", () => js.consumers.get(Names.eventsStream, Names.ledgerConsumer), log);
      status = { state: "running" };
      log.info({ size: tip.frontier.size, block: tip.head?.value.block ?? -1, verifierKey: meta.verifierKey }, "ledger node running");

      feed = createPullFeed(consumer, (m) => {
        held.add(m);
        queue.push(m);
        wake?.();
      }, { batch: pullBatch, expiresMs: EVENTS_PULL_EXPIRES_MS, room }, log);
      void feed.closed.then(() => { ended = true; wake?.(); });

      // Two batches in flight: the next one is taken, decoded and built (on
      // the block being swapped in) while this one's head swap is under way;
      // the sequencer still swaps them one at a time, in order.
      let inFlight: Promise<void> = Promise.resolve();
      void (async () => {
        for (;;) {
          const batch = await nextBatch();
          if (!batch) break;
          const started = deps.clock.now();
          const { msgs: ok, pending } = toPending(batch);
          if (pending.length === 0) continue;
          const previous = inFlight;
          inFlight = (async () => {
            // Acknowledged once the head swap made the block durable, while it
            // rolls forward and the next batch is built.
            let acking = started;
            let acked: Promise<unknown> = Promise.resolve();
            const ack = () => {
              acking = deps.clock.now();
              // Plain acks, and a confirmed one on the last (ackConfirmed: sent
              // again across a consumer leader change). No guarantee rests on an
              // ack: a lost one only means a redelivery, which the index recognises.
              for (const m of ok) held.delete(m);
              acked = ackConfirmed(deps.nc, ok, log);
            };
            const outcome = await commitWithRetry(sequencer, pending, ack);
            if (!outcome.block) ack();
            const size = sequencer.tip()?.frontier.size;
            if (size !== undefined) deps.metrics.ledgerHeight.set(size);
            if (outcome.block) log.debug({ block: outcome.block.block, size: outcome.block.size, appended: outcome.appended, duplicates: outcome.duplicates, conflicts: outcome.conflicts }, "block committed");
            else log.debug({ duplicates: outcome.duplicates }, "batch already in the log");
            await previous;
            await acked;
            deps.onBlock?.({ ...outcome, totalMs: deps.clock.now() - started, ackMs: deps.clock.now() - acking });
          })();
          // A failure is handled where this is awaited; meanwhile it ends the batching.
          inFlight.catch(() => { failed = true; wake?.(); });
          try {
            await previous;
          } catch (err) {
            await inFlight.catch(() => undefined);
            throw err;
          }
        }
        await inFlight;
        await sequencer.settle();
      })().then(
        async () => { await service?.stop().catch(() => undefined); finish(); },
        async (err: unknown) => {
          const fe = toFenError(err);
          if (draining && fe.transient) {
            log.warn({ err: fe, code: fe.code }, "the last batch was not committed before the drain; its events are returned to the server");
            await feed?.closed;
            await service?.stop().catch(() => undefined);
            finish();
            return;
          }
          log.fatal({ err, code: fe.code }, "ledger node stopped");
          feed?.stop();
          await feed?.closed;
          await service?.stop().catch(() => undefined);
          finish(err);
        },
      );
    },
    async drain() {
      status = { state: "draining" };
      draining = true;
      if (!feed) { finish(); return; }
      // Stop pulling; what the server sent is still taken, committed and acknowledged (see the factory's doc).
      wake?.();
      await feed.drain();
      await closed;
    },
  };
}
