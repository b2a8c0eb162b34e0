// Ledger node append benchmark: a fresh 3-node cluster (R3, sync_interval:
// always), 50,000 life-cycle events published to MAIL_EVENTS first, then one
// ledger node (in-process, default batch size and window) timed while it
// drains them into signed blocks. Then proof sizes and generation times:
// receipts read from the node's KV tile store for this log, and the in-memory
// 10^6-entry figures of test/bench/ledger-proofs.ts.
//
//   npm run bench:ledger -- [--json] [--events 50000] [--batch 256] [--million-samples 200]
//
// The last line printed is one JSON object.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { jetstreamManager } from "@nats-io/jetstream";
import { serializeReceipt } from "../../ledger/index.js";
import type { Receipt } from "../../ledger/index.js";
import { createLedgerStore, proveConsistencyBetween, proveMail } from "../../nodes/ledger/index.js";
import type { BlockCommitted } from "../../nodes/ledger/index.js";
import { startTestCluster } from "../helpers/cluster.js";
import { connectAndProvision } from "../helpers/system.js";
import { ledgerIdentity, ledgerKv, publishEvents, startLedger, testEvent } from "../ledger-node/helpers.js";
import { benchCli, cleanupOnSignal } from "./args.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const cli = benchCli("bench:ledger", "usage: npm run bench:ledger -- [--json] [--events 50000] [--batch 256] [--million-samples 200]", {
  json: { type: "boolean", default: false },
  events: { type: "string", default: "50000" },
  batch: { type: "string", default: "256" },
  "million-samples": { type: "string", default: "200" },
});
const o = cli.values;
const N = cli.count("events", 1);
// The ledger node's FEN_LEDGER_BATCH_SIZE range (nodes/config/schema.ts).
cli.count("batch", 1, 4096);
cli.count("million-samples", 1);
const say = (s: string) => { if (!o.json) console.log(s); };
const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Number((s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0).toFixed(2));
};

const cluster = await startTestCluster({ syncInterval: "always" });
cleanupOnSignal(() => cluster.dispose());
try {
  const nc = await connectAndProvision(cluster.urls);
  const id = ledgerIdentity("bench.fastemailnet/ledger");
  say(`publishing ${N} events to MAIL_EVENTS (R3, sync_interval: always)…`);
  const p0 = performance.now();
  for (let at = 0; at < N; at += 5000) await publishEvents(nc, "bench", at, Math.min(N, at + 5000), 512);
  const publishS = (performance.now() - p0) / 1000;
  say(`published in ${publishS.toFixed(1)} s (${Math.round(N / publishS)} events/s)`);

  const blocks: BlockCommitted[] = [];
  let appended = 0;
  let done!: () => void;
  const drained = new Promise<void>((r) => (done = r));
  const t0 = performance.now();
  const node = await startLedger(nc, id, { FEN_LEDGER_BATCH_SIZE: o.batch }, (b) => {
    blocks.push(b);
    appended += b.appended;
    if (appended >= N) done();
  });
  await drained;
  const drainS = (performance.now() - t0) / 1000;
  await node.drain();
  const committed = blocks.filter((b) => b.block);
  say(`appended ${appended} events in ${committed.length} blocks in ${drainS.toFixed(2)} s`);

  // Proofs served from the KV tile store of this log.
  const store = createLedgerStore(await ledgerKv(nc), await jetstreamManager(nc));
  const proofMs: number[] = [];
  const receiptBytes: number[] = [];
  for (let i = 0; i < 50; i++) {
    const ev = testEvent("bench", Math.floor((i * 7919 * 5) % N));
    const t = performance.now();
    const reply = await proveMail(store, ev.mailId);
    proofMs.push(performance.now() - t);
    receiptBytes.push(Buffer.byteLength(serializeReceipt(reply.receipt as Receipt)));
  }
  const c = performance.now();
  const cons = await proveConsistencyBetween(store, Math.floor(N / 3));
  const consistencyMs = performance.now() - c;
  await nc.close();

  say("building a 10^6-entry log in memory for proof figures (test/bench/ledger-proofs.ts)…");
  const million = spawnSync(process.execPath, ["--import", "tsx", path.join(root, "test/bench/ledger-proofs.ts"), "1000000", "256", o["million-samples"]], {
    cwd: root, encoding: "utf8", maxBuffer: 16 * 1024 * 1024,
  });
  const m = JSON.parse(million.stdout) as {
    inclusion: { proofBytes: { median: number; max: number }; generateMs: { median: number; p99: number }; verifyMs: { median: number } };
    consistency: { proofBytes: { median: number; max: number }; generateMs: { median: number; p99: number }; verifyMs: { median: number } };
  };

  const result = {
    bench: "ledger-append",
    node: process.version,
    cluster: { servers: 3, replicas: 3, syncInterval: "always" },
    events: N,
    batchSize: Number(o.batch),
    publish: { seconds: Number(publishS.toFixed(2)), eventsPerSecond: Math.round(N / publishS) },
    append: {
      seconds: Number(drainS.toFixed(2)),
      eventsPerSecond: Math.round(appended / drainS),
      blocks: committed.length,
      blocksPerSecond: Number((committed.length / drainS).toFixed(1)),
      eventsPerBlock: Number((appended / committed.length).toFixed(1)),
      commitMs: { p50: pct(committed.map((b) => b.commitMs), 0.5), p95: pct(committed.map((b) => b.commitMs), 0.95) },
      rollForwardWaitMs: { p50: pct(committed.map((b) => b.waitMs), 0.5), p95: pct(committed.map((b) => b.waitMs), 0.95) },
      ackMs: { p50: pct(committed.map((b) => b.ackMs), 0.5), p95: pct(committed.map((b) => b.ackMs), 0.95) },
      blockTotalMs: { p50: pct(committed.map((b) => b.totalMs), 0.5), p95: pct(committed.map((b) => b.totalMs), 0.95) },
      headSwapsLost: blocks.reduce((n, b) => n + b.conflicts, 0),
    },
    kvProofs: {
      treeSize: N,
      receiptBytes: { p50: pct(receiptBytes, 0.5), entriesPerReceipt: 5 },
      receiptMs: { p50: pct(proofMs, 0.5), p95: pct(proofMs, 0.95) },
      consistency: { from: Math.floor(N / 3), to: cons.to, proofBytes: cons.proof.length * 32, ms: Number(consistencyMs.toFixed(2)) },
    },
    millionEntryLog: {
      inclusionProofBytes: m.inclusion.proofBytes.median,
      inclusionGenerateMs: m.inclusion.generateMs.median,
      inclusionVerifyMs: m.inclusion.verifyMs.median,
      consistencyProofBytes: m.consistency.proofBytes.median,
      consistencyGenerateMs: m.consistency.generateMs.median,
      consistencyVerifyMs: m.consistency.verifyMs.median,
    },
    target: { eventsPerSecond: 5000, met: appended / drainS >= 5000 },
  };
  if (!o.json) console.log(JSON.stringify(result, null, 2));
  console.log(JSON.stringify(result));
} finally {
  await cluster.dispose();
}
