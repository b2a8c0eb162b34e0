/**
 * 32-bit hashing for the feature hasher: FNV-1a over UTF-16 code units with a
 * murmur3 finaliser, so low bits (bucket) and the top bit (sign) are both
 * well mixed. Pure and deterministic across platforms.
 *
 * @module
 */

/** FNV-1a offset basis. */
export const FNV_OFFSET = 0x811c9dc5;
/** FNV-1a prime. */
export const FNV_PRIME = 16777619;

/** murmur3 `fmix32`: avalanche a 32-bit state. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Start state of a hash in namespace `ns`. */
export function hashStart(ns: number): number {
  return Math.imul(FNV_OFFSET ^ ns, FNV_PRIME) >>> 0;
}

/** Hashes `s` in namespace `ns` (finalised). */
export function hashString(s: string, ns: number): number {
  let h = hashStart(ns);
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return fmix32(h);
}

/** Combines two finalised hashes into the hash of the ordered pair. */
export function hashPair(a: number, b: number): number {
  return fmix32((Math.imul(a, 0x9e3779b1) ^ b ^ 0x5bd1e995) >>> 0);
}
