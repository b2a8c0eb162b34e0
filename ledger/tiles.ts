/**
 * C2SP tlog-tiles storage layout for the Merkle tree.
 *
 * A tile at tile level `L` and index `N` holds up to {@link TILE_WIDTH}
 * consecutive hashes of tree level `L·TILE_HEIGHT`, namely the nodes
 * `(8L, 256N) .. (8L, 256N + width - 1)`. Hashes of the 7 tree levels between
 * two tile levels are not stored: they are recomputed from the tile below
 * (at most 127 node hashes per proof element). A tile with fewer than 256
 * hashes is partial; it only ever grows, so a reader may serve a wider
 * version of a tile than the width asked for.
 *
 * @module
 */
import { isSafeSize, shr } from "./bits.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";
import { HASH_SIZE, hashChildren } from "./hash.js";
import { type NodeId, assertNodeInTree } from "./node-id.js";
import type { HashReader } from "./proof.js";

/** Tree levels per tile level (C2SP tlog-tiles). */
export const TILE_HEIGHT = 8;

/** Hashes in a full tile: 2^{@link TILE_HEIGHT}. */
export const TILE_WIDTH = 256;

/** Identifies one version of a tile. */
export interface TileId {
  /** Tile level; holds hashes of tree level `level · TILE_HEIGHT`. */
  readonly level: number;
  /** Tile index within its level. */
  readonly index: number;
  /** Number of hashes, 1..256; below 256 the tile is partial. */
  readonly width: number;
}

/** Contents of one tile version: `width` concatenated 32-byte hashes. */
export interface TileData {
  /** Which tile and width the bytes are. */
  readonly id: TileId;
  /** Exactly `id.width · 32` bytes. */
  readonly data: Uint8Array;
}

/**
 * Reads tiles from storage. For each requested id, returns the tile's hashes:
 * at least `width · 32` bytes (a wider version of the same tile is accepted;
 * only the prefix is used). May throw; errors become `LEDGER_STORAGE_FAILED`.
 */
export interface TileReader {
  /** Returns the data of each tile in `ids`, in the same order. */
  readTiles(ids: readonly TileId[]): Promise<readonly Uint8Array[]>;
}

function encodeTileIndex(n: number): string {
  let rest = Math.floor(n / 1000);
  let path = String(n % 1000).padStart(3, "0");
  while (rest > 0) {
    path = `x${String(rest % 1000).padStart(3, "0")}/${path}`;
    rest = Math.floor(rest / 1000);
  }
  return path;
}

/**
 * C2SP tlog-tiles path of a hash tile, e.g. `tile/0/x001/x234/067` or
 * `tile/1/005.p/17` for a partial tile.
 */
export function tilePath(id: TileId): string {
  assertTileId(id);
  const partial = id.width < TILE_WIDTH ? `.p/${id.width}` : "";
  return `tile/${id.level}/${encodeTileIndex(id.index)}${partial}`;
}

function assertTileId(id: TileId): void {
  if (
    !isSafeSize(id.level) ||
    id.level > 6 ||
    !isSafeSize(id.index) ||
    !Number.isInteger(id.width) ||
    id.width < 1 ||
    id.width > TILE_WIDTH
  ) {
    throw new LedgerError(LedgerErrorCode.RangeInvalid, `malformed tile id ${JSON.stringify(id)}`);
  }
}

/** Number of stored hashes at tile level `level` in a tree of `size` leaves. */
function levelCount(size: number, level: number): number {
  return shr(size, level * TILE_HEIGHT);
}

/** The tile (with its width in a tree of `size` leaves) holding hash `(level·8, index)`. */
function tileOf(tileLevel: number, hashIndex: number, size: number): TileId {
  const index = Math.floor(hashIndex / TILE_WIDTH);
  const width = Math.min(TILE_WIDTH, levelCount(size, tileLevel) - index * TILE_WIDTH);
  return { level: tileLevel, index, width };
}

/**
 * Tiles whose contents differ between tree sizes `oldSize` and `newSize`,
 * with their widths at `newSize`, lowest level first.
 *
 * @throws {@link LedgerError} `LEDGER_RANGE_INVALID` unless `0 <= oldSize <= newSize`.
 */
export function changedTiles(oldSize: number, newSize: number): TileId[] {
  if (!isSafeSize(oldSize) || !isSafeSize(newSize) || oldSize > newSize) {
    throw new LedgerError(LedgerErrorCode.RangeInvalid, `cannot grow tree from ${oldSize} to ${newSize}`);
  }
  const out: TileId[] = [];
  for (let level = 0; levelCount(newSize, level) > 0; level++) {
    const oldCount = levelCount(oldSize, level);
    const newCount = levelCount(newSize, level);
    if (oldCount === newCount) continue;
    const first = Math.floor(oldCount / TILE_WIDTH);
    const last = Math.floor((newCount - 1) / TILE_WIDTH);
    for (let index = first; index <= last; index++) {
      out.push({ level, index, width: Math.min(TILE_WIDTH, newCount - index * TILE_WIDTH) });
    }
  }
  return out;
}

/** Key of a tile regardless of width. */
function tileKey(level: number, index: number): string {
  return `${level}/${index}`;
}

/**
 * Reads tiles through `reader`, checks their lengths and returns them keyed by
 * {@link tileKey}, each trimmed to the requested width.
 */
