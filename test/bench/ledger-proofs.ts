// Micro benchmark of the ledger's tiled Merkle tree: builds a 10^6-entry log
// in memory through appendBatch (blocks of 1000 leaves, as a ledger node
// would), then times inclusion and consistency proof generation (tile reads
// + recomputation) and verification. Prints one JSON object.
//
//   npx tsx test/bench/ledger-proofs.ts [entries] [blockSize] [samples]
import { performance } from "node:perf_hooks";
import {
  EMPTY_FRONTIER,
  MailState,
  appendBatch,
  createMemoryTileStore,
  createTileHashReader,
  encodeEntry,
  frontierRoot,
  hashLeaf,
  loadFrontier,
  proveConsistency,
  proveInclusion,
  verifyConsistency,
  verifyInclusion,
  type Frontier,
} from "../../ledger/index.js";

const N = Number(process.argv[2] ?? 1_000_000);
const BLOCK = Number(process.argv[3] ?? 1000);
const SAMPLES = Number(process.argv[4] ?? 1000);

// Deterministic pseudo-random indexes (xorshift), so runs are comparable.
let state = 0x2545f491;
function rand(max: number): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) % max;
}

function stats(xs: number[]): { median: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => Number((s[Math.min(s.length - 1, Math.floor(q * s.length))] as number).toFixed(4));
  return { median: at(0.5), p99: at(0.99), max: at(1) };
}

function leafData(i: number): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(i, 0);
  b.write("fastemailnet ledger benchmark entry", 4);
  return b;
}

async function main(): Promise<void> {
  // Cost of turning an event into a leaf (encode + hash), measured on a
  // sample after a warm-up so the JIT has compiled the encoder.
  const ENC = 10_000;
  const encodeOne = (i: number): Uint8Array =>
    hashLeaf(
      encodeEntry({
        mailId: `mail-${i}`,
        state: MailState.Sent,
        attempt: 1,
        at: new Date(Date.UTC(2025, 0, 1, 0, 0, i % 60)).toISOString(),
        eventId: `event-${i}`,
        recipients: ["a".repeat(64)],
        detail: { smtp: { code: 250, enhanced: "2.0.0", message: "ok" } },
      }),
    );
  for (let i = 0; i < 2000; i++) encodeOne(i);
  const encStart = performance.now();
  for (let i = 0; i < ENC; i++) encodeOne(i);
  const encodeUsPerEntry = ((performance.now() - encStart) * 1000) / ENC;

  const store = createMemoryTileStore();
  let frontier: Frontier = EMPTY_FRONTIER;
  const roots = new Map<number, Uint8Array>();
  const leaves: Uint8Array[] = new Array(N);
  const appendMs: number[] = [];
  const buildStart = performance.now();
  for (let at = 0; at < N; at += BLOCK) {
    const block: Uint8Array[] = [];
    for (let i = at; i < Math.min(N, at + BLOCK); i++) {
      const h = hashLeaf(leafData(i));
      leaves[i] = h;
      block.push(h);
    }
    const t = performance.now();
    const r = await appendBatch(frontier, block, store);
    store.writeTiles(r.tiles);
    appendMs.push(performance.now() - t);
    frontier = r.frontier;
    roots.set(frontier.size, r.root);
  }
  const buildMs = performance.now() - buildStart;
  const root = frontierRoot(frontier);
  const reader = createTileHashReader(store, N);

  const t0 = performance.now();
  await loadFrontier(reader, N);
  const loadFrontierMs = performance.now() - t0;

  const incGen: number[] = [];
  const incVer: number[] = [];
  const incBytes: number[] = [];
  for (let s = 0; s < SAMPLES; s++) {
    const i = rand(N);
    let t = performance.now();
    const proof = await proveInclusion(reader, i, N);
    incGen.push(performance.now() - t);
    t = performance.now();
    verifyInclusion(i, N, leaves[i] as Uint8Array, proof, root);
    incVer.push(performance.now() - t);
    incBytes.push(proof.length * 32);
  }

  // Consistency from earlier checkpoints (block boundaries) to the head.
  const sizes = [...roots.keys()];
  const conGen: number[] = [];
  const conVer: number[] = [];
  const conBytes: number[] = [];
  for (let s = 0; s < SAMPLES; s++) {
    const m = sizes[rand(sizes.length)] as number;
    let t = performance.now();
    const proof = await proveConsistency(reader, m, N);
    conGen.push(performance.now() - t);
    t = performance.now();
    verifyConsistency(m, N, proof, roots.get(m) as Uint8Array, root);
    conVer.push(performance.now() - t);
    conBytes.push(proof.length * 32);
  }

  const out = {
    entries: N,
    blockSize: BLOCK,
    samples: SAMPLES,
    node: process.version,
    buildMs: Math.round(buildMs),
    appendBatchMs: stats(appendMs),
    tilesStored: store.size,
    encodeAndHashUsPerEntry: Number(encodeUsPerEntry.toFixed(2)),
    loadFrontierMs: Number(loadFrontierMs.toFixed(3)),
    inclusion: {
      proofBytes: stats(incBytes),
      generateMs: stats(incGen),
      verifyMs: stats(incVer),
    },
    consistency: {
      proofBytes: stats(conBytes),
      generateMs: stats(conGen),
      verifyMs: stats(conVer),
    },
  };
  console.log(JSON.stringify(out, null, 2));
}

await main();
