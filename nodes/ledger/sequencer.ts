import { FenError, LedgerBucketKeys, LedgerCodecs } from "../../protocol/index.js";
import type { LedgerBlock, LedgerBlockRef, MailId } from "../../protocol/index.js";
import {
  EMPTY_FRONTIER, appendBatch, appendLeaves, createTileHashReader, decodeEntry, decodeFrontier, encodeFrontier, frontierRoot,
  hashLeaf, ledgerErrorCode, openCheckpoint, proveConsistency, signCheckpoint, tilePath, verifyConsistency,
} from "../../ledger/index.js";
import type { AppendResult, Frontier, NoteSigner, NoteVerifier, TileData, TileReader } from "../../ledger/index.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import { isFenError, selfOrCause } from "../common/js-errors.js";
import { sameBytes, sha256Hex } from "./store.js";
import type { CasResult, LedgerStore, Stored, StoredHead } from "./store.js";

/** One event ready to append: its mail, id and encoded entry. */
export interface PendingEntry {
  readonly mailId: string;
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
  /** Milliseconds then spent waiting for an older block's roll-forward (back-pressure). */
  readonly waitMs: number;
}

/** The log's tip as this node last saw it. */
export interface Tip {
  /** The head record; absent for an empty log. */
  readonly head?: StoredHead;
  /** Tree frontier at the head's size. */
  readonly frontier: Frontier;
}

/**
 * Blocks whose roll-forward may be under way at once. A writer commits block
 * `n` only once block `n - ROLL_DEPTH`'s roll-forward is complete, so after
 * a crash at most the last `ROLL_DEPTH` blocks are unfinished.
 */
export const ROLL_DEPTH = 2;

/** Blocks whose event ids a writer keeps in memory for deduplication. */
const RECENT_BLOCKS = 64;

/** Blocks whose checked content a writer keeps to confirm index records against (see `indexed`). */
const CHECKED_BLOCKS = 16;

/**
 * Appends batches of entries as signed blocks, so that any number of
 * writers share one linear log:
 *
 * 1. stage the block's full content under `stage.<sha256 of its bytes>`
 *    (create-if-absent);
 * 2. compare-and-swap `head` from the revision it was built on to the new
 *    block record: this is the commit point, and a writer that loses it
 *    reloads the head and retries without the events the winner appended.
 *    Whether a swap whose reply was lost landed is read from the chain:
 *    the block is in the log if block `n` holds its stage, even when other
 *    writers have committed blocks on it since. Only a stage whose block
 *    number the chain gives to another stage is dropped: any other may be
 *    referenced (an unreferenced stage is harmless; the audit warns);
 * 3. roll the block forward: hash tiles and one `m.<mailId>.<n>` index
 *    record per mail in the block, then, once the previous block's record
 *    exists, `block.<n>`. So `block.<n>` present means blocks `0..n` are
 *    complete. Every write is deterministic from the staged content, so any
 *    node can finish a half-written block; "already there, identical" is
 *    success.
 *
 * Roll-forwards run in the background, at most {@link ROLL_DEPTH} at once,
 * while later blocks are committed. A writer deduplicates a batch against
 * the `m.*` index and the events of its own unfinished blocks; a writer that
 * (re)loads the head first finishes every unfinished block (at most
 * `ROLL_DEPTH`) and keeps the events of those and of the head's block in
 * memory (their index records may not have reached the replica answering
 * the index lookup yet), so a redelivered event is found and not appended
 * twice.
 *
 * A writer never signs a fork of a checkpoint it has seen committed, even
 * when someone with write access to the bucket (but not the key) moves
 * `head`: it keeps in memory its *anchor*, the newest checkpoint it saw
 * in the log (the head it loaded, or the last block it committed), and
 * - {@link Sequencer.load} refuses (`LEDGER_CORRUPT`) a head that does not
 *   extend the anchor: a smaller one, or one without a valid RFC 9162
 *   consistency proof from the anchor (read from the tiles, verified
 *   against the two roots), and a head behind an existing `block.<n+1>`
 *   record (a rolled-back head: `block.<n>` is written only after the head
 *   reached block `n`);
 * - a block is signed only on the anchor, or on this writer's own block
 *   being swapped in on it.
 * A restarted writer has no anchor until its first load, which takes the
 * head as it finds it: it relies on the `block.<n+1>` check alone, so a
 * head rolled back together with every later block record (and the rest
 * of those blocks) is built on, and the fork it signs is caught only by
 * clients that kept a checkpoint (`fastemailnet ledger consistency`).
 * Blocks that lose a head swap are signed too; they are not in the log
 * (the atomic path never stores them, the key-by-key fallback drops their
 * stage once the chain holds another; see the audit for leftovers).
 */
