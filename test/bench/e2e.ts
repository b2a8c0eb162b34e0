/**
 * End-to-end benchmark (a script, not a test): N mails of B bytes submitted
 * over NATS by concurrent publishers to a real 3-node cluster
 * (sync_interval: always), delivered by two processing nodes (child
 * processes, as in production) to Postfix's smtp-sink, with the ledger node
 * folding every life-cycle event as in `npm start`; then, in the same
 * run on the same machine, Postfix relaying the same number of mails of the
 * same size to the same kind of sink (test/bench/peers/postfix-relay-bench).
 *
 * usage (npm run bench -- --help): npm run bench -- [--mails 5000] [--bytes 2000] [--publishers 64] [--sync always|1s] [--no-model] [--no-ledger] [--no-peer] [--json]
 *                         [--pool N] [--concurrency N]   (per processing node; default: the nodes' configured defaults)
 *                         [--profile DIR]   (V8 CPU profiles of the nodes, and 10 s Go CPU profiles of the nats-servers
 *                                            from the middle of the run: `go tool pprof -top .tools/bin/nats-server DIR/nats-server-n1.pprof`)
 *                         [--logs DIR]      (keep each node's JSON log; the result counts warnings and errors either way)
 *                         [--fsyncs]        (counts fsync calls per mail under strace, ours by file kind and the
 *                                            peer's; strace slows both, so rates from such a run are not quoted)
 * Last line: one JSON object with mails, delivered, per_second, p50_ms,
 * p99_ms, peer_per_second and ratio; `ledger_lag_ms` is how long after the
 * last delivery the ledger had every event of the run in a committed block.
 */
import { execFile, spawn } from "node:child_process";
import { copyFileSync, openSync } from "node:fs";
import type { ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Codecs, Names, ServiceSubjects, mailIdOfSubject, stateEventsFilter } from "../../protocol/index.js";
import type { SubmitRequest } from "../../protocol/index.js";
import { callService, waitForService } from "../../nodes/common/rpc.js";
import { freePort, startCluster } from "../../nodes/local/nats-cluster.js";
import { generateNoteKeyPair } from "../../ledger/index.js";
import { provision } from "../../nodes/provision/index.js";
import { NATS_SERVER_BIN } from "../helpers/cluster.js";
import { systemClock } from "../../nodes/common/clock.js";
import { ProcessingKeys, loadConfig } from "../../nodes/config/index.js";
import { ensureSmtpSink } from "./peers/postfix.js";
import { benchCli, cleanupOnSignal } from "./args.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** CPU seconds a process has used so far, from /proc: user + system, and system (kernel) alone. */
async function cpuSeconds(pid: number | undefined): Promise<{ total: number; system: number }> {
  if (!pid) return { total: NaN, system: NaN };
  try {
    const stat = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
    return { total: (Number(stat[11]) + Number(stat[12])) / 100, system: Number(stat[12]) / 100 };
  } catch {
    return { total: NaN, system: NaN };
  }
}

const USAGE = `usage: npm run bench -- [--mails 5000] [--bytes 2000] [--publishers 64] [--sync always|1s] [--no-model] [--no-ledger] [--no-peer] [--json]
                        [--pool N] [--concurrency N]   (per processing node; default: the nodes' configured defaults)
                        [--profile DIR] [--logs DIR] [--fsyncs]`;
