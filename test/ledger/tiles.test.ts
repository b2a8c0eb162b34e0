// Tiled storage, incremental appends and frontier persistence.
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import {
  EMPTY_FRONTIER,
  LedgerError,
  TILE_WIDTH,
  appendBatch,
  changedTiles,
  consistencyNodes,
  consistencyProof,
  createMemoryTileStore,
  createTileHashReader,
  decodeFrontier,
  encodeFrontier,
  frontierRoot,
  hashLeaf,
  inclusionNodes,
  inclusionProof,
  loadFrontier,
  merkleRoot,
  proveConsistency,
  proveInclusion,
  tilePath,
  verifyConsistency,
  verifyInclusion,
  type AppendResult,
  type Frontier,
  type HashReader,
  type TileReader,
} from "../../ledger/index.js";

const hex = (u: Uint8Array): string => Buffer.from(u).toString("hex");
const leavesOf = (n: number, from = 0): Uint8Array[] =>
  Array.from({ length: n }, (_, i) => hashLeaf(Buffer.from(`entry ${from + i}`)));

describe("tilePath (C2SP tlog-tiles)", () => {
  it.each([
    [{ level: 0, index: 0, width: 256 }, "tile/0/000"],
    [{ level: 0, index: 1234067, width: 256 }, "tile/0/x001/x234/067"],
    [{ level: 1, index: 5, width: 17 }, "tile/1/005.p/17"],
    [{ level: 2, index: 1000, width: 1 }, "tile/2/x001/000.p/1"],
  ])("%j -> %s", (id, path) => {
    expect(tilePath(id)).toBe(path);
  });

  it.each([{ level: 0, index: 0, width: 0 }, { level: 0, index: -1, width: 1 }, { level: 0, index: 0, width: 257 }])(
    "rejects %j",
    (id) => {
      expect(() => tilePath(id)).toThrow(LedgerError);
    },
  );
});

describe("changedTiles", () => {
  it("lists partial and full tiles per level", () => {
    expect(changedTiles(0, 1)).toEqual([{ level: 0, index: 0, width: 1 }]);
    expect(changedTiles(10, 300)).toEqual([
      { level: 0, index: 0, width: 256 },
      { level: 0, index: 1, width: 44 },
      { level: 1, index: 0, width: 1 },
    ]);
    expect(changedTiles(256, 256)).toEqual([]);
    expect(changedTiles(256, 257)).toEqual([{ level: 0, index: 1, width: 1 }]);
    expect(() => changedTiles(5, 4)).toThrow(LedgerError);
  });
});

describe("appendBatch", () => {
  it("builds the same tiles, root and frontier in one batch or in many", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 700 }), { minLength: 1, maxLength: 6 }), async (batches) => {
        const total = batches.reduce((a, b) => a + b, 0);
        const leaves = leavesOf(total);
        const one = createMemoryTileStore();
        const whole = await appendBatch(EMPTY_FRONTIER, leaves, one);
        one.writeTiles(whole.tiles);

        const many = createMemoryTileStore();
        let f: Frontier = EMPTY_FRONTIER;
        let at = 0;
        for (const n of batches) {
          const r = await appendBatch(f, leaves.slice(at, at + n), many);
          expect(r.oldSize).toBe(at);
          many.writeTiles(r.tiles);
          at += n;
          // A restarted writer reloads its frontier from tiles.
          const reloaded = await loadFrontier(createTileHashReader(many, at), at);
          expect(reloaded.hashes.map(hex)).toEqual(r.frontier.hashes.map(hex));
          f = decodeFrontier(encodeFrontier(r.frontier));
        }
        expect(hex(frontierRoot(f))).toBe(hex(whole.root));
        expect(hex(whole.root)).toBe(hex(merkleRoot(leaves)));
        const ids = changedTiles(0, total);
        const a = await one.readTiles(ids);
        const b = await many.readTiles(ids);
        expect(b.map(hex)).toEqual(a.map(hex));
        expect(many.size).toBe(ids.length);
      }),
      { numRuns: 30 },
    );
  });

  it("rejects malformed leaf hashes", async () => {
    await expect(appendBatch(EMPTY_FRONTIER, [new Uint8Array(31)], createMemoryTileStore())).rejects.toMatchObject({
      code: "LEDGER_HASH_MALFORMED",
    });
  });
});

