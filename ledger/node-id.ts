/**
 * Addressing of perfect subtrees ("nodes") in an RFC 6962 tree.
 *
 * Node `(level, index)` is the root of the perfect subtree covering leaves
 * `[index * 2^level, (index + 1) * 2^level)`. Once the tree has grown past its
 * last leaf its hash never changes, so it is what storage keeps (directly or
 * inside tiles). Ephemeral nodes on the right edge of a tree are never stored:
 * they are recomputed from perfect ones.
 *
 * @module
 */
import { bitLen, isSafeSize, lowBits, shr, trailingZeros, xor } from "./bits.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";

/** Identifies the perfect subtree covering leaves `[index·2^level, (index+1)·2^level)`. */
export interface NodeId {
  /** Height above the leaves; leaves are level 0. */
  readonly level: number;
  /** Position among the nodes of this level, from the left. */
  readonly index: number;
}

/** First leaf index after the node's coverage: `(index + 1) · 2^level`. */
export function nodeEnd(id: NodeId): number {
  return (id.index + 1) * 2 ** id.level;
}

/** Throws `LEDGER_RANGE_INVALID` unless `id` is a perfect node of a tree of `size` leaves. */
export function assertNodeInTree(id: NodeId, size: number): void {
  if (!isSafeSize(id.level) || id.level > 53 || !isSafeSize(id.index) || !isSafeSize(size)) {
    throw new LedgerError(LedgerErrorCode.RangeInvalid, `malformed node id (${id.level}, ${id.index})`);
  }
  if (nodeEnd(id) > size) {
    throw new LedgerError(
      LedgerErrorCode.RangeInvalid,
      `node (${id.level}, ${id.index}) is not complete in a tree of size ${size}`,
    );
  }
}

/**
 * Splits `[begin, end)` into its left and right compact-range bit masks
 * (transparency-dev/merkle `compact.Decompose`).
 */
function decompose(begin: number, end: number): { left: number; right: number } {
  if (begin === 0) return { left: 0, right: end };
  const xbegin = begin - 1;
  const d = bitLen(xor(xbegin, end)) - 1;
  const mask = 2 ** d - 1;
  return { left: mask - lowBits(xbegin, d), right: lowBits(end, d) };
}

/**
 * Appends to `out` the minimal list of perfect nodes covering leaves
 * `[begin, end)`, left to right (the "compact range").
 */
export function rangeNodes(begin: number, end: number, out: NodeId[] = []): NodeId[] {
  let { left, right } = decompose(begin, end);
  let pos = begin;
  while (left !== 0) {
    const level = trailingZeros(left);
    const bit = 2 ** level;
    out.push({ level, index: shr(pos, level) });
    pos += bit;
    left -= bit;
  }
  while (right !== 0) {
    const level = bitLen(right) - 1;
    const bit = 2 ** level;
    out.push({ level, index: shr(pos, level) });
    pos += bit;
    right -= bit;
  }
  return out;
}

/** Number of nodes {@link rangeNodes} returns for `[begin, end)`. */
export function rangeSize(begin: number, end: number): number {
  return rangeNodes(begin, end).length;
}