// Checked before anything starts: a typo must not cost a cluster start (or a minute of the machine).
const cli = benchCli("bench", USAGE, {
  mails: { type: "string", default: "5000" }, bytes: { type: "string", default: "2000" },
  publishers: { type: "string", default: "64" }, sync: { type: "string", default: "always" },
  "no-peer": { type: "boolean", default: false }, json: { type: "boolean", default: false },
  // The processing nodes classify with the committed model, as in npm start.
  "no-model": { type: "boolean", default: false },
  "no-ledger": { type: "boolean", default: false },
  // Unset: the processing nodes' configured defaults (FEN_CONCURRENCY, FEN_SMTP_POOL_SIZE), as in npm start.
  concurrency: { type: "string" }, pool: { type: "string" },
  profile: { type: "string" },
  fsyncs: { type: "boolean", default: false },
  logs: { type: "string" },
});
const a = cli.values;
const N = cli.count("mails", 1), BYTES = cli.count("bytes", 1), PUBLISHERS = cli.count("publishers", 1);
// nats-server's sync_interval: "always" or a Go duration.
if (!/^(always|[0-9]+(ms|s|m|h))$/.test(a.sync)) cli.fail(`--sync must be "always" or a duration such as 1s or 2m (got ${JSON.stringify(a.sync)})`);
// --pool and --concurrency go to the nodes as FEN_SMTP_POOL_SIZE / FEN_CONCURRENCY: validated as the nodes will
// (an out-of-range --pool is refused here, with the key named).
const nodeOverrides: Record<string, string> = {
  ...(a["no-model"] ? { FEN_MODEL_DIR: "none" } : {}), ...(a.concurrency ? { FEN_CONCURRENCY: a.concurrency } : {}), ...(a.pool ? { FEN_SMTP_POOL_SIZE: a.pool } : {}),
};
const processingConfig = (() => {
  try {
    return loadConfig(ProcessingKeys, { ...process.env, ...nodeOverrides });
  } catch (err) {
    return cli.fail((err as Error).message);
  }
})();
const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/**
 * fsync calls of one traced process, by what was synced: a stream's message
 * blocks (by stream name), a consumer's state file, or the Raft log of a
 * replicated stream/consumer ($SYS/_js_). Reads `strace -y -e trace=fsync` output.
 */
