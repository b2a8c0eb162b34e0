/**
 * Proof generation over stored perfect-subtree hashes.
 *
 * Proof generation is split into a pure planning step ({@link inclusionNodes},
 * {@link consistencyNodes}: which stored nodes are needed) and a rehash step
 * (folding the nodes of the right edge into the single ephemeral hash the
 * proof carries). {@link proveInclusion} and {@link proveConsistency} glue the
 * two around a storage-agnostic {@link HashReader}, so a node can back it with
 * KV tiles ({@link createTileHashReader}) and a test with memory.
 *
 * The planning is a port of transparency-dev/merkle `proof.Inclusion`,
 * `proof.Consistency` and `Nodes.Rehash`.
 *
 * @module
 */
import { bitLen, isSafeSize, shr, trailingZeros, xor } from "./bits.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";
import { HASH_SIZE, hashChildren, isHash } from "./hash.js";
import { type NodeId, rangeNodes, rangeSize } from "./node-id.js";

/**
 * Reads hashes of perfect nodes from storage. Implementations may batch,
 * cache and fetch tiles; they must return exactly one 32-byte hash per id, in
 * order, and may throw (the error is wrapped as `LEDGER_STORAGE_FAILED`).
 */
export interface HashReader {
  /** Returns the hash of each node in `ids`, in the same order. */
  readHashes(ids: readonly NodeId[]): Promise<readonly Uint8Array[]>;
}

/** The stored nodes a proof needs, and how to turn their hashes into the proof. */
export interface ProofNodes {
  /** Perfect nodes to read, in the order {@link ProofNodes.rehash} expects. */
  readonly ids: readonly NodeId[];
  /**
   * Builds the proof from the hashes of {@link ProofNodes.ids} (same order),
   * hashing the right-edge nodes into the ephemeral node where needed.
   *
   * @throws {@link LedgerError} `LEDGER_STORAGE_FAILED` if the count or a hash length is wrong.
   */
  rehash(hashes: readonly Uint8Array[]): Uint8Array[];
}

function makeNodes(ids: NodeId[], begin: number, end: number): ProofNodes {
  return {
    ids,
    rehash(hashes: readonly Uint8Array[]): Uint8Array[] {
      if (hashes.length !== ids.length) {
        throw new LedgerError(LedgerErrorCode.StorageFailed, `got ${hashes.length} hashes, want ${ids.length}`);
      }
      for (let i = 0; i < hashes.length; i++) {
        if (!isHash(hashes[i])) {
          throw new LedgerError(LedgerErrorCode.StorageFailed, `hash of node ${i} is not ${HASH_SIZE} bytes`);
        }
      }
      const out: Uint8Array[] = [];
      for (let i = 0; i < hashes.length; i++) {
        let h = hashes[i] as Uint8Array;
        if (i >= begin && i < end) {
          // Right-edge nodes are ordered from lower to upper levels; fold them
          // right to left into the ephemeral node's hash.
          for (i++; i < end; i++) h = hashChildren(hashes[i] as Uint8Array, h);
          i--;
        }
        out.push(h);
      }
      return out;
    },
  };
}

function reverseTail(a: NodeId[], n: number): void {
  const tail = a.splice(a.length - n, n).reverse();
  a.push(...tail);
}

/**
 * Nodes of the proof that node `(level, index)` is in the tree of `size`
 * leaves, starting with the node itself.
 */
function nodesFor(index: number, level: number, size: number): { ids: NodeId[]; begin: number; end: number } {
  // The fork is where the path to (level, index) leaves the path to leaf
  // `size`; its sibling is the ephemeral node covering [end, size).
  const inner = bitLen(xor(index, shr(size, level))) - 1;
  const forkLevel = level + inner;
  const forkIndex = shr(index, inner);
  const begin = forkIndex * 2 ** forkLevel;
  const end = begin + 2 ** forkLevel;
  const left = rangeSize(0, begin);
  const right = rangeSize(end, size);

  const ids: NodeId[] = [{ level, index }];
  let node: NodeId = { level, index };
  while (node.level < forkLevel) {
    ids.push({ level: node.level, index: xor(node.index, 1) });
    node = { level: node.level + 1, index: shr(node.index, 1) };
  }
  let len1 = ids.length;
  rangeNodes(end, size, ids);
  reverseTail(ids, right);
  let len2 = ids.length;
  rangeNodes(0, begin, ids);
  reverseTail(ids, left);
  if (len1 >= len2) {
    len1 = 0;
    len2 = 0;
  }
  return { ids, begin: len1, end: len2 };
}

