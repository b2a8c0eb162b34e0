/**
 * Reference Merkle tree algorithms over an in-memory list of leaf hashes:
 * MTH (RFC 9162 §2.1.1), PATH (§2.1.3.1) and PROOF/SUBPROOF (§2.1.4.1).
 *
 * These are direct, O(n) transcriptions of the RFC, meant for small trees,
 * tests and cross-checking. A node serving a large log uses the incremental
 * {@link Frontier} and the reader-based `proveInclusion`/`proveConsistency`.
 *
 * @module
 */
import { LedgerError, LedgerErrorCode } from "./errors.js";
import { EMPTY_ROOT, HASH_SIZE, hashChildren } from "./hash.js";

/** Largest power of two strictly smaller than `n` (n >= 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function checkLeaves(leaves: readonly Uint8Array[]): void {
  for (let i = 0; i < leaves.length; i++) {
    const h = leaves[i];
    if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
      throw new LedgerError(LedgerErrorCode.HashMalformed, `leaf hash ${i} must be a ${HASH_SIZE}-byte Uint8Array`);
    }
  }
}

/** MTH(D[lo:hi]) for hi > lo. */
function mth(leaves: readonly Uint8Array[], lo: number, hi: number): Uint8Array {
  const n = hi - lo;
  if (n === 1) return leaves[lo] as Uint8Array;
  const k = splitPoint(n);
  return hashChildren(mth(leaves, lo, lo + k), mth(leaves, lo + k, hi));
}

/**
 * Merkle tree hash of a list of leaf hashes (RFC 9162 §2.1.1).
 * The empty list has root `SHA-256("")`.
 *
 * @throws {@link LedgerError} `LEDGER_HASH_MALFORMED` if a leaf hash is not 32 bytes.
 */
export function merkleRoot(leafHashes: readonly Uint8Array[]): Uint8Array {
  checkLeaves(leafHashes);
  if (leafHashes.length === 0) return EMPTY_ROOT.slice();
  return mth(leafHashes, 0, leafHashes.length);
}

function path(leaves: readonly Uint8Array[], m: number, lo: number, hi: number, out: Uint8Array[]): void {
  const n = hi - lo;
  if (n === 1) return;
  const k = splitPoint(n);
  if (m < k) {
    path(leaves, m, lo, lo + k, out);
    out.push(mth(leaves, lo + k, hi));
  } else {
    path(leaves, m - k, lo + k, hi, out);
    out.push(mth(leaves, lo, lo + k));
  }
}

/**
 * Inclusion proof (audit path) of leaf `index` in the tree of all given leaf
 * hashes, ordered from the leaf level upwards (RFC 9162 §2.1.3.1).
 *
 * @throws {@link LedgerError} `LEDGER_RANGE_INVALID` if `index` is not in `[0, leafHashes.length)`.
 */
export function inclusionProof(leafHashes: readonly Uint8Array[], index: number): Uint8Array[] {
  checkLeaves(leafHashes);
  if (!Number.isSafeInteger(index) || index < 0 || index >= leafHashes.length) {
    throw new LedgerError(LedgerErrorCode.RangeInvalid, `leaf index ${index} outside tree of size ${leafHashes.length}`);
  }
  const out: Uint8Array[] = [];
  path(leafHashes, index, 0, leafHashes.length, out);
  return out;
}

function subproof(leaves: readonly Uint8Array[], m: number, lo: number, hi: number, b: boolean, out: Uint8Array[]): void {
  const n = hi - lo;
  if (m === n) {
    if (!b) out.push(mth(leaves, lo, hi));
    return;
  }
  const k = splitPoint(n);
  if (m <= k) {
    subproof(leaves, m, lo, lo + k, b, out);
    out.push(mth(leaves, lo + k, hi));
  } else {
    subproof(leaves, m - k, lo + k, hi, false, out);
    out.push(mth(leaves, lo, lo + k));
  }
}

/**
 * Consistency proof from the tree of the first `size1` leaves to the tree of
 * all given leaf hashes (RFC 9162 §2.1.4.1). Empty when `size1` is 0 or equals
 * the number of leaves.
 *
 * @throws {@link LedgerError} `LEDGER_RANGE_INVALID` if `size1` is not in `[0, leafHashes.length]`.
 */
export function consistencyProof(leafHashes: readonly Uint8Array[], size1: number): Uint8Array[] {
  checkLeaves(leafHashes);
  const n = leafHashes.length;
  if (!Number.isSafeInteger(size1) || size1 < 0 || size1 > n) {
    throw new LedgerError(LedgerErrorCode.RangeInvalid, `size1 ${size1} outside [0, ${n}]`);
  }
  const out: Uint8Array[] = [];
  if (size1 === 0 || size1 === n) return out;
  subproof(leafHashes, size1, 0, n, true, out);
  return out;
}
