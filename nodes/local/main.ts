import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { parseArgs } from "node:util";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { provision } from "../provision/index.js";
import { startCluster } from "./nats-cluster.js";
import { NatsRoles, SERVER_SAFE_PASSWORD, envUsers, generatePasswords, passwordEnvOf, renderAuthorization, userOf } from "./permissions.js";
import type { NatsRole } from "./permissions.js";
import { startSmtpSink } from "./smtp-sink.js";
import type { SmtpSink } from "./smtp-sink.js";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { Names, StreamSubjects } from "../../protocol/index.js";
import { waitForService } from "../common/rpc.js";
import { generateNoteKeyPair, parseSignerKey } from "../../ledger/index.js";
import { systemClock } from "../common/clock.js";
import { parseDecimal } from "../common/decimal.js";

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
const USAGE = `usage: npm start [-- --sync-interval=always|2m] [--data-dir=DIR] [--smtp-port=2525] [--nats-port=4222] [--http-port=9101] [--no-auth] [--update-specs]
  ports: 0 picks free ones; --nats-port is the first of the three servers' client ports, --http-port the first of the nodes' four health/metrics ports.
  --no-auth        run the cluster without users (by default every node connects as its role's user,
                   see nodes/local/permissions.ts; passwords are generated once into DATA_DIR/nats/credentials.json)
  --update-specs   bring streams, consumers and buckets whose configuration differs from the spec
                   (data from an older version) up to date instead of stopping with SPEC_MISMATCH
  --sync-interval  always (default): every JetStream write is fsynced before it is acknowledged;
                   a duration (e.g. 2m) relaxes that for speed, at the risk of losing the last writes on power loss.`;