function skipFirst(p: { ids: NodeId[]; begin: number; end: number }): ProofNodes {
  const ids = p.ids.slice(1);
  return p.begin < p.end ? makeNodes(ids, p.begin - 1, p.end - 1) : makeNodes(ids, 0, 0);
}

/**
 * Plans the inclusion proof for leaf `index` in a tree of `size` leaves.
 *
 * @throws {@link LedgerError} `LEDGER_RANGE_INVALID` unless `0 <= index < size` (safe integers).
 */
export function inclusionNodes(index: number, size: number): ProofNodes {
  if (!isSafeSize(index) || !isSafeSize(size) || index >= size) {
    throw new LedgerError(LedgerErrorCode.RangeInvalid, `leaf index ${index} outside tree of size ${size}`);
  }
  return skipFirst(nodesFor(index, 0, size));
}

/**
 * Plans the consistency proof from tree size `size1` to `size2`.
 * Empty when `size1` is 0 or equals `size2`.
 *
 * @throws {@link LedgerError} `LEDGER_RANGE_INVALID` unless `0 <= size1 <= size2` (safe integers).
 */
export function consistencyNodes(size1: number, size2: number): ProofNodes {
  if (!isSafeSize(size1) || !isSafeSize(size2) || size1 > size2) {
    throw new LedgerError(LedgerErrorCode.RangeInvalid, `cannot prove consistency from ${size1} to ${size2}`);
  }
  if (size1 === 0 || size1 === size2) return makeNodes([], 0, 0);
  // The biggest perfect subtree ending at size1; when size1 is a power of two
  // it is the old root itself, which the verifier already has.
  const level = trailingZeros(size1);
  const index = shr(size1 - 1, level);
  const p = nodesFor(index, level, size2);
  return index === 0 ? skipFirst(p) : makeNodes(p.ids, p.begin, p.end);
}

/** Reads `ids` through `reader`, wrapping any failure as `LEDGER_STORAGE_FAILED`. */
export async function readNodeHashes(reader: HashReader, ids: readonly NodeId[]): Promise<readonly Uint8Array[]> {
  if (ids.length === 0) return [];
  let hashes: readonly Uint8Array[];
  try {
    hashes = await reader.readHashes(ids);
  } catch (err) {
    if (err instanceof LedgerError) throw err;
    throw new LedgerError(LedgerErrorCode.StorageFailed, "hash reader failed", { cause: err });
  }
  if (!Array.isArray(hashes) || hashes.length !== ids.length) {
    throw new LedgerError(LedgerErrorCode.StorageFailed, `hash reader returned ${hashes?.length} hashes, want ${ids.length}`);
  }
  return hashes;
}

/**
 * Inclusion proof for leaf `index` in the tree of `size` leaves, read from
 * stored node hashes. At most `2·log2(size)` hashes are read.
 *
 * @throws {@link LedgerError} `LEDGER_RANGE_INVALID`, `LEDGER_STORAGE_FAILED`.
 */
export async function proveInclusion(reader: HashReader, index: number, size: number): Promise<Uint8Array[]> {
  const plan = inclusionNodes(index, size);
  return plan.rehash(await readNodeHashes(reader, plan.ids));
}

/**
 * Consistency proof from tree size `size1` to `size2`, read from stored node
 * hashes.
 *
 * @throws {@link LedgerError} `LEDGER_RANGE_INVALID`, `LEDGER_STORAGE_FAILED`.
 */
export async function proveConsistency(reader: HashReader, size1: number, size2: number): Promise<Uint8Array[]> {
  const plan = consistencyNodes(size1, size2);
  return plan.rehash(await readNodeHashes(reader, plan.ids));
}
