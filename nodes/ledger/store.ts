import { createHash } from "node:crypto";
import { PubHeaders } from "@nats-io/jetstream";
import type { JetStreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import type { KV } from "@nats-io/kv";
import { FenError, LedgerBucketKeys, LedgerBucketStream, LedgerCodecs, toFenError } from "../../protocol/index.js";
import type { Codec, LedgerBlock, LedgerBlockRef, LedgerMailIndex, LedgerMeta } from "../../protocol/index.js";
import { TILE_HEIGHT, TILE_WIDTH, tilePath } from "../../ledger/index.js";
import { retryUnstored } from "../common/js-errors.js";
import type { TileData, TileId, TileReader } from "../../ledger/index.js";

/** A decoded record with the exact bytes it was stored as. */
export interface Stored<T> {
  readonly value: T;
  readonly bytes: Uint8Array;
}

/** The `head` record with the KV revision it was read at (for compare-and-swap). */
export interface StoredHead extends Stored<LedgerBlockRef> {
  readonly revision: number;
}

/** Outcome of {@link LedgerStore.casHead}. */
/** A head swap's outcome; a lost one may carry the head as read after it (`head`), which its caller need not read again. */
export type CasResult = { readonly ok: true; readonly revision: number } | { readonly ok: false; readonly head?: StoredHead | undefined };

/** Outcome of {@link LedgerStore.putImmutable}. */
export type PutResult = "created" | "identical" | "conflict";

/**
 * Typed access to the `ledger` KV bucket. Immutable keys are written
 * create-if-absent ("already there with identical bytes" is success); `head`
 * moves only by compare-and-swap. Storage faults surface as
 * `LEDGER_UNAVAILABLE`, undecodable records as `LEDGER_CORRUPT`.
 */
export interface LedgerStore {
  readonly kv: KV;
  /** Raw value of any key, or undefined when absent (or deleted). */
  getRaw(key: string): Promise<Uint8Array | undefined>;
  readMeta(): Promise<Stored<LedgerMeta> | undefined>;
  readHead(): Promise<StoredHead | undefined>;
  /** Swaps `head` from `revision` (0 = no head yet) to `bytes`; `{ ok: false }` when it moved. */
  casHead(bytes: Uint8Array, revision: number): Promise<CasResult>;
  /**
   * Creates `stage.<stageHex>` (if absent) and swaps `head` from `revision`
   * to `headBytes`, as one atomic batch when the stream allows it, so that
   * both land in one replicated write or neither does. When the batch is
   * refused and `head` is still at `revision`, falls back to
   * {@link putImmutable} of the stage and then {@link casHead}. The stage
   * may exist after `{ ok: false }`, which says only that `head` is no longer
   * at `revision` and does not hold `headBytes`: when a batch's reply is lost
   * the swap may have landed and other writers built on it since, so the
   * caller tells a lost swap from a landed one by the chain (what block
   * `n` holds), and must not drop the stage before it has.
   *
   * @throws FenError `LEDGER_CORRUPT` when the stage key holds other bytes.
   */
  stageAndSwap(stageHex: string, stageBytes: Uint8Array, headBytes: Uint8Array, revision: number): Promise<CasResult>;
  readBlockRef(n: number): Promise<Stored<LedgerBlockRef> | undefined>;
  /** A staged block body; `LEDGER_CORRUPT` if its bytes do not hash to `sha256Hex`. */
  readStage(sha256Hex: string): Promise<Stored<LedgerBlock> | undefined>;
  /**
   * Every `m.<mailId>.<block>` index record of the given mails, by mail id,
   * ascending by block: one Direct Get of many keys' last values. Direct
   * Gets may be answered by a follower a few milliseconds behind; callers
   * that need the very latest records keep them in memory.
   */
  readMailIndexes(mailIds: readonly string[]): Promise<Map<string, LedgerMailIndex[]>>;
  /** Every key matching a KV filter. */
  keys(filter: string): Promise<string[]>;
  putImmutable(key: string, bytes: Uint8Array): Promise<PutResult>;
  /**
   * {@link putImmutable} of many keys, the last one only once all others are
   * there. Tried first as one atomic batch publish (all keys appear at once,
   * in one replicated write); when that is refused (a key exists already, the
   * stream does not allow atomic batches) or its outcome is unknown, done key
   * by key, which accepts identical bytes already there. Results are in the
   * order of `writes`.
   */
  putImmutableAll(writes: readonly { readonly key: string; readonly bytes: Uint8Array }[]): Promise<PutResult[]>;
  /**
   * Removes a key this node created and nobody references: a stage only
   * once the chain holds another stage as its block (see {@link stageAndSwap}).
   */
  purge(key: string): Promise<void>;
  /**
   * Reads hash tiles as of tree size `atSize` (a committed block's size):
   * each tile is read at its width in that tree, which is a version that
   * exists once the block is rolled forward and is at least as wide as any
   * smaller tree needs. Recently written tiles are served from memory.
   */
  tileReader(atSize: number): TileReader;
  /** Remembers tiles just written, so the next block does not read them back. */
  rememberTiles(tiles: readonly TileData[]): void;
}

/** Hex SHA-256 of stored bytes: the content address of a staged block. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function isWrongLastSequence(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === 10071 || code === 10164 || /wrong last sequence/i.test(String((err as Error)?.message));
}

function unavailable(what: string, err: unknown): FenError {
  if (err instanceof FenError) return err;
  return new FenError("LEDGER_UNAVAILABLE", `ledger bucket: ${what} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

function decodeAs<T>(c: Codec<T>, key: string, bytes: Uint8Array): T {
  try {
    return c.decode(bytes);
  } catch (err) {
    throw new FenError("LEDGER_CORRUPT", `ledger key ${key} does not hold a valid ${c.kind}: ${toFenError(err).message}`, { cause: err });
  }
}

/** Whether two byte arrays (views, perhaps into larger buffers) hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Width of tile (level, index) in a tree of `size` leaves (0 if the tile is not in it). */
export function tileWidthAt(level: number, index: number, size: number): number {
  const count = Math.floor(size / 2 ** (level * TILE_HEIGHT));
  return Math.max(0, Math.min(TILE_WIDTH, count - index * TILE_WIDTH));
}

/** Messages in one atomic batch publish (the server's limit is 1000). */
const MAX_ATOMIC_BATCH = 1000;

/** JetStream error code: the stream does not have `allow_atomic` set. */
const ATOMIC_PUBLISH_DISABLED = 10174;

/** Mails per batched Direct Get (the server caps the subjects one request may match). */
const MULTI_LAST_MAILS = 64;

/** Creates the store over an opened `ledger` bucket. */
export function createLedgerStore(kv: KV, jsm: JetStreamManager): LedgerStore {
  const js = jsm.jetstream();
  // Cleared once the server says the stream takes no atomic batches.
  let atomic = true;
  // Right edge of the tree per tile level: the tiles the next block extends.
  const recent = new Map<number, { index: number; data: Uint8Array }>();

  // Reads go to the stream leader (STREAM.MSG.GET), not Direct Get: a
  // follower may not have applied a write that was just acknowledged, and a
  // stale "absent" would look like a missing block or a conflicting write.
  const getLast = async (key: string): Promise<{ value: Uint8Array; revision: number } | undefined> => {
    let m;
    try {
      m = await jsm.streams.getMessage(LedgerBucketStream.name, { last_by_subj: LedgerBucketStream.subject(key) });
    } catch (err) {
      throw unavailable(`get ${key}`, err);
    }
    const op = m?.header?.get("KV-Operation");
    if (!m || op === "DEL" || op === "PURGE") return undefined;
    return { value: m.data, revision: m.seq };
  };
  const getRaw = async (key: string): Promise<Uint8Array | undefined> => (await getLast(key))?.value;

  const store: LedgerStore = {
    kv,
    getRaw,
    async readMeta() {
      const bytes = await getRaw(LedgerBucketKeys.meta);
      return bytes && { value: decodeAs(LedgerCodecs.meta, LedgerBucketKeys.meta, bytes), bytes };
    },
    async readHead() {
      const e = await getLast(LedgerBucketKeys.head);
      if (!e) return undefined;
      return { value: decodeAs(LedgerCodecs.blockRef, LedgerBucketKeys.head, e.value), bytes: e.value, revision: e.revision };
    },
    async casHead(bytes, revision) {
      try {
        const rev = revision === 0 ? await kv.create(LedgerBucketKeys.head, bytes) : await kv.update(LedgerBucketKeys.head, bytes, revision);
        return { ok: true, revision: rev };
      } catch (err) {
        if (isWrongLastSequence(err)) return { ok: false };
        throw unavailable("compare-and-swap of head", err);
      }
    },
    async stageAndSwap(hex, stageBytes, headBytes, revision) {
      const stageKey = LedgerBucketKeys.stage(hex);
      if (atomic) {
        try {
          const first = headers();
          first.set(PubHeaders.ExpectedLastSubjectSequenceHdr, "0");
          const batch = await js.startBatch(LedgerBucketStream.subject(stageKey), stageBytes, { headers: first });
          const last = headers();
          last.set(PubHeaders.ExpectedLastSubjectSequenceHdr, `${revision}`);
          const ack = await batch.commit(LedgerBucketStream.subject(LedgerBucketKeys.head), headBytes, { headers: last });
          return { ok: true, revision: ack.seq };
        } catch (err) {
          if ((err as { code?: unknown })?.code === ATOMIC_PUBLISH_DISABLED) atomic = false;
        }
        // The client does not say why a batch failed: decide from the head.
        const now = await store.readHead();
        if (now && sameBytes(now.bytes, headBytes) && now.value.stage === hex) return { ok: true, revision: now.revision };
        if ((now?.revision ?? 0) !== revision) return { ok: false, head: now };
        // Refused with the head unchanged (e.g. the stage exists from an
        // earlier try, or the outcome is unknown): one key at a time.
      }
      if (await store.putImmutable(stageKey, stageBytes) === "conflict") {
        throw new FenError("LEDGER_CORRUPT", `${stageKey} holds other bytes`);
      }
      return store.casHead(headBytes, revision);
    },
    async readBlockRef(n) {
      const key = LedgerBucketKeys.block(n);
      const bytes = await getRaw(key);
      return bytes && { value: decodeAs(LedgerCodecs.blockRef, key, bytes), bytes };
    },
    async readStage(hex) {
      const key = LedgerBucketKeys.stage(hex);
      const bytes = await getRaw(key);
      if (!bytes) return undefined;
      if (sha256Hex(bytes) !== hex) throw new FenError("LEDGER_CORRUPT", `${key} does not hash to its key`);
      return { value: decodeAs(LedgerCodecs.block, key, bytes), bytes };
    },
    async readMailIndexes(mailIds) {
      const out = new Map<string, LedgerMailIndex[]>();
      const unique = [...new Set(mailIds)];
      const chunks: string[][] = [];
      for (let i = 0; i < unique.length; i += MULTI_LAST_MAILS) chunks.push(unique.slice(i, i + MULTI_LAST_MAILS));
      await Promise.all(chunks.map(async (chunk) => {
        const multi_last = chunk.map((id) => LedgerBucketStream.subject(LedgerBucketKeys.mailIndexes(id)));
        try {
          for await (const m of await jsm.direct.getLastMessagesFor(LedgerBucketStream.name, { multi_last })) {
            const op = m.header?.get("KV-Operation");
            if (op === "DEL" || op === "PURGE" || m.data.length === 0) continue;
            const rec = decodeAs(LedgerCodecs.mailIndex, m.subject, m.data);
            const list = out.get(rec.mailId) ?? [];
            list.push(rec);
            out.set(rec.mailId, list);
          }
        } catch (err) {
          if (err instanceof FenError) throw err;
          if (!/no results|no message found|404/i.test(String((err as Error)?.message))) throw unavailable("batched get of mail indexes", err);
        }
      }));
      for (const list of out.values()) list.sort((a, b) => a.block - b.block);
      return out;
    },
    async keys(filter) {
      try {
        const out: string[] = [];
        for await (const k of await kv.keys(filter)) out.push(k);
        return out;
      } catch (err) {
        throw unavailable(`keys ${filter}`, err);
      }
    },
    async putImmutable(key, bytes) {
      // "Wrong last sequence" with nothing to read means another writer's
      // create of the same key is still in flight (the leader counts it
      // before applying it): read again shortly, then try again.
      for (let attempt = 0; ; attempt++) {
        try {
          // A create nobody took (the bucket's stream between leaders: "no responders") stored nothing: made again.
          await retryUnstored(() => kv.create(key, bytes));
          return "created";
        } catch (err) {
          if (!isWrongLastSequence(err)) throw unavailable(`create ${key}`, err);
        }
        const have = await getRaw(key);
        if (have) return sameBytes(have, bytes) ? "identical" : "conflict";
        if (attempt >= 50) throw new FenError("LEDGER_UNAVAILABLE", `create ${key}: the key is neither writable nor readable`);
        await new Promise((r) => setTimeout(r, Math.min(100, 2 ** attempt)));
      }
    },
    async putImmutableAll(writes) {
      if (writes.length === 0) return [];
      if (atomic && writes.length <= MAX_ATOMIC_BATCH) {
        // Create-if-absent for every key; one failed expectation fails the
        // whole batch, and nothing of it is stored.
        const createOnly = () => {
          const h = headers();
          h.set(PubHeaders.ExpectedLastSubjectSequenceHdr, "0");
          return h;
        };
        try {
          const [first, ...rest] = writes as [{ key: string; bytes: Uint8Array }, ...{ key: string; bytes: Uint8Array }[]];
          const last = rest.pop();
          if (!last) {
            return [await store.putImmutable(first.key, first.bytes)];
          }
          const batch = await js.startBatch(LedgerBucketStream.subject(first.key), first.bytes, { headers: createOnly() });
          for (const w of rest) batch.add(LedgerBucketStream.subject(w.key), w.bytes, { headers: createOnly() });
          await batch.commit(LedgerBucketStream.subject(last.key), last.bytes, { headers: createOnly() });
          return writes.map(() => "created" as const);
        } catch (err) {
          if ((err as { code?: unknown })?.code === ATOMIC_PUBLISH_DISABLED) atomic = false;
          // Refused or unknown: key by key below decides each key.
        }
      }
      const head = writes.slice(0, -1);
      const tail = writes.at(-1) as { key: string; bytes: Uint8Array };
      const results = await Promise.all(head.map((w) => store.putImmutable(w.key, w.bytes)));
      results.push(await store.putImmutable(tail.key, tail.bytes));
      return results;
    },
    async purge(key) {
      try {
        await kv.purge(key);
      } catch (err) {
        throw unavailable(`purge ${key}`, err);
      }
    },
    tileReader(atSize) {
      return {
        async readTiles(ids: readonly TileId[]) {
          return Promise.all(ids.map(async (id) => {
            const mem = recent.get(id.level);
            if (mem && mem.index === id.index && mem.data.length >= id.width * 32) return mem.data;
            const width = Math.max(id.width, tileWidthAt(id.level, id.index, atSize));
            const key = LedgerBucketKeys.tile(tilePath({ level: id.level, index: id.index, width }));
            const data = await getRaw(key);
            if (!data) throw new FenError("LEDGER_CORRUPT", `tile ${key} is missing`);
            return data;
          }));
        },
      };
    },
    rememberTiles(tiles) {
      for (const t of tiles) {
        const mem = recent.get(t.id.level);
        if (!mem || mem.index < t.id.index || (mem.index === t.id.index && mem.data.length <= t.data.length)) {
          recent.set(t.id.level, { index: t.id.index, data: t.data });
        }
      }
    },
  };
  return store;
}
