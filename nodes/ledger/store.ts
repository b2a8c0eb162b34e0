import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { FenError, LedgerBucketKeys, LedgerCodecs, toFenError } from "../../protocol/index.js";
import type { Codec, LedgerBlock, LedgerBlockRef, LedgerEventRef, LedgerMeta } from "../../protocol/index.js";
import { TILE_HEIGHT, TILE_WIDTH, tilePath } from "../../ledger/index.js";
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
export type CasResult = { readonly ok: true; readonly revision: number } | { readonly ok: false };

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
  readBlockRef(n: number): Promise<Stored<LedgerBlockRef> | undefined>;
  /** A staged block body; `LEDGER_CORRUPT` if its bytes do not hash to `sha256Hex`. */
  readStage(sha256Hex: string): Promise<Stored<LedgerBlock> | undefined>;
  readEventRef(key: string): Promise<LedgerEventRef | undefined>;
  /** Every event index record of one mail. */
  eventRefsOfMail(mailId: string): Promise<LedgerEventRef[]>;
  /** Every key matching a KV filter. */
  keys(filter: string): Promise<string[]>;
  putImmutable(key: string, bytes: Uint8Array): Promise<PutResult>;
  /** Removes a key this node created and nobody references (a lost race's stage). */
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

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Width of tile (level, index) in a tree of `size` leaves (0 if the tile is not in it). */
export function tileWidthAt(level: number, index: number, size: number): number {
  const count = Math.floor(size / 2 ** (level * TILE_HEIGHT));
  return Math.max(0, Math.min(TILE_WIDTH, count - index * TILE_WIDTH));
}

/** Creates the store over an opened `ledger` bucket. */
export function createLedgerStore(kv: KV): LedgerStore {
  // Right edge of the tree per tile level: the tiles the next block extends.
  const recent = new Map<number, { index: number; data: Uint8Array }>();

  const getRaw = async (key: string): Promise<Uint8Array | undefined> => {
    let e;
    try {
      e = await kv.get(key);
    } catch (err) {
      throw unavailable(`get ${key}`, err);
    }
    if (!e || e.operation !== "PUT") return undefined;
    return e.value;
  };

  const store: LedgerStore = {
    kv,
    getRaw,
    async readMeta() {
      const bytes = await getRaw(LedgerBucketKeys.meta);
      return bytes && { value: decodeAs(LedgerCodecs.meta, LedgerBucketKeys.meta, bytes), bytes };
    },
    async readHead() {
      let e;
      try {
        e = await kv.get(LedgerBucketKeys.head);
      } catch (err) {
        throw unavailable("get head", err);
      }
      if (!e || e.operation !== "PUT") return undefined;
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
    async readEventRef(key) {
      const bytes = await getRaw(key);
      return bytes && decodeAs(LedgerCodecs.eventRef, key, bytes);
    },
    async eventRefsOfMail(mailId) {
      const keys = await store.keys(LedgerBucketKeys.eventsOfMail(mailId));
      const refs = await Promise.all(keys.map((k) => store.readEventRef(k)));
      return refs.filter((r): r is LedgerEventRef => r !== undefined).sort((a, b) => a.index - b.index);
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
      try {
        await kv.create(key, bytes);
        return "created";
      } catch (err) {
        if (!isWrongLastSequence(err)) throw unavailable(`create ${key}`, err);
      }
      const have = await getRaw(key);
      if (have && sameBytes(have, bytes)) return "identical";
      return "conflict";
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