export interface Sequencer {
  /** Reads the head, finishes unfinished blocks, and returns the tip. */
  load(): Promise<Tip>;
  /** The tip after the last load or commit, if known. */
  tip(): Tip | undefined;
  /**
   * Appends the entries not yet in the log as one block. `onCommitted` runs
   * once the head swap made the block durable (a caller may acknowledge the
   * events from there on); its roll-forward continues in the background.
   * A call made while another is in progress builds its block on the block
   * that one is swapping in (used only if that block becomes the head) and
   * swaps after it: blocks are committed in call order.
   *
   * @throws FenError `LEDGER_UNAVAILABLE` (retry the same batch), `LEDGER_CORRUPT` (stop).
   */
  commit(batch: readonly PendingEntry[], onCommitted?: () => void): Promise<CommitOutcome>;
  /** Resolves when every background roll-forward has finished; rejects with the first failure. */
  settle(): Promise<void>;
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
    // Ours, or a storage fault inside a library call (our tile reader), stays what it was.
    const fen = selfOrCause(err, isFenError);
    if (fen) throw fen;
    const code = ledgerErrorCode(err);
    throw corrupt(`${what}: ${code ?? "error"}: ${(err as Error).message}`, err);
  }
}

interface Rolling {
  readonly block: number;
  readonly eventIds: ReadonlySet<string>;
  /** Settles when the roll-forward finished; never rejects (see `error`). */
  readonly done: Promise<void>;
  error?: unknown;
}

/**
 * Where a block whose head swap did not answer `ok` is: the head (at `revision`), buried under blocks built on
 * it, or lost to `winner`, the stage the chain holds as that block (none: the head has not reached it).
 */
type Fate = { readonly at: "head"; readonly revision: number } | { readonly at: "buried" } | { readonly at: "lost"; readonly winner?: string };

/** A block being swapped in, which the next commit may build on ahead of time. */
interface Ahead {
  readonly n: number;
  readonly stage: string;
  readonly frontier: Frontier;
  readonly eventIds: ReadonlySet<string>;
  readonly tiles: readonly TileData[];
}

/** Where a block goes: its number, its predecessor's stage and the tree before it. */
interface BuildBase {
  readonly n: number;
  readonly prevStage: string;
  readonly frontier: Frontier;
}

/** A signed tree this writer saw in the log, which every block it signs must extend (see {@link Sequencer}). */
interface Anchor {
  /** Stage of the block whose checkpoint this is ("" for the empty log). */
  readonly stage: string;
  readonly size: number;
  readonly root: Uint8Array;
}


/** A block built and encoded, not yet committed. */
interface Built extends Stored<LedgerBlockRef> {
  readonly fresh: readonly PendingEntry[];
  readonly r: AppendResult;
  readonly body: LedgerBlock;
  readonly bodyBytes: Uint8Array;
  readonly hex: string;
}

/** Record of a block as `head` held it, rebuilt from its staged content (the audit rebuilds unfinished ones so too). */
export function refOf(body: LedgerBlock, stage: string): Stored<LedgerBlockRef> {
  const value: LedgerBlockRef = {
    kind: "ledger.block-ref", v: 1, block: body.block, oldSize: body.oldSize, size: body.oldSize + body.entries.length, stage,
    checkpoint: body.checkpoint,
  };
  return { value, bytes: LedgerCodecs.blockRef.encode(value) };
}