/** A usage error: one line naming what is wrong, then the usage, on stderr; exit 2 before anything starts. */
const usageError = (message: string): never => {
  process.stderr.write(`npm start: ${message}\n${USAGE}\n`);
  process.exit(2);
};
const { values: args } = (() => {
  try {
    return parseArgs({
      options: {
        "sync-interval": { type: "string", default: "always" },
        "data-dir": { type: "string", default: path.join(root, ".data") },
        "smtp-port": { type: "string", default: "2525" },
        "nats-port": { type: "string", default: "4222" },
        "http-port": { type: "string", default: "9101" },
        "no-auth": { type: "boolean", default: false },
        "update-specs": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    });
  } catch (err) {
    // node's message names the option ("Unknown option '--bogus'").
    return usageError((err as Error).message.replace(/\n/g, " "));
  }
})();
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
/** A port option: a whole number from 0 (a free port) to `max`; not silently a free port when mistyped. */
const portArg = (name: "nats-port" | "smtp-port" | "http-port", max = 65535): number => {
  const raw = args[name];
  if (!/^[0-9]{1,5}$/.test(raw) || Number(raw) > max) usageError(`--${name} must be a port from 0 to ${max} (got ${JSON.stringify(raw)})`);
  return Number(raw);
};
if (!/^(always|[0-9]+(ms|s|m|h))$/.test(args["sync-interval"])) usageError(`--sync-interval must be "always" or a duration such as 2m (got ${JSON.stringify(args["sync-interval"])})`);
const dataDir = path.resolve(args["data-dir"]);
// The three servers take --nats-port and the two after it.
const natsPort = portArg("nats-port", 65533);
const smtpPort = portArg("smtp-port");
// The four nodes take --http-port and the three after it.
const httpPort = portArg("http-port", 65532);
const auth = !args["no-auth"];
const httpPortOf = (i: number) => String(httpPort ? httpPort + i : 0);

/** Role passwords, generated once into `file` (mode 0600) and reused, so clients keep working across restarts. */
async function rolePasswords(file: string): Promise<Record<NatsRole, string>> {
  const have = await readFile(file, "utf8").then((t) => JSON.parse(t) as Partial<Record<NatsRole, string>>, () => ({}) as Partial<Record<NatsRole, string>>);
  if (NatsRoles.every((r) => SERVER_SAFE_PASSWORD.test(have[r] ?? ""))) return have as Record<NatsRole, string>;
  const fresh = generatePasswords(randomBytes);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(fresh, null, 2)}\n`, { mode: 0o600 });
  return fresh;
}
const credentialsFile = path.join(dataDir, "nats", "credentials.json");
const passwords = auth ? await rolePasswords(credentialsFile) : undefined;
const credsOf = (role: NatsRole): Record<string, string> =>
  passwords ? { FEN_NATS_USER: userOf(role), FEN_NATS_PASSWORD: passwords[role] } : {};
const say = (s: string) => process.stdout.write(`${s}\n`);

/**
 * One `npm start` per data folder: two clusters on the same JetStream store
 * corrupt it (a probe lost an accepted mail that way, after `kill -9` of an
 * `npm start` left its servers running). The pid file lists this process
 * and its children; a later start refuses while any of them still runs.
 */
const pidFile = path.join(dataDir, "npm-start.pids");
const ours = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return /nats-server|main\.ts/.test(readFileSync(`/proc/${pid}/cmdline`, "utf8"));
  } catch {
    return true; // alive, and no /proc to tell what it is (macOS): assume it is one of ours
  }
};
const pids = new Set<number>([process.pid]);
/** Writes the pid file; `flag` "wx" creates it only if absent. */
const writePids = (flag: "w" | "wx" = "w") => writeFileSync(pidFile, `${JSON.stringify([...pids])}\n`, { flag });
await mkdir(dataDir, { recursive: true });
// Created exclusively, so two starts at the same moment cannot both pass; a file whose processes are all gone is stale.
for (let tries = 0; ; tries++) {
  try {
    writePids("wx");
    break;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST" || tries > 0) throw err;
  }
  const running = await readFile(pidFile, "utf8").then((t) => (JSON.parse(t) as number[]).filter((pid) => pid !== process.pid && ours(pid)), () => []);
  if (running.length > 0) {
    say(`another npm start is using ${dataDir}: processes ${running.join(" ")} still run. Stop it (Ctrl-C in its terminal, or kill ${running.join(" ")}) first.`);
    process.exit(1);
  }
  rmSync(pidFile, { force: true });
}

const cluster = await startCluster({
  binary: path.join(root, ".tools/bin/nats-server"), dir: path.join(dataDir, "nats"), size: 3,
  ...(natsPort ? { clientPorts: [natsPort, natsPort + 1, natsPort + 2] } : {}), syncInterval: args["sync-interval"], ownProcessGroup: true,
  // The authorization block names each password as $VAR; the servers get them in their environment.
  ...(passwords ? {
    extraConfig: renderAuthorization(envUsers()),
    env: Object.fromEntries(NatsRoles.map((r) => [passwordEnvOf(r), passwords[r]])),
  } : {}),
});
for (const s of cluster.servers) if (s.process?.pid) pids.add(s.process.pid);
writePids();
const children: ChildProcess[] = [];
let sink: SmtpSink | undefined;
let stopping = false;
let stoppingSince = 0;
/** The processing nodes' drain deadline: FEN_DRAIN_TIMEOUT_MS if set, else 10 s (a local system should stop promptly). */
const drainSetting = parseDecimal((process.env["FEN_DRAIN_TIMEOUT_MS"] ?? "").trim(), "integer");
const drainMs = Number.isSafeInteger(drainSetting) && drainSetting >= 0 ? drainSetting : 10_000;
/** How long the nodes get to drain before they are killed: past their drain deadline. */
const NODE_STOP_MS = drainMs + 10_000;
/**
 * Stops the nodes (they drain: in-flight mails are recorded while the
 * cluster still runs), then the sink and the cluster. Every child runs in a
 * process group of its own, so a terminal's Ctrl-C reaches only this
 * process and this order holds.
 */
const stopAll = async (code: number) => {
  if (stopping) return;
  stopping = true;
  stoppingSince = Date.now();
  say("\nstopping: nodes first, then the sink and the cluster… (Ctrl-C again to kill at once)");
  await Promise.all(children.map((c) => new Promise<void>((r) => {
    if (c.exitCode !== null || c.signalCode !== null) return r();
    c.once("exit", () => r());
    c.kill("SIGTERM");
    setTimeout(() => c.kill("SIGKILL"), NODE_STOP_MS).unref();
  })));
  try {
    await sink?.close();
    await cluster.stop();
  } catch (err) {
    // Not left running (see onFailure): the next start would refuse the data folder.
    say(`stopping the sink and the cluster failed (${err instanceof Error ? err.message : String(err)}); killing the servers`);
    for (const s of cluster.servers) s.process?.kill("SIGKILL");
  }
  rmSync(pidFile, { force: true });
  say("stopped.");
  process.exit(code);
};
/**
 * A signal while stopping is a second Ctrl-C: a stuck shutdown must not need
 * kill -9. (npm forwards a signal more than once within moments: not a
 * second request. A node exiting while stopping is not one either.)
 */
const onSignal = () => {
  if (!stopping) return void stopAll(0);
  if (Date.now() - stoppingSince < 1000) return;
  say("stopping at once (SIGKILL)…");
  for (const c of children) c.kill("SIGKILL");
  for (const s of cluster.servers) s.process?.kill("SIGKILL");
  rmSync(pidFile, { force: true });
  process.exit(1);
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);
// A closed terminal. The servers and nodes run in process groups of their own (see stopAll), so the hangup
// reaches only this process: without a handler it died at once and left the servers running, and the next
// npm start refused the data folder (pid file) until they were killed by hand.
process.on("SIGHUP", onSignal);
// After a hangup, writing to the terminal fails (EIO): not a failure of the system (onFailure), and nothing to tell.
process.stdout.on("error", () => undefined);
/**
 * Any failure from here on (a rejected await of the start-up below, an error
 * in a handler while running) stops what was started, for the same reason.
 * While stopping, one is only reported: stopAll finishes (and exits) anyway.
 */
const onFailure = (err: unknown) => {
  say(`npm start failed: ${err instanceof Error ? err.message : String(err)}`);
  if (!stopping) void stopAll(1);
};
process.on("uncaughtException", onFailure);
process.on("unhandledRejection", onFailure);

const provisionCreds = passwords ? { user: userOf("provision"), pass: passwords.provision } : undefined;
const sinkDir = path.join(dataDir, "sink");
// A failed start-up stops the servers it started rather than leaving them running.
const { steps, smtp } = await (async () => {
  await cluster.waitReady(60_000, provisionCreds);
  const nc = await connect({ servers: cluster.urls, ...(provisionCreds ?? {}) });
  try {
    let told = false;
    const done = await provision(nc, await jetstreamManager(nc), { replicas: 3 }, {
      clock: systemClock,
      onWait: (what, reason) => { if (!told) say(`waiting for the cluster to place ${what} (${reason})…`); told = true; },
    }, { update: args["update-specs"], updateHint: "npm start -- --update-specs" });
    for (const s of done) if (s.action === "updated") say(`updated ${s.kind} ${s.name} to the spec: ${s.changed?.join(", ")}`);
    const started = await startSmtpSink({ port: smtpPort, dir: sinkDir, keep: false });
    sink = started;
    return { steps: done, smtp: started };
  } finally {
    await nc.close();
  }
})().catch(async (err: unknown) => {
  say(`start-up failed: ${err instanceof Error ? err.message : String(err)}`);
  await stopAll(1);
  throw err; // not reached: stopAll exits
});

const urls = cluster.urls.join(",");
const node = (role: NatsRole, name: string, env: Record<string, string> = {}) => {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(root, `nodes/${role}/main.ts`)], {
    cwd: root,
    env: {
      ...process.env, FEN_NATS_URLS: urls, FEN_NODE_NAME: name, FEN_SMTP_PORT: String(smtp.port), FEN_DRAIN_TIMEOUT_MS: String(drainMs),
      ...credsOf(role), ...env,
    },
    // Its own process group (see stopAll), and an IPC channel: a node stops when this process is gone (kill -9).
    stdio: ["ignore", "inherit", "inherit", "ipc"], detached: true,
  });
  child.on("exit", (code, signal) => {
    if (!stopping) say(`node ${name} exited (${code ?? signal}); stopping everything`);
    void stopAll(1);
  });
  children.push(child);
  if (child.pid) pids.add(child.pid);
  writePids();
};
node("gateway", "gateway-1", { FEN_HTTP_PORT: httpPortOf(0) });
node("processing", "processing-1", { FEN_HTTP_PORT: httpPortOf(1) });
node("processing", "processing-2", { FEN_HTTP_PORT: httpPortOf(2) });
const ledgerKeys = await ledgerKeysIn(path.join(dataDir, "ledger"));
node("ledger", "ledger-1", {
  FEN_HTTP_PORT: httpPortOf(3), FEN_LEDGER_ORIGIN: LEDGER_ORIGIN,
  FEN_LEDGER_SIGNING_KEY: ledgerKeys.signerKey, FEN_LEDGER_COMMITMENT_KEY: ledgerKeys.commitmentKey,
});

// The banner waits until every service answers, so a mail sent right after it finds its gateway.
{
  const operator = passwords ? { user: userOf("operator"), pass: passwords.operator } : {};
  const nc = await connect({ servers: cluster.urls, ...operator });
  try {
    for (const service of [Names.gatewayService, Names.processingService, Names.ledgerService]) {
      if (!(await waitForService(nc, service, { attempts: 121, everyMs: 500 }))) say(`${service} did not answer within a minute; see its log above`);
    }
  } finally {
    await nc.close();
  }
}

const url = cluster.urls[0]!;
const as = (role: NatsRole, prefix: "FEN_NATS" | "NATS") => (passwords ? `${prefix}_USER=${userOf(role)} ${prefix}_PASSWORD=${passwords[role]} ` : "");
const ports = httpPort ? `gateway http://127.0.0.1:${httpPortOf(0)}/metrics, processing :${httpPortOf(1)} and :${httpPortOf(2)}, ledger :${httpPortOf(3)}` : "free ports (see each node's log)";
say(`
FastEmailNet is running.
  NATS cluster   ${urls}   (sync_interval: ${args["sync-interval"]}; data in ${path.join(dataDir, "nats")})
  NATS users     ${passwords ? `one per role (nodes/local/permissions.ts); passwords in ${credentialsFile}` : "none (--no-auth)"}
  provisioning   ${steps.map((s) => `${s.name}:${s.action}`).join(" ")}
  SMTP sink      127.0.0.1:${smtp.port}, delivered mails are kept as .eml files in ${sinkDir}
  health/metrics ${ports}
  ledger         origin ${LEDGER_ORIGIN}; keys in ${path.join(dataDir, "ledger")}
                 verifier key: ${ledgerKeys.verifierKey}
${passwords ? `
Publisher credentials (may only request mail.submit and mail.status):
  FEN_NATS_USER=${userOf("publisher")} FEN_NATS_PASSWORD=${passwords.publisher}
Operator credentials for the nats CLI (reads everything, writes nothing directly; deploy/DEBUGGING.md):
  export NATS_URL=${url} NATS_USER=${userOf("operator")} NATS_PASSWORD=${passwords.operator}
` : ""}
Send a mail:
  ${as("publisher", "FEN_NATS")}npx fastemailnet send --server ${url} --from me@example.org --to you@example.net --subject hi --text hello
  ${as("publisher", "NATS")}.tools/bin/nats -s ${url} req mail.submit '{"kind":"mail.submit","v":1,"mail":{"from":"me@example.org","to":["you@example.net"],"subject":"hi from nats","text":"hello"}}'
  (without an idempotency key, the same mail again within 2 h is answered "duplicate": true)
Audit the ledger and check a receipt offline:
  ${as("operator", "FEN_NATS")}npx fastemailnet ledger verify --server ${url} --key ${path.join(dataDir, "ledger", "verifier.key")}
  ${as("operator", "FEN_NATS")}npx fastemailnet ledger prove MAIL_ID --server ${url} > receipt.json
  npx fastemailnet ledger verify-receipt receipt.json --key ${path.join(dataDir, "ledger", "verifier.key")}
Mails the classifier flagged wait for an operator:
  ${as("operator", "FEN_NATS")}npx fastemailnet quarantine list --server ${url}
  ${as("operator", "FEN_NATS")}npx fastemailnet quarantine release MAIL_ID --reason "checked, not spam" --server ${url}
Look at it (with the operator's NATS_* exported):
  ${as("publisher", "FEN_NATS")}npx fastemailnet status MAIL_ID --server ${url}
  ${as("operator", "FEN_NATS")}npx fastemailnet queue --server ${url}          # mails not yet settled (mailq)
  .tools/bin/nats -s ${url} micro ls
  .tools/bin/nats -s ${url} stream ls
  .tools/bin/nats -s ${url} sub --stream ${Names.eventsStream} '${StreamSubjects.events}' --all --terminate-at-end
  .tools/bin/nats -s ${url} consumer info MAIL_WORK processing
  ls ${sinkDir}
Ctrl-C stops everything.
`);