function fsyncsByKind(trace: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of trace.matchAll(/\b(?:fsync|fdatasync)\(\d+<([^>]*)>/g)) {
    const file = m[1]!;
    const kind = /\/streams\/([^/]+)\/msgs\//.exec(file)?.[1]
      ?? (/\/streams\/[^/]+\/obs\//.test(file) ? "consumer state" : /\/_js_\//.test(file) ? "raft log" : "other");
    out[kind] = (out[kind] ?? 0) + 1;
  }
  return out;
}

/** Starts `strace` on running processes; `stop()` detaches and returns each one's output. */
function traceFsyncs(pids: number[], dir: string): { stop(): Promise<string[]> } {
  const files = pids.map((pid) => path.join(dir, `fsync-${pid}.trace`));
  const tracers = pids.map((pid, i) => spawn("strace", ["-f", "-y", "-e", "trace=fsync,fdatasync", "-o", files[i]!, "-p", String(pid)], { stdio: "ignore" }));
  return {
    async stop() {
      await Promise.all(tracers.map((t) => new Promise((r) => { t.once("exit", r); t.kill("SIGINT"); })));
      return Promise.all(files.map((f) => readFile(f, "utf8")));
    },
  };
}

await ensureSmtpSink(log);

const dir = await mkdtemp(path.join(os.tmpdir(), "fen-bench-"));
const children: ChildProcess[] = [];
const cluster = await startCluster({ binary: NATS_SERVER_BIN, dir, size: 3, syncInterval: a.sync, profiling: a.profile !== undefined });
cleanupOnSignal(async () => {
  for (const c of children) c.kill("SIGKILL");
  await cluster.stop().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});
try {
  await cluster.waitReady();
  const nc = await connect({ servers: cluster.urls });
  await provision(nc, await jetstreamManager(nc), { replicas: 3 }, { clock: systemClock });

  // Postfix's smtp-sink: accepts and discards, like the peer's sink.
  const sinkPort = await freePort();
  const sink = spawn("smtp-sink", ["-u", "postfix", `127.0.0.1:${sinkPort}`, "1000"], { stdio: "ignore" });
  children.push(sink);

  const env = {
    ...process.env, FEN_NATS_URLS: cluster.urls.join(","), FEN_SMTP_PORT: String(sinkPort), FEN_LOG_LEVEL: "warn",
    ...nodeOverrides,
  };
  const named: { name: string; pid: number | undefined }[] = cluster.servers.map((sv) => ({ name: `nats-server ${sv.name}`, pid: sv.process?.pid }));
  named.push({ name: "smtp-sink", pid: sink.pid });
  const nodeNames: string[] = [];
  const node = (role: string, name: string, extra: Record<string, string> = {}) => {
    const prof = a.profile ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(a.profile, name)}`] : [];
    const c = spawn(process.execPath, [...prof, "--import", "tsx", path.join(root, `nodes/${role}/main.ts`)], {
      cwd: root, env: { ...env, ...extra, FEN_NODE_NAME: name }, stdio: ["ignore", openSync(path.join(dir, `${name}.log`), "w"), "inherit"],
    });
    children.push(c);
    named.push({ name, pid: c.pid });
    nodeNames.push(name);
  };
  node("gateway", "bench-gw");
  node("processing", "bench-p1");
  node("processing", "bench-p2");
  if (!a["no-ledger"]) {
    const origin = "bench.fastemailnet.local/ledger";
    node("ledger", "bench-ledger", {
      FEN_LEDGER_ORIGIN: origin, FEN_LEDGER_SIGNING_KEY: generateNoteKeyPair(origin).signerKey,
      FEN_LEDGER_COMMITMENT_KEY: "00".repeat(32),
    });
  }
  // Wait for the gateway service to answer.
  if (!(await waitForService(nc, Names.gatewayService, { attempts: 102, everyMs: 100 }))) throw new Error("gateway did not start");
  await sleep(1500); // let the processing nodes attach their pull consumers

  // Delivery times from the Sent events (core subscription on the stream subject).
  // A mail can be Sent before its submit reply reaches the publisher (the
  // gateway answers after the work item's ack and its status record, and a
  // processing node may deliver in between): both orders are matched.
  const submittedAt = new Map<string, number>();
  const sentEarly = new Map<string, number>();
  const latencies: number[] = [];
  let delivered = 0;
  let lastDelivery = 0;
  const deliveredAt = (id: string, t0: number, t1: number) => {
    lastDelivery = Math.max(lastDelivery, t1);
    latencies.push(t1 - t0);
    delivered++;
  };
  const sub = nc.subscribe(stateEventsFilter("Sent"));
  (async () => {
    for await (const m of sub) {
      const id = mailIdOfSubject(m.subject);
      const now = performance.now();
      const t0 = submittedAt.get(id);
      if (t0 === undefined) { if (!sentEarly.has(id)) sentEarly.set(id, now); continue; }
      submittedAt.delete(id);
      deliveredAt(id, t0, now);
    }
  })();

  const tracer = a.fsyncs ? traceFsyncs(cluster.servers.map((sv) => sv.process!.pid!), dir) : undefined;
  if (tracer) await sleep(1000); // strace attaches to every thread
  const cpu0 = await Promise.all(named.map((n) => cpuSeconds(n.pid)));
  const benchCpu0 = process.cpuUsage();
  const body = "x".repeat(Math.max(0, BYTES - 300)).replace(/(.{76})/g, "$1\n");
  const runId = Date.now().toString(36);
  let next = 0;
  let failed = 0;
  const start = performance.now();
  // Go CPU profiles of the servers, 10 s from 2 s into the run (a 5,000-mail run lasts about 20 s).
  const serverProfiles = a.profile === undefined ? Promise.resolve() : sleep(2000).then(() => Promise.all(cluster.servers.map(async (sv) => {
    const res = await fetch(`http://127.0.0.1:${sv.profPort}/debug/pprof/profile?seconds=10`);
    const file = path.resolve(a.profile!, `nats-server-${sv.name}.pprof`);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, Buffer.from(await res.arrayBuffer()));
    log(`Go CPU profile of ${sv.name}: ${file}`);
  }))).catch((err: unknown) => log(`server profiles failed: ${String(err)}`));
  const progress = setInterval(() => log(`  submitted ${next}/${N}, delivered ${delivered}/${N}`), 2000);
  await Promise.all(Array.from({ length: PUBLISHERS }, async () => {
    while (next < N) {
      const i = next++;
      const req: SubmitRequest = {
        kind: "mail.submit", v: 1, idempotencyKey: `bench-${runId}-${i}`,
        mail: { from: "bench@example.org", to: ["sink@example.net"], cc: [], bcc: [], subject: `bench ${i}`, text: body, headers: {}, attachments: [] },
      };
      const t0 = performance.now();
      try {
        const r = await callService(nc, ServiceSubjects.submit, Codecs.submitRequest, req, Codecs.submitReply, 30_000);
        const early = sentEarly.get(r.mailId);
        if (early === undefined) submittedAt.set(r.mailId, t0);
        else { sentEarly.delete(r.mailId); deliveredAt(r.mailId, t0, early); }
      } catch (err) {
        failed++;
        if (failed < 5) log(`submit failed: ${String(err)}`);
      }
    }
  }));
  const submitDone = performance.now();
  await serverProfiles;
  const deadline = Date.now() + 300_000;
  while (delivered + failed < N && Date.now() < deadline) await sleep(50);
  clearInterval(progress);
  // The ledger is caught up when its consumer has nothing undelivered or unacked
  // (it acks a block's events only once the block is committed).
  let ledgerLagMs: number | null = null;
  if (!a["no-ledger"]) {
    const jsm = await jetstreamManager(nc);
    for (const until = Date.now() + 120_000; Date.now() < until; await sleep(100)) {
      // A request that times out on the loaded machine is asked again, not the end of the run.
      const ci = await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer).catch((err: unknown) => { log(`ledger consumer info: ${String(err)}`); return undefined; });
      if (ci && ci.num_pending === 0 && ci.num_ack_pending === 0) { ledgerLagMs = Math.max(0, Math.round(performance.now() - lastDelivery)); break; }
    }
  }
  const seconds = (lastDelivery - start) / 1000;
  latencies.sort((x, y) => x - y);
  const ours = {
    mails: N, delivered, failed_submits: failed, bytes: BYTES, publishers: PUBLISHERS, sync_interval: a.sync,
    classifier: a["no-model"] ? "pass-through" : "committed model",
    smtp_pool_per_node: processingConfig.smtpPoolSize, concurrency_per_node: processingConfig.concurrency,
    seconds: +seconds.toFixed(2), submit_per_second: Math.round(N / ((submitDone - start) / 1000)),
    per_second: Math.round(delivered / seconds), p50_ms: Math.round(quantile(latencies, 0.5)), p99_ms: Math.round(quantile(latencies, 0.99)),
    ledger: a["no-ledger"] ? "off" : "on", ledger_lag_ms: ledgerLagMs,
  };
  log(`FastEmailNet: ${JSON.stringify(ours)}`);
  const cpu1 = await Promise.all(named.map((n) => cpuSeconds(n.pid)));
  let fsyncs: { per_mail_cluster: number; per_mail_per_server_by_kind: Record<string, number> } | undefined;
  if (tracer) {
    const byServer = (await tracer.stop()).map(fsyncsByKind);
    const kinds: Record<string, number> = {};
    for (const k of byServer) for (const [kind, n] of Object.entries(k)) kinds[kind] = (kinds[kind] ?? 0) + n;
    const total = Object.values(kinds).reduce((x, y) => x + y, 0);
    fsyncs = {
      per_mail_cluster: +(total / delivered).toFixed(1),
      per_mail_per_server_by_kind: Object.fromEntries(Object.entries(kinds).sort((x, y) => y[1] - x[1])
        .map(([kind, n]) => [kind, +(n / delivered / byServer.length).toFixed(2)])),
    };
    log(`fsync calls per mail (strace): ${JSON.stringify(fsyncs)}`);
  }
  const benchCpu = process.cpuUsage(benchCpu0);
  const where = Object.fromEntries([
    ...named.map((n, i) => [n.name, +(cpu1[i]!.total - cpu0[i]!.total).toFixed(2)] as const),
    ["bench publishers", +((benchCpu.user + benchCpu.system) / 1e6).toFixed(2)] as const,
  ]);
  // Kernel share of the servers' and nodes' CPU (loopback TCP, fsync); the bench's own process is left out.
  const sums = named.reduce((acc, _, i) => ({ total: acc.total + cpu1[i]!.total - cpu0[i]!.total, system: acc.system + cpu1[i]!.system - cpu0[i]!.system }), { total: 0, system: 0 });
  const kernelShare = +(sums.system / sums.total).toFixed(2);
  log(`CPU seconds per process during the run (${seconds.toFixed(1)} s wall, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}): ${JSON.stringify(where)}`);
  sub.unsubscribe();
  await nc.close();
  // Nodes drain while the cluster is still up, so that they exit on their
  // own (and --profile's CPU profiles, written at exit, exist); 15 s at most.
  await Promise.all(children.map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) { resolve(); return; }
    const t = setTimeout(resolve, 15_000);
    c.once("exit", () => { clearTimeout(t); resolve(); });
    c.kill("SIGTERM");
  })));
  await cluster.stop();
  // pino levels: 40 warn, 50 error, 60 fatal. A healthy run logs none (a
  // work item that fails and is redelivered logs a warning).
  const nodeWarnings: Record<string, number> = {};
  if (a.logs) await mkdir(path.resolve(a.logs), { recursive: true });
  for (const name of nodeNames) {
    const file = path.join(dir, `${name}.log`);
    nodeWarnings[name] = (await readFile(file, "utf8")).split("\n").filter((l) => /"level":(4|5|6)\d/.test(l)).length;
    if (a.logs) copyFileSync(file, path.join(path.resolve(a.logs), `${name}.log`));
  }
  log(`node log lines at warn or above: ${JSON.stringify(nodeWarnings)}`);

  let peer: { per_second?: number; delivered?: number; seconds?: number } = {};
  let peerFsyncsPerMail: number | undefined;
  if (!a["no-peer"]) {
    log("Postfix peer: relaying the same mails to smtp-sink …");
    const peerArgs = [path.join(root, "test/bench/peers/postfix-relay-bench"), String(N), String(BYTES), "10"];
    const peerTrace = path.join(dir, "fsync-postfix.trace");
    const { stdout } = a.fsyncs
      ? await promisify(execFile)("strace", ["-f", "-y", "-e", "trace=fsync,fdatasync", "-o", peerTrace, "bash", ...peerArgs], { maxBuffer: 1 << 20 })
      : await promisify(execFile)("bash", peerArgs, { maxBuffer: 1 << 20 });
    peer = JSON.parse(stdout.trim().split("\n").pop()!);
    log(`Postfix: ${JSON.stringify(peer)}`);
    if (a.fsyncs) {
      const n = Object.values(fsyncsByKind(await readFile(peerTrace, "utf8"))).reduce((x, y) => x + y, 0);
      peerFsyncsPerMail = +(n / (peer.delivered || N)).toFixed(2);
      log(`Postfix fsync calls per mail (strace): ${peerFsyncsPerMail}`);
    }
  }
  const result = {
    ...ours, cpu_seconds: where, cpu_kernel_share: kernelShare, node_warnings: nodeWarnings, peer: "postfix", peer_per_second: peer.per_second ?? null, peer_delivered: peer.delivered ?? null,
    ratio: peer.per_second ? +(ours.per_second / peer.per_second).toFixed(2) : null,
    ...(fsyncs ? { fsyncs_per_mail: fsyncs.per_mail_cluster, fsyncs_per_mail_per_server_by_kind: fsyncs.per_mail_per_server_by_kind } : {}),
    ...(peerFsyncsPerMail !== undefined ? { peer_fsyncs_per_mail: peerFsyncsPerMail } : {}),
  };
  console.log(a.json ? JSON.stringify(result) : JSON.stringify(result, null, 2));
} finally {
  for (const c of children) c.kill("SIGKILL");
  await cluster.stop().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}
