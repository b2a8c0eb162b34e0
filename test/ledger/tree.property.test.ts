// Property tests over random trees: generated proofs verify, tiled and
// reference generators agree, and any single flipped bit is rejected.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EMPTY_FRONTIER,
  LedgerError,
  appendBatch,
  consistencyProof,
  createMemoryTileStore,
  createTileHashReader,
  frontierRoot,
  appendLeaves,
  hashLeaf,
  inclusionProof,
  merkleRoot,
  proveConsistency,
  proveInclusion,
  verifyConsistency,
  verifyInclusion,
  type HashReader,
} from "../../ledger/index.js";

const hex = (u: Uint8Array): string => Buffer.from(u).toString("hex");

function leavesOf(n: number, salt: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => hashLeaf(Buffer.from(`leaf ${salt}/${i}`)));
}

/** Tiled tree of `leaves` plus the root of every prefix, for sizes 0..n. */
async function build(leaves: Uint8Array[]): Promise<{ reader: HashReader; roots: Uint8Array[] }> {
  const store = createMemoryTileStore();
  const result = await appendBatch(EMPTY_FRONTIER, leaves, store);
  store.writeTiles(result.tiles);
  const roots = [frontierRoot(EMPTY_FRONTIER)];
  let f = EMPTY_FRONTIER;
  for (const leaf of leaves) {
    f = appendLeaves(f, [leaf]);
    roots.push(frontierRoot(f));
  }
  expect(hex(result.root)).toBe(hex(roots[leaves.length] as Uint8Array));
  return { reader: createTileHashReader(store, leaves.length), roots };
}

function flip(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  const at = Math.floor(bit / 8) % out.length;
  out[at] = (out[at] as number) ^ (1 << bit % 8);
  return out;
}

function rejects(fn: () => void): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    return err instanceof LedgerError;
  }
}

const size = fc.integer({ min: 1, max: 300 });
const salt = fc.nat();

describe("random trees", () => {
  it("every leaf's inclusion proof verifies, and tiled proofs equal the RFC reference", async () => {
    await fc.assert(
      fc.asyncProperty(size, salt, async (n, s) => {
        const leaves = leavesOf(n, s);
        const { reader, roots } = await build(leaves);
        const root = roots[n] as Uint8Array;
        expect(hex(merkleRoot(leaves))).toBe(hex(root));
        for (let i = 0; i < n; i++) {
          const proof = await proveInclusion(reader, i, n);
          verifyInclusion(i, n, leaves[i] as Uint8Array, proof, root);
          if (i % 17 === 0 || i === n - 1) expect(proof.map(hex)).toEqual(inclusionProof(leaves, i).map(hex));
        }
      }),
      { numRuns: 25 },
    );
  });

  it("every pair of sizes m <= n is consistent, and tiled proofs equal the RFC reference", async () => {
    await fc.assert(
      fc.asyncProperty(size, salt, async (n, s) => {
        const leaves = leavesOf(n, s);
        const { reader, roots } = await build(leaves);
        for (let m = 0; m <= n; m++) {
          const proof = await proveConsistency(reader, m, n);
          verifyConsistency(m, n, proof, roots[m] as Uint8Array, roots[n] as Uint8Array);
          if (m % 13 === 0 || m === n - 1) expect(proof.map(hex)).toEqual(consistencyProof(leaves, m).map(hex));
        }
      }),
      { numRuns: 25 },
    );
  });

  it("all pairs m <= n of every size up to 64 are consistent", async () => {
    const leaves = leavesOf(64, 7);
    const store = createMemoryTileStore();
    store.writeTiles((await appendBatch(EMPTY_FRONTIER, leaves, store)).tiles);
    for (let n = 1; n <= 64; n++) {
      const reader = createTileHashReader(store, n);
      const rootN = merkleRoot(leaves.slice(0, n));
      for (let m = 0; m <= n; m++) {
        const proof = await proveConsistency(reader, m, n);
        verifyConsistency(m, n, proof, merkleRoot(leaves.slice(0, m)), rootN);
      }
    }
  });

  it("flipping one bit of an inclusion proof hash, the root or the leaf fails verification", async () => {
    await fc.assert(
      fc.asyncProperty(size, salt, fc.nat(), fc.nat(), fc.nat(255), async (n, s, i0, which, bit) => {
        const leaves = leavesOf(n, s);
        const { reader, roots } = await build(leaves);
        const i = i0 % n;
        const root = roots[n] as Uint8Array;
        const leaf = leaves[i] as Uint8Array;
        const proof = await proveInclusion(reader, i, n);
        expect(rejects(() => verifyInclusion(i, n, leaf, proof, flip(root, bit)))).toBe(true);
        expect(rejects(() => verifyInclusion(i, n, flip(leaf, bit), proof, root))).toBe(true);
        if (proof.length > 0) {
          const k = which % proof.length;
          const bad = proof.map((h, j) => (j === k ? flip(h, bit) : h));
          expect(rejects(() => verifyInclusion(i, n, leaf, bad, root))).toBe(true);
        }
        // Same proof, any other index of the same tree size.
        const other = (i + 1 + (which % Math.max(1, n - 1))) % n;
        if (other !== i) expect(rejects(() => verifyInclusion(other, n, leaf, proof, root))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it("flipping one bit of a consistency proof hash or either root fails verification", async () => {
    await fc.assert(
      fc.asyncProperty(size, salt, fc.nat(), fc.nat(), fc.nat(255), async (n, s, m0, which, bit) => {
        const leaves = leavesOf(n, s);
        const { reader, roots } = await build(leaves);
        const m = m0 % (n + 1);
        const r1 = roots[m] as Uint8Array;
        const r2 = roots[n] as Uint8Array;
        const proof = await proveConsistency(reader, m, n);
        expect(rejects(() => verifyConsistency(m, n, proof, flip(r1, bit), r2))).toBe(true);
        // Every tree extends the empty one, so with m = 0 root2 is not constrained.
        if (m > 0) expect(rejects(() => verifyConsistency(m, n, proof, r1, flip(r2, bit)))).toBe(true);
        if (proof.length > 0) {
          const k = which % proof.length;
          const bad = proof.map((h, j) => (j === k ? flip(h, bit) : h));
          expect(rejects(() => verifyConsistency(m, n, bad, r1, r2))).toBe(true);
          expect(rejects(() => verifyConsistency(m, n, proof.slice(1), r1, r2))).toBe(true);
          expect(rejects(() => verifyConsistency(m, n, [...proof, proof[0] as Uint8Array], r1, r2))).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });
});
