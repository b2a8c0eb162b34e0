/**
 * The frontier (compact range `[0, size)`) of an append-only Merkle tree: the
 * hashes of the perfect subtrees along its right edge, one per set bit of
 * `size`. It is all a writer needs to append leaves and compute the new root
 * in O(log n) memory, without reading the rest of the tree.
 *
 * @module
 */
import { isSafeSize, popCount, shr } from "./bits.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";
import { EMPTY_ROOT, HASH_SIZE, hashChildren, isHash } from "./hash.js";
import { type NodeId, rangeNodes } from "./node-id.js";
import { type HashReader, readNodeHashes } from "./proof.js";

/** Right-edge perfect subtree hashes of a tree of `size` leaves. Immutable. */
export interface Frontier {
  /** Number of leaves in the tree. */
  readonly size: number;
  /**
   * Hashes of {@link frontierNodeIds}(size), largest (leftmost) subtree first;
   * exactly `popCount(size)` entries.
   */
  readonly hashes: readonly Uint8Array[];
}

/** Frontier of the empty tree. */
export const EMPTY_FRONTIER: Frontier = Object.freeze({ size: 0, hashes: Object.freeze([]) as readonly Uint8Array[] });

/** Called for every perfect node completed by an append, lowest level first. */
export type NodeSink = (id: NodeId, hash: Uint8Array) => void;

/** Node ids whose hashes make up the frontier of a tree of `size` leaves, leftmost first. */
export function frontierNodeIds(size: number): NodeId[] {
  if (!isSafeSize(size)) throw new LedgerError(LedgerErrorCode.RangeInvalid, `tree size ${size} is not a safe integer`);
  return rangeNodes(0, size);
}

/**
 * Builds a frontier from its parts, checking their shape.
 *
 * @throws {@link LedgerError} `LEDGER_FRONTIER_MALFORMED`.
 */
export function createFrontier(size: number, hashes: readonly Uint8Array[]): Frontier {
  if (!isSafeSize(size)) throw new LedgerError(LedgerErrorCode.FrontierMalformed, `tree size ${size} is not a safe integer`);
  if (hashes.length !== popCount(size)) {
    throw new LedgerError(LedgerErrorCode.FrontierMalformed, `frontier of size ${size} needs ${popCount(size)} hashes`);
  }
  for (const h of hashes) {
    if (!isHash(h)) throw new LedgerError(LedgerErrorCode.FrontierMalformed, `frontier hash is not ${HASH_SIZE} bytes`);
  }
  return Object.freeze({ size, hashes: Object.freeze([...hashes]) });
}

/** Root hash of the tree the frontier describes (RFC 9162 MTH), in O(log n). */
export function frontierRoot(f: Frontier): Uint8Array {
  const n = f.hashes.length;
  if (n === 0) return EMPTY_ROOT.slice();
  let root = f.hashes[n - 1] as Uint8Array;
  for (let i = n - 2; i >= 0; i--) root = hashChildren(f.hashes[i] as Uint8Array, root);
  return root;
}

/**
 * Appends leaf hashes to a frontier and returns the new frontier. Every perfect
 * node the appends complete (including each leaf at level 0) is reported to
 * `onNode`, which is how a writer learns which hashes to persist.
 *
 * Amortised cost: one node hash per leaf.
 *
 * @throws {@link LedgerError} `LEDGER_HASH_MALFORMED` for a leaf hash not 32 bytes,
 *   `LEDGER_FRONTIER_MALFORMED` for an inconsistent frontier,
 *   `LEDGER_RANGE_INVALID` if the size would exceed 2^53-1.
 */
export function appendLeaves(f: Frontier, leafHashes: readonly Uint8Array[], onNode?: NodeSink): Frontier {
  if (!isSafeSize(f.size) || f.hashes.length !== popCount(f.size)) {
    throw new LedgerError(LedgerErrorCode.FrontierMalformed, "frontier hash count does not match its size");
  }
  if (!isSafeSize(f.size + leafHashes.length)) {
    throw new LedgerError(LedgerErrorCode.RangeInvalid, "tree size would exceed 2^53-1");
  }
  const stack = [...f.hashes];
  let size = f.size;
  for (let i = 0; i < leafHashes.length; i++) {
    let h = leafHashes[i];
    if (!isHash(h)) throw new LedgerError(LedgerErrorCode.HashMalformed, `leaf hash ${i} is not ${HASH_SIZE} bytes`);
    onNode?.({ level: 0, index: size }, h);
    // Each trailing one bit of the old size is a perfect subtree of the same
    // height as the one just completed: merge them.
    let level = 0;
    for (let s = size; s % 2 === 1; s = shr(s, 1)) {
      h = hashChildren(stack.pop() as Uint8Array, h);
      level++;
      onNode?.({ level, index: shr(size, level) }, h);
    }
    stack.push(h);
    size++;
  }
  return Object.freeze({ size, hashes: Object.freeze(stack) });
}

/**
 * Rebuilds the frontier of a stored tree of `size` leaves from its node hashes
 * (at most log2(size) reads), e.g. when a writer restarts.
 *
 * @throws {@link LedgerError} `LEDGER_RANGE_INVALID`, `LEDGER_STORAGE_FAILED`.
 */
export async function loadFrontier(reader: HashReader, size: number): Promise<Frontier> {
  const ids = frontierNodeIds(size);
  const hashes = await readNodeHashes(reader, ids);
  for (const h of hashes) {
    if (!isHash(h)) throw new LedgerError(LedgerErrorCode.StorageFailed, `stored hash is not ${HASH_SIZE} bytes`);
  }
  return Object.freeze({ size, hashes: Object.freeze([...hashes]) });
}

/** Version byte of the frontier serialization. */
export const FRONTIER_FORMAT_VERSION = 1;

/**
 * Serializes a frontier: version byte `0x01`, tree size as 8-byte big-endian
 * unsigned integer, then the `popCount(size)` hashes, leftmost first.
 */
export function encodeFrontier(f: Frontier): Uint8Array {
  const checked = createFrontier(f.size, f.hashes);
  const out = new Uint8Array(9 + checked.hashes.length * HASH_SIZE);
  out[0] = FRONTIER_FORMAT_VERSION;
  new DataView(out.buffer).setBigUint64(1, BigInt(checked.size));
  checked.hashes.forEach((h, i) => out.set(h, 9 + i * HASH_SIZE));
  return out;
}

/**
 * Parses {@link encodeFrontier} output strictly (exact length, known version,
 * safe-integer size).
 *
 * @throws {@link LedgerError} `LEDGER_FRONTIER_MALFORMED`.
 */
export function decodeFrontier(bytes: Uint8Array): Frontier {
  if (!(bytes instanceof Uint8Array) || bytes.length < 9 || bytes[0] !== FRONTIER_FORMAT_VERSION) {
    throw new LedgerError(LedgerErrorCode.FrontierMalformed, "not a version 1 frontier");
  }
  const big = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(1);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new LedgerError(LedgerErrorCode.FrontierMalformed, "frontier size exceeds 2^53-1");
  }
  const size = Number(big);
  const count = popCount(size);
  if (bytes.length !== 9 + count * HASH_SIZE) {
    throw new LedgerError(LedgerErrorCode.FrontierMalformed, `frontier of size ${size} must be ${9 + count * HASH_SIZE} bytes`);
  }
  const hashes: Uint8Array[] = [];
  for (let i = 0; i < count; i++) hashes.push(bytes.slice(9 + i * HASH_SIZE, 9 + (i + 1) * HASH_SIZE));
  return createFrontier(size, hashes);
}
