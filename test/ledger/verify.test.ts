// Defensive input handling of ledger/verify.ts and the 53-bit arithmetic
// behind it (sizes beyond 2^32 must work without BigInt at the call site).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EMPTY_ROOT,
  consistencyNodes,
  consistencyProofLength,
  hashLeaf,
  inclusionNodes,
  inclusionProof,
  inclusionProofLength,
  merkleRoot,
  verifyConsistency,
  verifyInclusion,
} from "../../ledger/index.js";
import { bitLen, popCount, trailingZeros, xor } from "../../ledger/bits.js";
import { rangeNodes } from "../../ledger/node-id.js";
import { codeOf } from "./code-of.js";

const leaves = Array.from({ length: 5 }, (_, i) => hashLeaf(Uint8Array.of(i)));
const root = merkleRoot(leaves);
const proof = inclusionProof(leaves, 2);

describe("verifyInclusion input validation", () => {
  it("accepts the honest proof", () => {
    expect(codeOf(() => verifyInclusion(2, 5, leaves[2] as Uint8Array, proof, root))).toBeUndefined();
  });

  it.each([
    ["negative index", () => verifyInclusion(-1, 5, leaves[2] as Uint8Array, proof, root)],
    ["fractional index", () => verifyInclusion(1.5, 5, leaves[2] as Uint8Array, proof, root)],
    ["NaN size", () => verifyInclusion(2, Number.NaN, leaves[2] as Uint8Array, proof, root)],
    ["unsafe size", () => verifyInclusion(2, 2 ** 53, leaves[2] as Uint8Array, proof, root)],
    ["index = size", () => verifyInclusion(5, 5, leaves[2] as Uint8Array, proof, root)],
    ["short leaf", () => verifyInclusion(2, 5, new Uint8Array(31), proof, root)],
    ["long root", () => verifyInclusion(2, 5, leaves[2] as Uint8Array, proof, new Uint8Array(33))],
    ["short proof hash", () => verifyInclusion(2, 5, leaves[2] as Uint8Array, [proof[0] as Uint8Array, new Uint8Array(8)], root)],
    ["proof not an array", () => verifyInclusion(2, 5, leaves[2] as Uint8Array, "x" as unknown as Uint8Array[], root)],
    ["extra hash", () => verifyInclusion(2, 5, leaves[2] as Uint8Array, [...proof, root], root)],
    ["missing hash", () => verifyInclusion(2, 5, leaves[2] as Uint8Array, proof.slice(1), root)],
  ])("%s -> LEDGER_PROOF_MALFORMED", (_name, fn) => {
    expect(codeOf(fn)).toBe("LEDGER_PROOF_MALFORMED");
  });

  it("a wrong root is LEDGER_ROOT_MISMATCH", () => {
    expect(codeOf(() => verifyInclusion(2, 5, leaves[2] as Uint8Array, proof, EMPTY_ROOT))).toBe("LEDGER_ROOT_MISMATCH");
  });
});

describe("verifyConsistency edge cases", () => {
  const r3 = merkleRoot(leaves.slice(0, 3));
  it.each([
    ["size1 > size2", () => verifyConsistency(5, 3, [], root, r3), "LEDGER_PROOF_MALFORMED"],
    ["equal sizes, proof not empty", () => verifyConsistency(5, 5, [root], root, root), "LEDGER_PROOF_MALFORMED"],
    ["equal sizes, different roots", () => verifyConsistency(5, 5, [], root, r3), "LEDGER_ROOT_MISMATCH"],
    ["size 0, root not empty-tree root", () => verifyConsistency(0, 0, [], root, root), "LEDGER_ROOT_MISMATCH"],
    ["0 -> n with a proof", () => verifyConsistency(0, 5, [root], EMPTY_ROOT, root), "LEDGER_PROOF_MALFORMED"],
    ["0 -> n with wrong root1", () => verifyConsistency(0, 5, [], r3, root), "LEDGER_ROOT_MISMATCH"],
    ["3 -> 5 with empty proof", () => verifyConsistency(3, 5, [], r3, root), "LEDGER_PROOF_MALFORMED"],
  ])("%s", (_name, fn, code) => {
    expect(codeOf(fn)).toBe(code);
  });

  it("accepts 0 -> n with the empty-tree root and n -> n", () => {
    expect(codeOf(() => verifyConsistency(0, 5, [], EMPTY_ROOT, root))).toBeUndefined();
    expect(codeOf(() => verifyConsistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT))).toBeUndefined();
    expect(codeOf(() => verifyConsistency(5, 5, [], root, root))).toBeUndefined();
  });
});

describe("53-bit arithmetic", () => {
  const safe = fc.bigInt({ min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER) });

  it("bit helpers agree with BigInt", () => {
    fc.assert(
      fc.property(safe, safe, (a, b) => {
        const x = Number(a);
        const y = Number(b);
        expect(xor(x, y)).toBe(Number(a ^ b));
        expect(bitLen(x)).toBe(a.toString(2).replace(/^0$/, "").length);
        expect(popCount(x)).toBe([...a.toString(2)].filter((c) => c === "1").length);
        if (a > 0n) expect(trailingZeros(x)).toBe(a.toString(2).length - a.toString(2).lastIndexOf("1") - 1);
      }),
    );
  });

  it("proof lengths and plans agree for huge trees", () => {
    fc.assert(
      fc.property(safe, safe, (a, b) => {
        const [lo, hi] = a < b ? [a, b] : [b, a];
        if (hi === 0n) return;
        const index = Number(lo === hi ? lo - 1n : lo);
        const size = Number(hi);
        if (index < 0) return;
        const ids = inclusionNodes(index, size).ids;
        // Every planned node is complete within the tree.
        for (const id of ids) expect((id.index + 1) * 2 ** id.level).toBeLessThanOrEqual(size);
        expect(inclusionProofLength(index, size)).toBeLessThanOrEqual(ids.length);
        expect(consistencyProofLength(index, size)).toBeLessThanOrEqual(consistencyNodes(index, size).ids.length);
      }),
    );
  });

  it("rangeNodes covers [begin, end) exactly with perfect nodes", () => {
    fc.assert(
      fc.property(safe, safe, (a, b) => {
        const [lo, hi] = a < b ? [Number(a), Number(b)] : [Number(b), Number(a)];
        let pos = lo;
        for (const id of rangeNodes(lo, hi)) {
          expect(id.index * 2 ** id.level).toBe(pos);
          pos += 2 ** id.level;
        }
        expect(pos).toBe(hi);
      }),
    );
  });
});
