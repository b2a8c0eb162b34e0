/**
 * Inclusion and consistency proof verification (RFC 9162 §2.1.3.2, §2.1.4.2).
 *
 * Inputs are attacker-controlled: every size and index is checked to be a safe
 * non-negative integer, every hash (leaf, roots, proof elements) to be exactly
 * 32 bytes, and the proof length to be exactly the length the tree shape
 * implies, before any hashing. Failures throw {@link LedgerError} with
 * `LEDGER_PROOF_MALFORMED` (shape), `LEDGER_PROOF_INVALID` (algorithm check)
 * or `LEDGER_ROOT_MISMATCH` (the recomputed root differs).
 *
 * @module
 */
import { bitLen, isSafeSize, popCount, shr, trailingZeros, xor } from "./bits.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";
import { EMPTY_ROOT, HASH_SIZE, bytesEqual, hashChildren, isHash } from "./hash.js";

function malformed(message: string): LedgerError {
  return new LedgerError(LedgerErrorCode.ProofMalformed, message);
}

function checkHash(h: unknown, what: string): asserts h is Uint8Array {
  if (!isHash(h)) throw malformed(`${what} must be a ${HASH_SIZE}-byte hash`);
}

function checkProof(proof: unknown): asserts proof is readonly Uint8Array[] {
  if (!Array.isArray(proof)) throw malformed("proof must be an array of hashes");
  for (let i = 0; i < proof.length; i++) checkHash(proof[i], `proof[${i}]`);
}

/**
 * Number of proof hashes below the "fork" (inner) and along the right border,
 * for an inclusion proof of `index` in a tree of `size` (size > index).
 * Mirrors transparency-dev/merkle `decompInclProof`.
 */
function decompose(index: number, size: number): { inner: number; border: number } {
  const inner = bitLen(xor(index, size - 1));
  const border = popCount(shr(index, inner));
  return { inner, border };
}

/**
 * Expected number of hashes in an inclusion proof for leaf `index` in a tree
 * of `size` leaves.
 *
 * @throws {@link LedgerError} `LEDGER_PROOF_MALFORMED` if `index >= size` or either is not a safe integer.
 */
export function inclusionProofLength(index: number, size: number): number {
  if (!isSafeSize(index) || !isSafeSize(size)) throw malformed("index and size must be non-negative safe integers");
  if (index >= size) throw malformed(`leaf index ${index} is not below tree size ${size}`);
  const { inner, border } = decompose(index, size);
  return inner + border;
}

/**
 * Expected number of hashes in a consistency proof from `size1` to `size2`
 * (0 when the sizes are equal or `size1` is 0).
 *
 * @throws {@link LedgerError} `LEDGER_PROOF_MALFORMED` if `size1 > size2` or either is not a safe integer.
 */
export function consistencyProofLength(size1: number, size2: number): number {
  if (!isSafeSize(size1) || !isSafeSize(size2)) throw malformed("sizes must be non-negative safe integers");
  if (size1 > size2) throw malformed(`size1 ${size1} is greater than size2 ${size2}`);
  if (size1 === 0 || size1 === size2) return 0;
  const shift = trailingZeros(size1);
  const { inner, border } = decompose(shr(size1 - 1, shift), shr(size2 - 1, shift) + 1);
  const seeded = size1 === 2 ** shift ? 0 : 1;
  return seeded + inner + border;
}

/**
 * Recomputes the root hash implied by an inclusion proof (RFC 9162 §2.1.3.2
 * steps 1-4). The result is only meaningful once compared to a trusted root;
 * use {@link verifyInclusion} for that.
 *
 * @param index - leaf index, `0 <= index < size`.
 * @param size - tree size the proof is for.
 * @param leafHash - 32-byte leaf hash (`hashLeaf(entry)`).
 * @param proof - 32-byte sibling hashes, leaf level first.
 * @throws {@link LedgerError} `LEDGER_PROOF_MALFORMED` or `LEDGER_PROOF_INVALID`.
 */