describe("proofs across tile levels (70 000 leaves, three tile levels)", () => {
  const n = 70_000;
  const firstPart = 65_537;
  const leaves = leavesOf(n);
  const store = createMemoryTileStore();
  let r1: AppendResult;
  let r2: AppendResult;
  let reader: HashReader;

  beforeAll(async () => {
    r1 = await appendBatch(EMPTY_FRONTIER, leaves.slice(0, firstPart), store);
    store.writeTiles(r1.tiles);
    r2 = await appendBatch(r1.frontier, leaves.slice(firstPart), store);
    store.writeTiles(r2.tiles);
    reader = createTileHashReader(store, n);
  });

  it("matches the reference root", () => {
    expect(hex(r2.root)).toBe(hex(merkleRoot(leaves)));
  });

  it.each([0, 1, 255, 256, 65_535, 65_536, 65_537, 69_999, 12_345])("inclusion of leaf %i", async (i) => {
    const proof = await proveInclusion(reader, i, n);
    expect(proof.map(hex)).toEqual(inclusionProof(leaves, i).map(hex));
    verifyInclusion(i, n, leaves[i] as Uint8Array, proof, r2.root);
  });

  it.each([1, 256, 257, 65_536, firstPart, 69_000, 69_999])("consistency %i -> 70000", async (m) => {
    const proof = await proveConsistency(reader, m, n);
    expect(proof.map(hex)).toEqual(consistencyProof(leaves, m).map(hex));
    verifyConsistency(m, n, proof, merkleRoot(leaves.slice(0, m)), r2.root);
  });

  it("proves against an older size of the same tiles", async () => {
    const old = createTileHashReader(store, firstPart);
    const proof = await proveInclusion(old, 300, firstPart);
    verifyInclusion(300, firstPart, leaves[300] as Uint8Array, proof, r1.root);
  });
});

describe("planning and storage errors", () => {
  it("plans at most 2·log2(n) node reads", () => {
    for (const [i, n] of [
      [0, 1],
      [5, 8],
      [999_999, 1_000_000],
      [2 ** 40 + 3, 2 ** 41 - 1],
    ] as const) {
      expect(inclusionNodes(i, n).ids.length).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(n + 1)));
    }
    expect(consistencyNodes(0, 10).ids).toEqual([]);
    expect(consistencyNodes(10, 10).ids).toEqual([]);
    expect(() => inclusionNodes(3, 3)).toThrow(LedgerError);
    expect(() => consistencyNodes(4, 3)).toThrow(LedgerError);
    expect(() => inclusionNodes(0.5, 3)).toThrow(LedgerError);
  });

  it("wraps reader failures as transient LEDGER_STORAGE_FAILED with the cause", async () => {
    const cause = new Error("kv timeout");
    const failing: TileReader = { readTiles: () => Promise.reject(cause) };
    const err = await proveInclusion(createTileHashReader(failing, 10), 3, 10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LedgerError);
    expect(err).toMatchObject({ code: "LEDGER_STORAGE_FAILED", retry: "transient", cause });
  });

  it("rejects short tiles and nodes outside the tree", async () => {
    const short: TileReader = { readTiles: async (ids) => ids.map(() => new Uint8Array(32)) };
    await expect(proveInclusion(createTileHashReader(short, 10), 3, 10)).rejects.toMatchObject({
      code: "LEDGER_STORAGE_FAILED",
    });
    const store = createMemoryTileStore();
    const reader = createTileHashReader(store, 4);
    await expect(reader.readHashes([{ level: 3, index: 0 }])).rejects.toMatchObject({ code: "LEDGER_RANGE_INVALID" });
    await expect(proveInclusion(reader, 1, 4)).rejects.toMatchObject({ code: "LEDGER_STORAGE_FAILED" });
  });

  it("decodeFrontier is strict", () => {
    const f = encodeFrontier({ size: 3, hashes: leavesOf(2) });
    expect(decodeFrontier(f).size).toBe(3);
    for (const bad of [f.subarray(0, f.length - 1), Uint8Array.of(2, ...f.subarray(1)), new Uint8Array(0)]) {
      expect(() => decodeFrontier(bad)).toThrow(expect.objectContaining({ code: "LEDGER_FRONTIER_MALFORMED" }));
    }
    const huge = f.slice();
    huge.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 1);
    expect(() => decodeFrontier(huge)).toThrow(LedgerError);
    expect(() => encodeFrontier({ size: 3, hashes: leavesOf(1) })).toThrow(LedgerError);
  });

  it("a full tile is served where a partial one is asked for", async () => {
    const store = createMemoryTileStore();
    const leaves = leavesOf(TILE_WIDTH);
    store.writeTiles((await appendBatch(EMPTY_FRONTIER, leaves, store)).tiles);
    const proof = await proveInclusion(createTileHashReader(store, 100), 42, 100);
    verifyInclusion(42, 100, leaves[42] as Uint8Array, proof, merkleRoot(leaves.slice(0, 100)));
  });
});