/** Creates a sequencer over the store; see {@link Sequencer}. */
export function createSequencer(deps: SequencerDeps): Sequencer {
  const { store, signer, verifier, origin, clock } = deps;
  let current: Tip | undefined;
  /** The newest tree this node saw in the log; set by the first load (see {@link Sequencer}). */
  let anchor: Anchor | undefined;
  /** This node's unfinished roll-forwards, oldest first. */
  let rolling: Rolling[] = [];
  /**
   * Event ids of the last blocks this node committed or finished, newest
   * last: the index records of these may not have reached every replica
   * that answers the batched Direct Get yet.
   */
  const recent: (readonly string[])[] = [];
  /** The ids of `recent`, each with the number of those blocks holding it: one lookup per event, not a copy per block. */
  const recentIds = new Map<string, number>();
  /** Settles when the last commit called has finished. */
  let serial: Promise<void> = Promise.resolve();
  /** The block the last commit called is swapping in, once built (undefined: none). */
  let ahead: Promise<Ahead | undefined> = Promise.resolve(undefined);
  const remember = (ids: Iterable<string>) => {
    const list = [...ids];
    recent.push(list);
    for (const id of list) recentIds.set(id, (recentIds.get(id) ?? 0) + 1);
    if (recent.length > RECENT_BLOCKS) {
      for (const id of recent.shift()!) {
        const c = recentIds.get(id)!;
        if (c > 1) recentIds.set(id, c - 1);
        else recentIds.delete(id);
      }
    }
  };

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

  /**
   * Writes block `n`'s tiles and index records, then (after `before`, the
   * previous block's roll-forward) its `block.<n>` record.
   */
  const rollForward = async (
    block: LedgerBlock, refBytes: Uint8Array, before: Promise<unknown>,
    known?: { tiles: readonly TileData[]; events: readonly { mailId: string; eventId: string }[] },
  ) => {
    const n = block.block;
    const treeSize = block.oldSize + block.entries.length;
    let tiles = known?.tiles;
    let events = known?.events;
    if (!tiles || !events) {
      const entries = block.entries.map(unb64);
      const r = await checked(`block ${n} roll-forward`, () => appendBatch(
        decodeFrontier(unb64(block.prevFrontier)), entries.map((e) => hashLeaf(e)), store.tileReader(block.oldSize)));
      tiles = r.tiles;
      events = await checked(`block ${n} entries`, () => entries.map((bytes) => decodeEntry(bytes)));
    }
    const byMail = new Map<string, { eventId: string; index: number }[]>();
    events.forEach((e, i) => {
      const list = byMail.get(e.mailId) ?? [];
      list.push({ eventId: e.eventId, index: block.oldSize + i });
      byMail.set(e.mailId, list);
    });
    // One atomic batch once the previous block is complete: tiles, index
    // records and, last, `block.<n>` (see LedgerStore.putImmutableAll).
    const writes: { key: string; bytes: Uint8Array; what: string }[] = [];
    for (const t of tiles) {
      const key = LedgerBucketKeys.tile(tilePath(t.id));
      writes.push({ key, bytes: t.data, what: `${key} differs from the tile block ${n} computes` });
    }
    for (const [mailId, list] of byMail) {
      const key = LedgerBucketKeys.mailIndex(mailId, n);
      const rec = LedgerCodecs.mailIndex.encode({ kind: "ledger.mail-index", v: 1, mailId: mailId as MailId, block: n, treeSize, events: list });
      writes.push({ key, bytes: rec, what: `${key} differs from what block ${n} holds` });
    }
    writes.push({ key: LedgerBucketKeys.block(n), bytes: refBytes, what: `block.${n} already holds a different block record` });
    await before;
    const results = await store.putImmutableAll(writes);
    const bad = results.findIndex((r) => r === "conflict");
    if (bad >= 0) throw corrupt((writes[bad] as { what: string }).what);
  };

  /**
   * The stage of block `n` in the chain that ends at `head` (`head.block >= n`):
   * its record, or while that is not written yet, the stage chain down from the head.
   */
  const stageOfBlock = async (head: StoredHead, n: number): Promise<string> => {
    if (head.value.block === n) return head.value.stage;
    const ref = await store.readBlockRef(n);
    if (ref) return ref.value.stage;
    let stage = head.value.stage;
    for (let k = head.value.block; k > n; k--) {
      const body = await store.readStage(stage);
      if (!body || body.value.block !== k) throw corrupt(`block ${k}'s staged content ${stage} is missing or is not block ${k}`);
      stage = body.value.prevStage;
    }
    return stage;
  };

  /**
   * Where block `n`, staged as `hex`, ended up once the head left the
   * revision it was built on: the head; `buried` under blocks committed on
   * it since (its swap landed, the reply was lost); or `lost`, with the
   * stage the chain holds as block `n` when there is one. `head`: the head
   * as read after the swap failed (read here when not given).
   */
  const fateOf = async (n: number, hex: string, head?: StoredHead): Promise<Fate> => {
    head ??= await store.readHead();
    if (!head || head.value.block < n) return { at: "lost" };
    const stage = await stageOfBlock(head, n);
    if (stage !== hex) return { at: "lost", winner: stage };
    return head.value.block === n ? { at: "head", revision: head.revision } : { at: "buried" };
  };

  /**
   * Moves the anchor to a head just loaded (its unfinished blocks finished, so its tiles exist), once that
   * head is shown to extend the anchor: the same block, or a bigger tree with a consistency proof from the
   * anchor's. The proof's hashes come from the bucket, but it is checked against the anchor's root (held in
   * memory) and the head's (its signed checkpoint): tampered tiles fail it, they cannot pass a fork.
   */
  const advanceAnchor = async (stage: string, frontier: Frontier) => {
    const root = frontierRoot(frontier);
    if (anchor && anchor.stage !== stage) {
      const from = anchor;
      const fork = (why: string) => corrupt(
        `the head (${frontier.size} entries) does not extend the checkpoint this node last saw in the log (${from.size} entries): ${why}; `
        + "the head was rolled back or forked, and a block on it would sign a fork");
      if (frontier.size < from.size) throw fork("it is smaller");
      try {
        const proof = await proveConsistency(createTileHashReader(store.tileReader(frontier.size), frontier.size), from.size, frontier.size);
        verifyConsistency(from.size, frontier.size, proof, from.root, root);
      } catch (err) {
        // A storage fault stays what it was (a retry may pass); anything else is no proof.
        const fen = selfOrCause(err, isFenError);
        if (fen?.code === "LEDGER_UNAVAILABLE") throw fen;
        throw fork(`no consistency proof (${ledgerErrorCode(err) ?? fen?.code ?? "error"}: ${(err as Error).message})`);
      }
    }
    anchor = { stage, size: frontier.size, root };
  };

  const load = async (): Promise<Tip> => {
    current = undefined;
    const head = await store.readHead();
    if (!head) {
      if (await store.readBlockRef(0)) throw corrupt("the head is missing but blocks exist");
      await advanceAnchor("", EMPTY_FRONTIER);
      current = { frontier: EMPTY_FRONTIER };
      return current;
    }
    // `block.<n>` is written only once the head has reached block n, and the head only moves forward: a
    // record past the head means the head was moved back (unless the head moved on since it was read).
    if (await store.readBlockRef(head.value.block + 1)) {
      const again = await store.readHead();
      if (again?.revision === head.revision) {
        throw corrupt(`the head names block ${head.value.block} but ${LedgerBucketKeys.block(head.value.block + 1)} exists: the head was rolled back, and a block on it would sign a fork`);
      }
    }
    const stage = await store.readStage(head.value.stage);
    if (!stage) throw corrupt(`the head's staged block ${head.value.stage} is missing`);
    const frontier = await frontierAfter(stage.value, head.value);
    // Unfinished blocks: the head and up to ROLL_DEPTH - 1 before it whose
    // record is missing, found through the stage chain; finished oldest first.
    const unfinished: { body: LedgerBlock; ref: Stored<LedgerBlockRef> }[] = [];
    let body: LedgerBlock | undefined = stage.value;
    let ref: Stored<LedgerBlockRef> = head;
    for (let k = 0; k < ROLL_DEPTH && body; k++) {
      if (await store.readBlockRef(body.block)) break;
      unfinished.unshift({ body, ref });
      if (body.prevStage === "") break;
      const prev = await store.readStage(body.prevStage);
      if (!prev) throw corrupt(`block ${body.block - 1}'s staged content ${body.prevStage} is missing`);
      await frontierAfter(prev.value, refOf(prev.value, body.prevStage).value);
      ref = refOf(prev.value, body.prevStage);
      body = prev.value;
    }
    for (const u of unfinished) {
      deps.log.info({ block: u.body.block }, "finishing the roll-forward of a committed block");
      await rollForward(u.body, u.ref.bytes, Promise.resolve());
    }
    await advanceAnchor(head.value.stage, frontier);
    // The index records just written (and the head's, however recent) may
    // not be on the follower that answers the next Direct Get: their events
    // are kept in memory, oldest block first, the head's last (the walk above starts at the head: when any
    // block is unfinished, the head is).
    const known = unfinished.length > 0 ? unfinished.map((u) => u.body) : [stage.value];
    for (const b of known) remember(await checked(`block ${b.block} entries`, () => b.entries.map((e) => decodeEntry(unb64(e)).eventId)));
    current = { head, frontier };
    return current;
  };

  /** Waits until fewer than ROLL_DEPTH roll-forwards are open; a failed one is redone first. */
  const makeRoom = async () => {
    while (rolling.length >= ROLL_DEPTH || rolling.some((r) => r.error !== undefined)) {
      const oldest = rolling[0] as Rolling;
      await oldest.done;
      if (oldest.error !== undefined) {
        // Redo it (and whatever followed) from storage: reload finishes them.
        rolling = [];
        await load();
        return;
      }
      rolling.shift();
    }
  };

  /** Event ids by leaf index of recently checked blocks (see {@link indexed}); a block's content never changes. */
  const checkedBlocks = new Map<number, Promise<ReadonlyMap<string, number> | undefined>>();
  /**
   * The events of block `n` by leaf index, from the staged content its
   * record names, checked against the block's signed checkpoint; undefined
   * without a record.
   */
  const eventsOfBlock = (n: number): Promise<ReadonlyMap<string, number> | undefined> => {
    let p = checkedBlocks.get(n);
    if (!p) {
      p = (async () => {
        const ref = await store.readBlockRef(n);
        if (!ref || ref.value.block !== n) return undefined;
        const body = await store.readStage(ref.value.stage);
        if (!body) return undefined;
        await frontierAfter(body.value, ref.value);
        const ids = await checked(`block ${n} entries`, () => body.value.entries.map((e) => decodeEntry(unb64(e)).eventId));
        return new Map(ids.map((id, i) => [id, body.value.oldSize + i]));
      })();
      checkedBlocks.set(n, p);
      if (checkedBlocks.size > CHECKED_BLOCKS) checkedBlocks.delete(checkedBlocks.keys().next().value as number);
      // Only a checked block's content is kept: a block without its record yet (still rolling forward) is asked
      // again next time, or a later redelivery of one of its events would be taken for new.
      p.then((events) => { if (!events) checkedBlocks.delete(n); }, () => checkedBlocks.delete(n));
    }
    return p;
  };

  /**
   * Whether an `m.*` index record shows `eventId` in the log up to block
   * `last`. Index records are not signed, and event ids are predictable:
   * someone with write access to the bucket could plant a record naming an
   * event not appended yet, which would then never be. So a claim counts
   * only for a block up to `last` whose signed content holds the event at
   * the claimed leaf index. (Only events found in the index and not in
   * memory cost this check: redeliveries, which are rare.)
   */
  const indexed = async (eventId: string, claims: readonly { block: number; index: number }[] | undefined, last: number): Promise<boolean> => {
    for (const c of claims ?? []) {
      if (c.block > last) continue;
      if ((await eventsOfBlock(c.block))?.get(eventId) === c.index) return true;
    }
    return false;
  };

  /**
   * Builds a block of the batch's entries not yet in the log on `base`;
   * undefined when none is new. `after` (a block being swapped in, not yet
   * the head) adds its events and tiles to what the log is assumed to hold.
   */
  const build = async (base: BuildBase, batch: readonly PendingEntry[], after?: Ahead): Promise<Built | undefined> => {
    const indexes = await store.readMailIndexes(batch.map((e) => e.mailId));
    const seen = new Set<string>();
    for (const r of rolling) for (const id of r.eventIds) seen.add(id);
    if (after) for (const id of after.eventIds) seen.add(id);
    // What the index claims is in the log, for the events not known from memory.
    const claims = new Map<string, { block: number; index: number }[]>();
    for (const list of indexes.values()) {
      for (const rec of list) {
        for (const e of rec.events) {
          if (seen.has(e.eventId) || recentIds.has(e.eventId)) continue;
          claims.set(e.eventId, [...(claims.get(e.eventId) ?? []), { block: rec.block, index: e.index }]);
        }
      }
    }
    const fresh: PendingEntry[] = [];
    for (const e of batch) {
      if (seen.has(e.eventId) || recentIds.has(e.eventId) || await indexed(e.eventId, claims.get(e.eventId), base.n - 1)) continue;
      seen.add(e.eventId);
      fresh.push(e);
    }
    if (fresh.length === 0) return undefined;
    const { n, frontier } = base;
    const oldSize = frontier.size;
    const tiles = store.tileReader(oldSize);
    const reader: TileReader = !after ? tiles : {
      readTiles: (ids) => Promise.all(ids.map(async (id) => {
        const t = after.tiles.find((x) => x.id.level === id.level && x.id.index === id.index && x.data.length >= id.width * 32);
        return t ? t.data : (await tiles.readTiles([id]))[0] as Uint8Array;
      })),
    };
    // Signed only on the anchor, or on this node's own block being swapped in on it (itself built so).
    const onAnchor = anchor !== undefined && base.prevStage === anchor.stage && oldSize === anchor.size && sameBytes(frontierRoot(frontier), anchor.root);
    const onOwn = after !== undefined && base.prevStage === after.stage && oldSize === after.frontier.size;
    if (!onAnchor && !onOwn) {
      throw corrupt(`block ${n} would be built on ${base.prevStage || "the empty log"} (${oldSize} entries), which is not the tree this node last saw in the log (${anchor ? `${anchor.size} entries` : "none loaded"}): refusing to sign it`);
    }
    const r = await checked(`block ${n}`, () => appendBatch(frontier, fresh.map((e) => hashLeaf(e.bytes)), reader));
    const checkpoint = signCheckpoint({ origin, size: r.frontier.size, rootHash: r.root }, signer);
    const body: LedgerBlock = {
      kind: "ledger.block", v: 1, block: n, prevStage: base.prevStage, oldSize,
      prevFrontier: b64(encodeFrontier(frontier)), entries: fresh.map((e) => b64(e.bytes)), checkpoint,
    };
    const bodyBytes = LedgerCodecs.block.encode(body);
    const hex = sha256Hex(bodyBytes);
    return { fresh, r, body, bodyBytes, hex, ...refOf(body, hex) };
  };

  const commitInTurn = async (
    batch: readonly PendingEntry[], onCommitted: (() => void) | undefined, started: number, pre: Built | undefined,
    announce: (a: Ahead) => void,
  ): Promise<CommitOutcome> => {
    let conflicts = 0;
    for (;;) {
      await makeRoom();
      const tip = current ?? (await load());
      const base: BuildBase = { n: tip.head ? tip.head.value.block + 1 : 0, prevStage: tip.head?.value.stage ?? "", frontier: tip.frontier };
      const b = pre && pre.body.block === base.n && pre.body.prevStage === base.prevStage && pre.body.oldSize === base.frontier.size
        ? pre : await build(base, batch);
      pre = undefined;
      if (!b) return { appended: 0, duplicates: batch.length, conflicts, commitMs: clock.now() - started, waitMs: 0 };
      const { fresh, r, body, bodyBytes, hex, value: ref, bytes: refBytes } = b;
      const n = body.block;
      const eventIds = new Set(fresh.map((e) => e.eventId));
      announce({ n, stage: hex, frontier: r.frontier, eventIds, tiles: r.tiles });
      const baseRevision = tip.head?.revision ?? 0;
      let cas: CasResult;
      let headAfter: StoredHead | undefined;
      try {
        cas = await store.stageAndSwap(hex, bodyBytes, refBytes, baseRevision);
      } catch (err) {
        // The swap may have landed with its reply lost. Only when the head
        // has moved past `base` can a delayed swap no longer land, so only
        // then is the outcome decided; otherwise retry the same block later.
        headAfter = await store.readHead();
        if ((headAfter?.revision ?? 0) === baseRevision) throw err;
        cas = { ok: false };
      }
      // `{ ok: false }` only says the head is elsewhere: the swap may have
      // landed unanswered and other writers built on it. The chain decides.
      const fate: Fate = cas.ok ? { at: "head", revision: cas.revision } : await fateOf(n, hex, cas.head ?? headAfter);
      if (fate.at !== "lost") {
        anchor = { stage: hex, size: r.frontier.size, root: r.root };
        if (fate.at === "head") {
          current = { head: { value: ref, bytes: refBytes, revision: fate.revision }, frontier: r.frontier };
          store.rememberTiles(r.tiles);
        } else {
          // In the log under later blocks: the next commit reloads the head (finishing what is unfinished).
          current = undefined;
        }
        const commitMs = clock.now() - started;
        onCommitted?.();
        // `block.<n>` only after block n - 1's record: a failed previous
        // roll-forward fails this one too (both are redone by a reload).
        const prev = rolling.at(-1);
        const before = prev ? prev.done.then(() => { if (prev.error !== undefined) throw prev.error; }) : Promise.resolve();
        const entry: Rolling = {
          block: n,
          eventIds,
          done: rollForward(body, refBytes, before, { tiles: r.tiles, events: fresh }).then(
            () => undefined,
            (err: unknown) => { entry.error = err; deps.log.warn({ err, block: n }, "roll-forward failed; it is redone before the next block"); },
          ),
        };
        rolling.push(entry);
        remember(entry.eventIds);
        const waiting = clock.now();
        await makeRoom();
        return { block: ref, appended: fresh.length, duplicates: batch.length - fresh.length, conflicts, commitMs, waitMs: clock.now() - waiting };
      }
      conflicts++;
      // Our unfinished blocks are in the log; reloading finishes them too.
      await Promise.all(rolling.map((x) => x.done));
      rolling = [];
      current = undefined;
      // Block n is another stage for good (the head only moves forward), so
      // no block can reference ours. Without a winner (the head has not
      // reached block n) nothing is proven and the stage stays.
      if (fate.winner !== undefined) {
        await store.purge(LedgerBucketKeys.stage(hex)).catch(() => undefined);
      }
      deps.log.debug({ block: n, conflicts }, "another writer committed this block first; retrying on its head");
    }
  };

  return {
    load,
    tip: () => current,
    async settle() {
      const open = rolling;
      await Promise.all(open.map((r) => r.done));
      const failed = open.find((r) => r.error !== undefined);
      rolling = rolling.filter((r) => !open.includes(r));
      if (failed) throw failed.error;
    },
    async commit(batch, onCommitted) {
      const started = clock.now();
      // Commits swap one at a time, in call order; a commit called while
      // another is swapping builds its block on that one's (see `ahead`).
      const prior = serial;
      const priorAhead = ahead;
      let release!: () => void;
      serial = new Promise((r) => (release = r));
      let announce!: (a: Ahead | undefined) => void;
      ahead = new Promise((r) => (announce = r));
      try {
        let pre: Built | undefined;
        const spec = await priorAhead;
        if (spec) {
          // Speculative: valid only if the prior block becomes the head, which
          // the swap below checks; any failure here just means no head start.
          pre = await build({ n: spec.n + 1, prevStage: spec.stage, frontier: spec.frontier }, batch, spec).catch(() => undefined);
        }
        await prior;
        return await commitInTurn(batch, onCommitted, started, pre, announce);
      } finally {
        announce(undefined);
        release();
      }
    },
  };
}