export function rootFromInclusionProof(
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
): Uint8Array {
  const want = inclusionProofLength(index, size);
  checkHash(leafHash, "leaf hash");
  checkProof(proof);
  if (proof.length !== want) {
    throw malformed(`inclusion proof for leaf ${index} of ${size} has ${proof.length} hashes, want ${want}`);
  }
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) throw new LedgerError(LedgerErrorCode.ProofInvalid, "inclusion proof longer than the path to the root");
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = shr(fn, 1);
        sn = shr(sn, 1);
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = shr(fn, 1);
    sn = shr(sn, 1);
  }
  if (sn !== 0) throw new LedgerError(LedgerErrorCode.ProofInvalid, "inclusion proof shorter than the path to the root");
  return r;
}

/**
 * Verifies that `leafHash` is the leaf at `index` in the tree of `size` leaves
 * whose root is `root` (RFC 9162 §2.1.3.2).
 *
 * @throws {@link LedgerError} `LEDGER_PROOF_MALFORMED`, `LEDGER_PROOF_INVALID` or `LEDGER_ROOT_MISMATCH`.
 */
export function verifyInclusion(
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): void {
  checkHash(root, "root");
  const got = rootFromInclusionProof(index, size, leafHash, proof);
  if (!bytesEqual(got, root)) {
    throw new LedgerError(LedgerErrorCode.RootMismatch, `inclusion proof for leaf ${index} does not lead to the root`);
  }
}

/**
 * Verifies that the tree of `size1` leaves with root `root1` is a prefix of the
 * tree of `size2` leaves with root `root2` (RFC 9162 §2.1.4.2).
 *
 * Edge cases, stricter than RFC 9162's `0 < first < second` precondition:
 * equal sizes require an empty proof and equal roots; `size1 === 0` requires
 * an empty proof and `root1` equal to the empty-tree root. Roots must always
 * be 32 bytes, even where they are only compared.
 *
 * @throws {@link LedgerError} `LEDGER_PROOF_MALFORMED`, `LEDGER_PROOF_INVALID` or `LEDGER_ROOT_MISMATCH`.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): void {
  const want = consistencyProofLength(size1, size2);
  checkHash(root1, "root1");
  checkHash(root2, "root2");
  checkProof(proof);
  if (proof.length !== want) {
    throw malformed(`consistency proof ${size1}->${size2} has ${proof.length} hashes, want ${want}`);
  }
  if (size1 === size2) {
    if (!bytesEqual(root1, root2)) throw new LedgerError(LedgerErrorCode.RootMismatch, "equal sizes but different roots");
    if (size1 === 0 && !bytesEqual(root1, EMPTY_ROOT)) {
      throw new LedgerError(LedgerErrorCode.RootMismatch, "root of the empty tree must be SHA-256 of the empty string");
    }
    return;
  }
  if (size1 === 0) {
    // Every tree extends the empty tree; only the claimed empty root can be wrong.
    if (!bytesEqual(root1, EMPTY_ROOT)) {
      throw new LedgerError(LedgerErrorCode.RootMismatch, "root of the empty tree must be SHA-256 of the empty string");
    }
    return;
  }

  const path = size1 === 2 ** trailingZeros(size1) ? [root1, ...proof] : proof;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = shr(fn, 1);
    sn = shr(sn, 1);
  }
  let fr = path[0] as Uint8Array;
  let sr = fr;
  for (let i = 1; i < path.length; i++) {
    const c = path[i] as Uint8Array;
    if (sn === 0) throw new LedgerError(LedgerErrorCode.ProofInvalid, "consistency proof longer than the path to the root");
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = shr(fn, 1);
        sn = shr(sn, 1);
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = shr(fn, 1);
    sn = shr(sn, 1);
  }
  if (sn !== 0) throw new LedgerError(LedgerErrorCode.ProofInvalid, "consistency proof shorter than the path to the root");
  if (!bytesEqual(fr, root1)) throw new LedgerError(LedgerErrorCode.RootMismatch, "consistency proof does not lead to root1");
  if (!bytesEqual(sr, root2)) throw new LedgerError(LedgerErrorCode.RootMismatch, "consistency proof does not lead to root2");
}
