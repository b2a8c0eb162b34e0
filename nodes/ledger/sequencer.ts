import { FenError, LedgerBucketKeys, LedgerCodecs } from "../../protocol/index.js";
import type { LedgerBlock, LedgerBlockRef } from "../../protocol/index.js";
import {
  EMPTY_FRONTIER, appendBatch, appendLeaves, decodeEntry, decodeFrontier, encodeFrontier, frontierRoot, hashLeaf,
  ledgerErrorCode, openCheckpoint, signCheckpoint, tilePath,
} from "../../ledger/index.js";
import type { Frontier, NoteSigner, NoteVerifier, TileData } from "../../ledger/index.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import { sha256Hex } from "./store.js";
import type { LedgerStore, Stored, StoredHead } from "./store.js";

/** One event ready to append: its index key, id and encoded entry. */
export interface PendingEntry {
  /** `ev.…` key of the event (see `LedgerBucketKeys.event`). */
  readonly eventKey: string;
  readonly eventId: string;
  /** `encodeEntry` bytes. */
  readonly bytes: Uint8Array;
}

/** What {@link Sequencer.commit} did with a batch. */
export interface CommitOutcome {
  /** The committed block, when the batch had anything new. */
  readonly block?: LedgerBlockRef;
  /** Entries appended by this call. */
  readonly appended: number;
  /** Batch events already in the log (or repeated in the batch). */
  readonly duplicates: number;
  /** Head compare-and-swaps lost to another writer before this one won. */
  readonly conflicts: number;
  /** Milliseconds from the start of the call until the head swap. */
  readonly commitMs: number;
}

/** The log's tip as this node last saw it. */
export interface Tip {
  /** The head record; absent for an empty log. */
  readonly head?: StoredHead;
  /** Tree frontier at the head's size. */
  readonly frontier: Frontier;
}

/**
 * Appends batches of entries as signed blocks, so that any number of
 * writers share one linear log:
 *
 * 1. stage the block's full content under `stage.<sha256 of its bytes>`
 *    (create-if-absent);
 * 2. compare-and-swap `head` from the revision it was built on to the new
 *    block record: this is the commit point, and a writer that loses it
 *    drops its stage, reloads the head and retries without the events the
 *    winner appended;
 * 3. roll the block forward: hash tiles, `ev.*` index records, then
 *    `block.<n>` last. Every write is deterministic from the stage, so any
 *    node can finish a half-written block; "already there, identical" is
 *    success.
 *
 * Invariant: a block is only ever built on a head that is fully rolled
 * forward, so the `ev.*` index covers every earlier block and a redelivered
 * event is found there and not appended twice.
 */
export interface Sequencer {
  /** Reads the head, rolls its block forward if needed, and returns the tip. */
  load(): Promise<Tip>;
  /** The tip after the last load or commit, if known. */
  tip(): Tip | undefined;
  /**
   * Appends the entries not yet in the log as one block.
   *
   * @throws FenError `LEDGER_UNAVAILABLE` (retry the same batch), `LEDGER_CORRUPT` (stop).
   */
  commit(batch: readonly PendingEntry[]): Promise<CommitOutcome>;
}

/** Dependencies of {@link createSequencer}. */
export interface SequencerDeps {
  readonly store: LedgerStore;
  readonly signer: NoteSigner;
  readonly verifier: NoteVerifier;
  readonly origin: string;
  readonly clock: Clock;
  readonly log: Logger;
}

const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

function corrupt(message: string, cause?: unknown): FenError {
  return new FenError("LEDGER_CORRUPT", message, cause === undefined ? {} : { cause });
}

/** Runs a ledger-library step, turning its typed errors into `LEDGER_CORRUPT` (stored data) or keeping ours. */
async function checked<T>(what: string, f: () => T | Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof FenError) throw err;
    // A storage fault inside a library call (our tile reader) stays what it was.
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof FenError) throw cause;
    const code = ledgerErrorCode(err);
    throw corrupt(`${what}: ${code ?? "error"}: ${(err as Error).message}`, err);
  }
}

