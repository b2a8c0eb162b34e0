// transparency-dev/merkle test vectors (test/fixtures/merkle), run against
// ledger/verify.ts and cross-checked against the proof generators.
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  EMPTY_ROOT,
  LedgerError,
  appendBatch,
  consistencyProof,
  createMemoryTileStore,
  createTileHashReader,
  EMPTY_FRONTIER,
  hashLeaf,
  inclusionProof,
  merkleRoot,
  proveConsistency,
  proveInclusion,
  verifyConsistency,
  verifyInclusion,
} from "../../ledger/index.js";

const ROOT = fileURLToPath(new URL("../fixtures/merkle/", import.meta.url));

interface InclusionCase {
  leafIdx: number;
  treeSize: number;
  root: string;
  leafHash: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}
interface ConsistencyCase {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith(".json") ? [join(dir, e.name)] : [],
  );
}

function load<T>(sub: string): [string, T][] {
  return walk(join(ROOT, sub))
    .sort()
    .map((f) => [relative(ROOT, f), JSON.parse(readFileSync(f, "utf8")) as T]);
}

const b64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));
const proofOf = (p: string[] | null): Uint8Array[] => (p ?? []).map(b64);
const hex = (u: Uint8Array): string => Buffer.from(u).toString("hex");

const inclusion = load<InclusionCase>("inclusion");
const consistency = load<ConsistencyCase>("consistency");
const roots = JSON.parse(readFileSync(join(ROOT, "roots.json"), "utf8")) as {
  leafInputsHex: string[];
  rootHashesBySizeHex: string[];
};
const leaves = roots.leafInputsHex.map((h) => hashLeaf(Buffer.from(h, "hex")));

// The Go library accepts this case although its roots are 12 bytes long: for
// equal sizes it only compares root1 with root2. ledger/verify.ts requires
// every root to be 32 bytes, so it rejects the case as malformed.
const GO_LENIENT_CASE = "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json";

function expectLedgerError(fn: () => void): LedgerError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LedgerError);
    return err as LedgerError;
  }
  throw new Error("expected a LedgerError");
}

describe("fixture inventory", () => {
  it("has the expected number of vectors", () => {
    expect(inclusion.length).toBe(98);
    expect(consistency.length).toBe(98);
  });

  it("has exactly one accepted case with a hash that is not 32 bytes, the Go-lenient one", () => {
    const lenient = [...inclusion, ...consistency]
      .filter(([, c]) => !c.wantErr)
      .filter(([, c]) => {
        const hashes = "root" in c ? [c.root, c.leafHash] : [c.root1, c.root2];
        return [...hashes, ...(c.proof ?? [])].some((h) => b64(h).length !== 32);
      })
      .map(([name]) => name);
    expect(lenient).toEqual([GO_LENIENT_CASE]);
  });
});

describe("roots.json", () => {
  it.each(roots.rootHashesBySizeHex.map((r, n) => [n, r] as const))("root of size %i", (n, want) => {
    expect(hex(merkleRoot(leaves.slice(0, n)))).toBe(want);
  });

  it("size 0 is the empty root", () => {
    expect(hex(EMPTY_ROOT)).toBe(roots.rootHashesBySizeHex[0]);
  });
});

describe("inclusion vectors", () => {
  it.each(inclusion)("%s", (_name, c) => {
    const run = (): void => verifyInclusion(c.leafIdx, c.treeSize, b64(c.leafHash), proofOf(c.proof), b64(c.root));
    if (c.wantErr) expectLedgerError(run);
    else expect(run).not.toThrow();
  });
});

describe("consistency vectors", () => {
  it.each(consistency.filter(([name]) => name !== GO_LENIENT_CASE))("%s", (_name, c) => {
    const run = (): void => verifyConsistency(c.size1, c.size2, proofOf(c.proof), b64(c.root1), b64(c.root2));
    if (c.wantErr) expectLedgerError(run);
    else expect(run).not.toThrow();
  });

  it(`${GO_LENIENT_CASE}: accepted by Go (wantErr false) but rejected here because the roots are not 32 bytes`, () => {
    const c = consistency.find(([name]) => name === GO_LENIENT_CASE)?.[1] as ConsistencyCase;
    expect(c.wantErr).toBe(false);
    expect(b64(c.root1).length).not.toBe(32);
    const err = expectLedgerError(() =>
      verifyConsistency(c.size1, c.size2, proofOf(c.proof), b64(c.root1), b64(c.root2)),
    );
    expect(err.code).toBe("LEDGER_PROOF_MALFORMED");
  });
});

describe("generators reproduce the happy-path proofs", () => {
  // The vectors' trees are built from the roots.json leaves.
  const happyInclusion = inclusion.filter(([, c]) => !c.wantErr && c.treeSize > 1 && c.treeSize <= 8);
  const happyConsistency = consistency.filter(([, c]) => !c.wantErr && c.size1 < c.size2);

  it.each(happyInclusion)("%s", async (_name, c) => {
    const tree = leaves.slice(0, c.treeSize);
    expect(hex(tree[c.leafIdx] as Uint8Array)).toBe(hex(b64(c.leafHash)));
    expect(inclusionProof(tree, c.leafIdx).map(hex)).toEqual(proofOf(c.proof).map(hex));
    const store = createMemoryTileStore();
    store.writeTiles((await appendBatch(EMPTY_FRONTIER, tree, store)).tiles);
    const reader = createTileHashReader(store, c.treeSize);
    expect((await proveInclusion(reader, c.leafIdx, c.treeSize)).map(hex)).toEqual(proofOf(c.proof).map(hex));
  });

  it.each(happyConsistency)("%s", async (_name, c) => {
    const tree = leaves.slice(0, c.size2);
    expect(consistencyProof(tree, c.size1).map(hex)).toEqual(proofOf(c.proof).map(hex));
    const store = createMemoryTileStore();
    store.writeTiles((await appendBatch(EMPTY_FRONTIER, tree, store)).tiles);
    const reader = createTileHashReader(store, c.size2);
    expect((await proveConsistency(reader, c.size1, c.size2)).map(hex)).toEqual(proofOf(c.proof).map(hex));
  });
});
