/**
 * Appending a batch ("block") of leaves to a tile-stored tree.
 *
 * A ledger node holds the tree's {@link Frontier} (or reloads it with
 * `loadFrontier`), calls {@link appendBatch} with the leaf hashes of the new
 * entries, then persists the returned tiles and frontier and signs a
 * checkpoint for `root` at `frontier.size`. The function reads at most one old
 * partial tile per tile level and otherwise does no I/O.
 *
 * @module
 */
import { appendLeaves, frontierRoot, type Frontier } from "./frontier.js";
import { TILE_HEIGHT, buildTiles, type TileData, type TileReader } from "./tiles.js";

/** Outcome of {@link appendBatch}. */
export interface AppendResult {
  /** Tree size before the batch; the first new leaf has this index. */
  readonly oldSize: number;
  /** Frontier after the batch; `frontier.size` is the new tree size. */
  readonly frontier: Frontier;
  /** Root hash of the tree after the batch. */
  readonly root: Uint8Array;
  /** Full contents of every tile that changed; write them all before publishing a checkpoint. */
  readonly tiles: readonly TileData[];
}

/**
 * Appends `leafHashes` to the tree described by `frontier`, whose tiles are
 * readable through `tiles` (as of `frontier.size`).
 *
 * @throws {@link LedgerError} `LEDGER_HASH_MALFORMED`, `LEDGER_FRONTIER_MALFORMED`,
 *   `LEDGER_RANGE_INVALID`, `LEDGER_STORAGE_FAILED`.
 */
export async function appendBatch(
  frontier: Frontier,
  leafHashes: readonly Uint8Array[],
  tiles: TileReader,
): Promise<AppendResult> {
  const fresh: Uint8Array[][] = [];
  const next = appendLeaves(frontier, leafHashes, (id, hash) => {
    if (id.level % TILE_HEIGHT === 0) (fresh[id.level / TILE_HEIGHT] ??= []).push(hash);
  });
  const written = await buildTiles(frontier.size, next.size, fresh, tiles);
  return { oldSize: frontier.size, frontier: next, root: frontierRoot(next), tiles: written };
}
