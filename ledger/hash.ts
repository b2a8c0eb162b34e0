/**
 * RFC 6962 / RFC 9162 §2.1.1 Merkle tree hashing with SHA-256.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { LedgerError, LedgerErrorCode } from "./errors.js";

/** Domain-separation prefix of a leaf hash: `SHA-256(0x00 || data)`. */
export const LEAF_HASH_PREFIX = 0x00;

/** Domain-separation prefix of an interior node hash: `SHA-256(0x01 || left || right)`. */
export const NODE_HASH_PREFIX = 0x01;

/** Size in bytes of every hash in the tree (SHA-256). */
export const HASH_SIZE = 32;

const LEAF_PREFIX_BYTES = Uint8Array.of(LEAF_HASH_PREFIX);
const NODE_PREFIX_BYTES = Uint8Array.of(NODE_HASH_PREFIX);

/** Root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1). */
export const EMPTY_ROOT: Uint8Array = new Uint8Array(createHash("sha256").digest());

/** Leaf hash of an entry: `SHA-256(0x00 || data)`. */
export function hashLeaf(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(LEAF_PREFIX_BYTES).update(data).digest());
}

/**
 * Interior node hash: `SHA-256(0x01 || left || right)`.
 * Does not check lengths; callers validate hashes at their boundary.
 */
export function hashChildren(left: Uint8Array, right: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(NODE_PREFIX_BYTES).update(left).update(right).digest());
}

/** True when `h` is a byte array of exactly {@link HASH_SIZE} bytes. */
export function isHash(h: unknown): h is Uint8Array {
  return h instanceof Uint8Array && h.length === HASH_SIZE;
}

/** Constant-time equality of two byte arrays (false when lengths differ). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** Throws `LEDGER_HASH_MALFORMED` unless `h` is a 32-byte hash. */
export function assertHash(h: unknown, what: string): asserts h is Uint8Array {
  if (!isHash(h)) {
    throw new LedgerError(LedgerErrorCode.HashMalformed, `${what} must be a ${HASH_SIZE}-byte Uint8Array`);
  }
}
