/**
 * Bit arithmetic on non-negative safe integers (0 .. 2^53-1).
 *
 * JavaScript bitwise operators truncate to 32 bits, and tree sizes and leaf
 * indexes of a long-lived log may exceed 2^32, so every helper here splits the
 * value into 32-bit halves or uses exact power-of-two division. Internal to
 * `ledger/`; not re-exported.
 *
 * @module
 */

const TWO_32 = 0x1_0000_0000;

/** True for integers in 0 .. Number.MAX_SAFE_INTEGER. */
export function isSafeSize(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

/** `x >> k` for a safe integer (exact: division by a power of two). */
export function shr(x: number, k: number): number {
  return Math.floor(x / 2 ** k);
}

/** `x << k`, caller guarantees the result stays a safe integer. */
export function shl(x: number, k: number): number {
  return x * 2 ** k;
}

function clz32Len(v: number): number {
  return 32 - Math.clz32(v);
}

/** Number of bits needed to represent `x` (Go `bits.Len64`). */
export function bitLen(x: number): number {
  const hi = Math.floor(x / TWO_32);
  return hi > 0 ? 32 + clz32Len(hi) : clz32Len(x >>> 0);
}

function ctz32(v: number): number {
  return 31 - Math.clz32(v & -v);
}

/** Number of trailing zero bits of `x`; 64 for 0 (Go `bits.TrailingZeros64`). */
export function trailingZeros(x: number): number {
  if (x === 0) return 64;
  const lo = x % TWO_32;
  return lo !== 0 ? ctz32(lo) : 32 + ctz32(Math.floor(x / TWO_32));
}

function pop32(v: number): number {
  let c = 0;
  for (let w = v >>> 0; w !== 0; w &= w - 1) c++;
  return c;
}

/** Number of set bits of `x` (Go `bits.OnesCount64`). */
export function popCount(x: number): number {
  return pop32(x % TWO_32) + pop32(Math.floor(x / TWO_32));
}

/** `a ^ b` for safe integers. */
export function xor(a: number, b: number): number {
  const hi = (Math.floor(a / TWO_32) ^ Math.floor(b / TWO_32)) >>> 0;
  const lo = ((a % TWO_32) ^ (b % TWO_32)) >>> 0;
  return hi * TWO_32 + lo;
}

/** `x & (2^d - 1)`: the low `d` bits of `x`. */
export function lowBits(x: number, d: number): number {
  return x % 2 ** d;
}