/** Creates a sequencer over the store; see {@link Sequencer}. */
export function createSequencer(deps: SequencerDeps): Sequencer {
  const { store, signer, verifier, origin, clock } = deps;
  let current: (Tip & { rolled: boolean; body?: LedgerBlock }) | undefined;

  /** Frontier after `block`, checked against its signed checkpoint. */
  const frontierAfter = (block: LedgerBlock, ref: LedgerBlockRef): Promise<Frontier> =>
    checked(`block ${ref.block}`, () => {
      const { checkpoint } = openCheckpoint(ref.checkpoint, verifier, { origin });
      const prev = decodeFrontier(unb64(block.prevFrontier));
      const f = appendLeaves(prev, block.entries.map((e) => hashLeaf(unb64(e))));
      if (block.block !== ref.block || block.oldSize !== ref.oldSize || prev.size !== ref.oldSize || f.size !== ref.size
        || checkpoint.size !== ref.size || block.checkpoint !== ref.checkpoint
        || !Buffer.from(frontierRoot(f)).equals(Buffer.from(checkpoint.rootHash))) {
        throw corrupt(`block ${ref.block}: staged content does not match its record`);
      }
      return f;
    });

  const rollForward = async (block: LedgerBlock, ref: Stored<LedgerBlockRef>, known?: { tiles: readonly TileData[]; keys: readonly { eventKey: string; eventId: string }[] }) => {
    const n = ref.value.block;
    let tiles = known?.tiles;
    let keys = known?.keys;
    const entries = block.entries.map(unb64);
    if (!tiles || !keys) {
      const r = await checked(`block ${n} roll-forward`, () => appendBatch(
        decodeFrontier(unb64(block.prevFrontier)), entries.map((e) => hashLeaf(e)), store.tileReader(block.oldSize)));
      tiles = r.tiles;
      keys = await checked(`block ${n} entries`, () => entries.map((bytes) => {
        const e = decodeEntry(bytes);
        return { eventKey: LedgerBucketKeys.event(e.mailId, e.eventId, e.state, e.attempt), eventId: e.eventId };
      }));
    }
    const tileWrites = tiles.map(async (t) => {
      const key = LedgerBucketKeys.tile(tilePath(t.id));
      if (await store.putImmutable(key, t.data) === "conflict") throw corrupt(`${key} differs from the tile block ${n} computes`);
    });
    let twice = 0;
    const eventWrites = keys.map(async (k, i) => {
      const ref1 = LedgerCodecs.eventRef.encode({
        kind: "ledger.event-ref", v: 1, eventId: k.eventId, index: block.oldSize + i, block: n, treeSize: ref.value.size,
      });
      if (await store.putImmutable(k.eventKey, ref1) === "conflict") twice++;
    });
    await Promise.all([...tileWrites, ...eventWrites]);
    if (twice > 0) deps.log.error({ block: n, events: twice }, "events of this block were already in the log under another index");
    if (await store.putImmutable(LedgerBucketKeys.block(n), ref.bytes) === "conflict") {
      throw corrupt(`block.${n} already holds a different block record`);
    }
    store.rememberTiles(tiles);
  };

  const load = async (): Promise<Tip> => {
    const head = await store.readHead();
    if (!head) {
      if (await store.readBlockRef(0)) throw corrupt("the head is missing but blocks exist");
      current = { frontier: EMPTY_FRONTIER, rolled: true };
      return current;
    }
    const stage = await store.readStage(head.value.stage);
    if (!stage) throw corrupt(`the head's staged block ${head.value.stage} is missing`);
    const frontier = await frontierAfter(stage.value, head.value);
    current = { head, frontier, rolled: false, body: stage.value };
    if (!(await store.readBlockRef(head.value.block))) {
      deps.log.info({ block: head.value.block }, "rolling the head block forward");
      await rollForward(stage.value, head);
    }
    current.rolled = true;
    return current;
  };

  return {
    load,
    tip: () => current,
    async commit(batch) {
      const started = clock.now();
      let conflicts = 0;
      for (;;) {
        let tip = current;
        if (!tip) tip = current = { ...(await load()), rolled: true };
        if (!tip.rolled && tip.head && tip.body) {
          await rollForward(tip.body, tip.head);
          tip.rolled = true;
        }
        const seen = await Promise.all(batch.map((e) => store.readEventRef(e.eventKey)));
        const fresh: PendingEntry[] = [];
        const inBatch = new Set<string>();
        batch.forEach((e, i) => {
          if (seen[i] || inBatch.has(e.eventKey)) return;
          inBatch.add(e.eventKey);
          fresh.push(e);
        });
        if (fresh.length === 0) return { appended: 0, duplicates: batch.length, conflicts, commitMs: clock.now() - started };

        const n = tip.head ? tip.head.value.block + 1 : 0;
        const oldSize = tip.frontier.size;
        const r = await checked(`block ${n}`, () => appendBatch(tip.frontier, fresh.map((e) => hashLeaf(e.bytes)), store.tileReader(oldSize)));
        const checkpoint = signCheckpoint({ origin, size: r.frontier.size, rootHash: r.root }, signer);
        const body: LedgerBlock = {
          kind: "ledger.block", v: 1, block: n, prevStage: tip.head?.value.stage ?? "", oldSize,
          prevFrontier: b64(encodeFrontier(tip.frontier)), entries: fresh.map((e) => b64(e.bytes)), checkpoint,
        };
        const bodyBytes = LedgerCodecs.block.encode(body);
        const hex = sha256Hex(bodyBytes);
        if (await store.putImmutable(LedgerBucketKeys.stage(hex), bodyBytes) === "conflict") throw corrupt(`stage ${hex} holds other bytes`);
        const ref: LedgerBlockRef = { kind: "ledger.block-ref", v: 1, block: n, oldSize, size: r.frontier.size, stage: hex, checkpoint };
        const refBytes = LedgerCodecs.blockRef.encode(ref);
        const base = tip.head?.revision ?? 0;
        let cas;
        try {
          cas = await store.casHead(refBytes, base);
        } catch (err) {
          // The swap may have landed with its reply lost. Only when the head
          // has moved past `base` can a delayed swap no longer land, so only
          // then is the outcome decided; otherwise retry the same block later.
          const now = await store.readHead();
          if (now?.value.stage === hex) cas = { ok: true as const, revision: now.revision };
          else if ((now?.revision ?? 0) === base) throw err;
          else cas = { ok: false as const };
        }
        if (cas.ok) {
          const head = { value: ref, bytes: refBytes, revision: cas.revision };
          current = { head, frontier: r.frontier, rolled: false, body };
          const commitMs = clock.now() - started;
          await rollForward(body, head, { tiles: r.tiles, keys: fresh });
          current.rolled = true;
          return { block: ref, appended: fresh.length, duplicates: batch.length - fresh.length, conflicts, commitMs };
        }
        conflicts++;
        current = undefined;
        const now = await store.readHead();
        if (now?.value.stage !== hex) await store.purge(LedgerBucketKeys.stage(hex)).catch(() => undefined);
        deps.log.debug({ block: n, conflicts }, "another writer committed this block first; retrying on its head");
      }
    },
  };
}