export async function readTileMap(reader: TileReader, ids: readonly TileId[]): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  if (ids.length === 0) return out;
  let tiles: readonly Uint8Array[];
  try {
    tiles = await reader.readTiles(ids);
  } catch (err) {
    if (err instanceof LedgerError) throw err;
    throw new LedgerError(LedgerErrorCode.StorageFailed, "tile reader failed", { cause: err });
  }
  if (!Array.isArray(tiles) || tiles.length !== ids.length) {
    throw new LedgerError(LedgerErrorCode.StorageFailed, `tile reader returned ${tiles?.length} tiles, want ${ids.length}`);
  }
  ids.forEach((id, i) => {
    const data = tiles[i];
    const want = id.width * HASH_SIZE;
    if (!(data instanceof Uint8Array) || data.length < want || data.length % HASH_SIZE !== 0) {
      throw new LedgerError(LedgerErrorCode.StorageFailed, `tile ${tilePath(id)} is short or misaligned`);
    }
    out.set(tileKey(id.level, id.index), data.subarray(0, want));
  });
  return out;
}

/** Hash of the perfect subtree over `count` (a power of two) hashes of a tile starting at `offset`. */
function subtreeOfTile(tile: Uint8Array, offset: number, count: number): Uint8Array {
  let row: Uint8Array[] = [];
  for (let i = 0; i < count; i++) row.push(tile.subarray((offset + i) * HASH_SIZE, (offset + i + 1) * HASH_SIZE));
  while (row.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i < row.length; i += 2) next.push(hashChildren(row[i] as Uint8Array, row[i + 1] as Uint8Array));
    row = next;
  }
  return new Uint8Array(row[0] as Uint8Array);
}

/**
 * A {@link HashReader} for the tree of `treeSize` leaves stored as tiles.
 * Each call reads every tile it needs in one `readTiles` batch (deduplicated)
 * and recomputes intermediate levels; caching is left to the tile reader.
 */
export function createTileHashReader(tiles: TileReader, treeSize: number): HashReader {
  if (!isSafeSize(treeSize)) throw new LedgerError(LedgerErrorCode.RangeInvalid, `tree size ${treeSize} is not a safe integer`);
  return {
    async readHashes(ids: readonly NodeId[]): Promise<readonly Uint8Array[]> {
      const wanted = new Map<string, TileId>();
      const plan = ids.map((id) => {
        assertNodeInTree(id, treeSize);
        const tileLevel = Math.floor(id.level / TILE_HEIGHT);
        const span = 2 ** (id.level - tileLevel * TILE_HEIGHT);
        const first = id.index * span;
        const tile = tileOf(tileLevel, first, treeSize);
        wanted.set(tileKey(tile.level, tile.index), tile);
        return { key: tileKey(tile.level, tile.index), offset: first - tile.index * TILE_WIDTH, span };
      });
      const data = await readTileMap(tiles, [...wanted.values()]);
      return plan.map((p) => subtreeOfTile(data.get(p.key) as Uint8Array, p.offset, p.span));
    },
  };
}

/**
 * Computes the full new contents of every tile that changes when the tree
 * grows from `oldSize` to `newSize`.
 *
 * @param fresh - for each tile level `L`, the hashes of tree level `8L` that
 *   are new in `newSize` (indexes `oldSize>>8L .. newSize>>8L - 1`, in order).
 * @param base - reads the old partial tiles (at most one per level) whose
 *   prefix the new versions keep.
 * @throws {@link LedgerError} `LEDGER_RANGE_INVALID`, `LEDGER_STORAGE_FAILED`.
 */
export async function buildTiles(
  oldSize: number,
  newSize: number,
  fresh: readonly (readonly Uint8Array[])[],
  base: TileReader,
): Promise<TileData[]> {
  const changed = changedTiles(oldSize, newSize);
  const partials: TileId[] = [];
  for (const t of changed) {
    const oldCount = levelCount(oldSize, t.level);
    if (t.index * TILE_WIDTH < oldCount) partials.push({ level: t.level, index: t.index, width: oldCount - t.index * TILE_WIDTH });
  }
  const old = await readTileMap(base, partials);
  return changed.map((id) => {
    const oldCount = levelCount(oldSize, id.level);
    const start = id.index * TILE_WIDTH;
    const data = new Uint8Array(id.width * HASH_SIZE);
    const prefix = old.get(tileKey(id.level, id.index));
    const kept = prefix ? prefix.length / HASH_SIZE : 0;
    if (prefix) data.set(prefix, 0);
    const level = fresh[id.level] ?? [];
    for (let i = kept; i < id.width; i++) {
      const h = level[start + i - oldCount];
      if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
        throw new LedgerError(LedgerErrorCode.RangeInvalid, `missing new hash (${id.level * TILE_HEIGHT}, ${start + i})`);
      }
      data.set(h, i * HASH_SIZE);
    }
    return { id, data };
  });
}

/** An in-memory tile store: a {@link TileReader} that keeps the widest version of each tile. */
export interface MemoryTileStore extends TileReader {
  /** Stores tile versions, replacing narrower versions of the same tile. */
  writeTiles(tiles: readonly TileData[]): void;
  /** Number of distinct tiles stored. */
  readonly size: number;
}

/** Creates an empty {@link MemoryTileStore} (tests, benchmarks, single-process use). */
export function createMemoryTileStore(): MemoryTileStore {
  const tiles = new Map<string, Uint8Array>();
  return {
    get size(): number {
      return tiles.size;
    },
    writeTiles(list: readonly TileData[]): void {
      for (const t of list) {
        const key = tileKey(t.id.level, t.id.index);
        const prev = tiles.get(key);
        if (!prev || prev.length < t.data.length) tiles.set(key, t.data);
      }
    },
    async readTiles(ids: readonly TileId[]): Promise<readonly Uint8Array[]> {
      return ids.map((id) => {
        const t = tiles.get(tileKey(id.level, id.index));
        if (!t) throw new Error(`tile ${tilePath(id)} not found`);
        return t;
      });
    },
  };
}
