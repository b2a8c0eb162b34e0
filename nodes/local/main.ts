import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { parseArgs } from "node:util";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { provision } from "../provision/index.js";
import { startCluster } from "./nats-cluster.js";
import { startSmtpSink } from "./smtp-sink.js";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { generateNoteKeyPair, parseSignerKey } from "../../ledger/index.js";

const LEDGER_ORIGIN = "fastemailnet.local/ledger";

/**
 * The local ledger's keys, generated once into `dir` (signing.key and
 * commitment.key mode 0600, verifier.key to share) and reused after.
 */
async function ledgerKeysIn(dir: string): Promise<{ signerKey: string; verifierKey: string; commitmentKey: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const read = (f: string) => readFile(path.join(dir, f), "utf8").then((t) => t.trim(), () => undefined);
  let signerKey = await read("signing.key");
  if (!signerKey) {
    signerKey = generateNoteKeyPair(LEDGER_ORIGIN).signerKey;
    await writeFile(path.join(dir, "signing.key"), `${signerKey}\n`, { mode: 0o600 });
  }
  let commitmentKey = await read("commitment.key");
  if (!commitmentKey) {
    commitmentKey = randomBytes(32).toString("hex");
    await writeFile(path.join(dir, "commitment.key"), `${commitmentKey}\n`, { mode: 0o600 });
  }
  const verifierKey = parseSignerKey(signerKey).verifierKey;
  await writeFile(path.join(dir, "verifier.key"), `${verifierKey}\n`);
  return { signerKey, verifierKey, commitmentKey };
}

/**
 * `npm start`: the whole system on this machine. A 3-node JetStream cluster
 * (data under .data/nats, kept across restarts), provisioning, a gateway,
 * two processing nodes, the ledger node (keys generated once under
 * .data/ledger) and an SMTP sink that keeps every
 * mail it receives under .data/sink. Ctrl-C stops everything.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const { values: args } = parseArgs({
  options: {
    "sync-interval": { type: "string", default: "always" },
    "data-dir": { type: "string", default: path.join(root, ".data") },
    "smtp-port": { type: "string", default: "2525" },
    "nats-port": { type: "string", default: "4222" },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log(`usage: npm start [-- --sync-interval=always|2m] [--data-dir=DIR] [--smtp-port=2525] [--nats-port=4222]
  --sync-interval  always (default): every JetStream write is fsynced before it is acknowledged;
                   a duration (e.g. 2m) relaxes that for speed, at the risk of losing the last writes on power loss.`);
  process.exit(0);
}
const dataDir = path.resolve(args["data-dir"]);
const natsPort = Number(args["nats-port"]);
const smtpPort = Number(args["smtp-port"]);
const say = (s: string) => process.stdout.write(`${s}\n`);

const cluster = await startCluster({
  binary: path.join(root, ".tools/bin/nats-server"), dir: path.join(dataDir, "nats"), size: 3,
  clientPorts: [natsPort, natsPort + 1, natsPort + 2], syncInterval: args["sync-interval"],
});
const children: ChildProcess[] = [];
let stopping = false;
const stopAll = async (code: number) => {
  if (stopping) return;
  stopping = true;
  say("\nstopping: nodes first, then the sink and the cluster…");
  await Promise.all(children.map((c) => new Promise<void>((r) => {
    if (c.exitCode !== null || c.signalCode !== null) return r();
    c.once("exit", () => r());
    c.kill("SIGTERM");
    setTimeout(() => c.kill("SIGKILL"), 10_000).unref();
  })));
  await sink.close();
  await cluster.stop();
  say("stopped.");
  process.exit(code);
};
process.on("SIGINT", () => void stopAll(0));
process.on("SIGTERM", () => void stopAll(0));

await cluster.waitReady(60_000);
const nc = await connect({ servers: cluster.urls });
const steps = await provision(nc, await jetstreamManager(nc), { replicas: 3 });
await nc.close();
const sinkDir = path.join(dataDir, "sink");
const sink = await startSmtpSink({ port: smtpPort, dir: sinkDir });

const urls = cluster.urls.join(",");
const node = (role: string, name: string, env: Record<string, string> = {}) => {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(root, `nodes/${role}/main.ts`)], {
    cwd: root,
    env: { ...process.env, FEN_NATS_URLS: urls, FEN_NODE_NAME: name, FEN_SMTP_PORT: String(smtpPort), ...env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  child.on("exit", (code, signal) => {
    if (!stopping) say(`node ${name} exited (${code ?? signal}); stopping everything`);
    void stopAll(1);
  });
  children.push(child);
};
node("gateway", "gateway-1", { FEN_HTTP_PORT: "9101" });
node("processing", "processing-1", { FEN_HTTP_PORT: "9102" });
node("processing", "processing-2", { FEN_HTTP_PORT: "9103" });
const ledgerKeys = await ledgerKeysIn(path.join(dataDir, "ledger"));
node("ledger", "ledger-1", {
  FEN_HTTP_PORT: "9104", FEN_LEDGER_ORIGIN: LEDGER_ORIGIN,
  FEN_LEDGER_SIGNING_KEY: ledgerKeys.signerKey, FEN_LEDGER_COMMITMENT_KEY: ledgerKeys.commitmentKey,
});

say(`
FastEmailNet is running.
  NATS cluster   ${urls}   (sync_interval: ${args["sync-interval"]}; data in ${path.join(dataDir, "nats")})
  provisioning   ${steps.map((s) => `${s.name}:${s.action}`).join(" ")}
  SMTP sink      127.0.0.1:${smtpPort}, delivered mails are kept as .eml files in ${sinkDir}
  health/metrics gateway http://127.0.0.1:9101/metrics, processing http://127.0.0.1:9102/metrics and :9103

Send a mail:
  npx fastemailnet send --from me@example.org --to you@example.net --subject hi --text hello
  nats -s nats://127.0.0.1:${natsPort} req mail.submit '{"kind":"mail.submit","v":1,"mail":{"from":"me@example.org","to":["you@example.net"],"subject":"hi","text":"hello"}}'
  ledger         origin ${LEDGER_ORIGIN}, metrics http://127.0.0.1:9104/metrics; keys in ${path.join(dataDir, "ledger")}
                 verifier key: ${ledgerKeys.verifierKey}
Audit the ledger and check a receipt offline:
  npx fastemailnet ledger verify --key ${path.join(dataDir, "ledger", "verifier.key")}
  npx fastemailnet ledger prove MAIL_ID > receipt.json
  npx fastemailnet ledger verify-receipt receipt.json --key ${path.join(dataDir, "ledger", "verifier.key")}
Look at it:
  npx fastemailnet status MAIL_ID
  .tools/bin/nats -s nats://127.0.0.1:${natsPort} micro ls
  .tools/bin/nats -s nats://127.0.0.1:${natsPort} stream ls
  .tools/bin/nats -s nats://127.0.0.1:${natsPort} stream view MAIL_EVENTS
  .tools/bin/nats -s nats://127.0.0.1:${natsPort} consumer info MAIL_WORK processing
  ls ${sinkDir}
Ctrl-C stops everything.
`);
