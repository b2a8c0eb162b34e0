import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import type { ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { pino } from "pino";
import { Codecs, ErrorCodes, Names, ServiceSubjects, isErrorCode } from "../../protocol/index.js";
import type { FenError, StatusReply, SubmitReply, SubmitRequest } from "../../protocol/index.js";
import { callService } from "../../nodes/common/rpc.js";
import { createMetrics } from "../../nodes/common/metrics.js";
import type { Metrics } from "../../nodes/common/metrics.js";
import { systemClock } from "../../nodes/common/clock.js";
import type { Actor } from "../../nodes/common/actor.js";
import { GatewayKeys, ProcessingKeys, loadConfig } from "../../nodes/config/index.js";
import { createGateway } from "../../nodes/gateway/index.js";
import { createDelivery, createProcessingNode, passThroughClassifier, relayOptions } from "../../nodes/processing/index.js";
import type { MailClassifier } from "../../nodes/processing/index.js";
import { provision } from "../../nodes/provision/index.js";
import { startTestCluster } from "./cluster.js";
import type { TestCluster } from "./cluster.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Quiet logger for in-process actors (set FEN_TEST_LOG=debug to see them). */
export const testLog = pino({ level: process.env["FEN_TEST_LOG"] ?? "silent" });

/** Connects and provisions every stream, consumer and bucket. */
export async function connectAndProvision(urls: string[]): Promise<NatsConnection> {
  const nc = await connect({ servers: urls });
  await provision(nc, await jetstreamManager(nc), { replicas: 3 }, { clock: systemClock });
  return nc;
}

/** Starts an in-process gateway with test configuration. */
export async function startGateway(nc: NatsConnection, env: Record<string, string> = {}): Promise<Actor> {
  const config = loadConfig(GatewayKeys, env);
  const g = createGateway({ nc, log: testLog, clock: systemClock, node: "gw-test", metrics: createMetrics({ defaults: false }) }, config);
  await g.start();
  return g;
}

/** Starts an in-process processing node delivering to `smtpPort`. */
export async function startProcessing(nc: NatsConnection, smtpPort: number, env: Record<string, string> = {}, classifier: MailClassifier = passThroughClassifier, random = () => 0.5, metrics: Metrics = createMetrics({ defaults: false })): Promise<Actor> {
  const config = loadConfig(ProcessingKeys, { FEN_SMTP_PORT: String(smtpPort), FEN_RETRY_BASE_MS: "100", FEN_RETRY_MAX_MS: "1000", ...env });
  const delivery = createDelivery(relayOptions(config));
  const p = createProcessingNode({
    nc, log: testLog, clock: systemClock, random, node: `proc-test-${Math.floor(Math.random() * 1e6)}`,
    metrics, delivery, classifier,
  }, config);
  await p.start();
  return p;
}

/**
 * A 3-node test cluster, provisioned through `admin`, and a connection `nc`
 * to a server that does not lead `stream` (`home`, its index), so a test can
 * stop that stream's leader without cutting its own clients off.
 */
export async function clusterAwayFromLeaderOf(stream: string): Promise<{ cluster: TestCluster; admin: NatsConnection; nc: NatsConnection; home: number }> {
  const cluster = await startTestCluster();
  const admin = await connectAndProvision(cluster.urls);
  const leader = (await (await jetstreamManager(admin)).streams.info(stream)).cluster?.leader;
  const home = cluster.servers.findIndex((s) => s.name !== leader);
  const nc = await connect({ servers: cluster.servers[home]!.url });
  return { cluster, admin, nc, home };
}

/**
 * Stops (SIGSTOP) the leader of `stream`, which must not be the `home`
 * server the clients use, as a leader change does for a moment, and calls
 * `ask` every 100 ms until it fails with STORE_UNAVAILABLE (at most 30 s):
 * until the followers notice the leader is gone, one of them may still
 * answer a Direct Get. Resumes the leader (SIGCONT) and waits for the
 * cluster; returns every answer ("ok" or the error's code).
 */
export async function askWhileLeaderStopped(env: { cluster: TestCluster; admin: NatsConnection; home: number }, stream: string, ask: () => Promise<unknown>): Promise<string[]> {
  const info = await (await jetstreamManager(env.admin)).streams.info(stream);
  const leader = env.cluster.servers.find((s) => s.name === info.cluster?.leader);
  if (!leader || env.cluster.servers.indexOf(leader) === env.home) throw new Error(`${stream}'s leader is the test clients' server or unknown`);
  const answers: string[] = [];
  leader.process!.kill("SIGSTOP");
  try {
    const deadline = Date.now() + 30_000;
    while (!answers.includes("STORE_UNAVAILABLE") && Date.now() < deadline) {
      answers.push(await ask().then(() => "ok", (e: { code?: string; message?: string }) => e.code ?? String(e.message)));
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    leader.process!.kill("SIGCONT");
  }
  await env.cluster.waitReady(60_000);
  return answers;
}

/** Spawns a node's main.ts as a real child process (for SIGKILL tests). */
export function spawnNode(role: "gateway" | "processing" | "ledger", env: Record<string, string>, logFile?: string): ChildProcess {
  // `node --import tsx`, not the tsx wrapper: the wrapper runs node as a
  // child, and a SIGKILL to the wrapper would leave the node running.
  const child = spawn(process.execPath, ["--import", "tsx", path.join(root, `nodes/${role}/main.ts`)], {
    cwd: root,
    env: { ...process.env, FEN_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", logFile ? "pipe" : "ignore", "inherit"],
  });
  if (logFile && child.stdout) child.stdout.pipe(createWriteStream(logFile));
  return child;
}

/** A structured submit request. */
export function structured(i: number | string, opts: { key?: string; to?: string[]; subject?: string; text?: string } = {}): SubmitRequest {
  return {
    kind: "mail.submit", v: 1,
    ...(opts.key ? { idempotencyKey: opts.key } : {}),
    mail: {
      from: "sender@example.org", to: opts.to ?? ["rcpt@example.net"], cc: [], bcc: [], subject: opts.subject ?? `test ${i}`,
      text: opts.text ?? `body ${i}`, headers: {}, attachments: [],
    },
  };
}

export const submit = (nc: NatsConnection, req: SubmitRequest | Record<string, unknown>, timeoutMs = 15_000): Promise<SubmitReply> =>
  callService(nc, ServiceSubjects.submit, Codecs.submitRequest, req as SubmitRequest, Codecs.submitReply, timeoutMs);

export const status = (nc: NatsConnection, mailId: string): Promise<StatusReply> =>
  callService(nc, ServiceSubjects.status, Codecs.statusRequest, { kind: "mail.status", v: 1, mailId: mailId as never }, Codecs.statusReply);

/** Polls `check` until it returns a value (not undefined/false) or times out. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`, { cause: last });
}

/** Resolves once the work consumer holds nothing: every work item acked, none waiting. */
export const workSettled = (nc: NatsConnection, timeoutMs = 30_000): Promise<true> => until("work item acked", async () => {
  const ci = await (await jetstreamManager(nc)).consumers.info(Names.workStream, Names.workConsumer);
  return ci.num_ack_pending + ci.num_pending === 0;
}, timeoutMs, 200);

/**
 * Submits with retries the way a careful publisher does: on a transient
 * error or a timeout, the same request (same idempotency key) again.
 */
export async function submitWithRetry(nc: NatsConnection, req: SubmitRequest, attempts = 20): Promise<SubmitReply> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await submit(nc, req, 5000);
    } catch (err) {
      last = err;
      // By retry class (NO_REPLY, NO_RESPONDERS, STORE_UNAVAILABLE, BUSY, ...); a connection-level failure has no code.
      const code = (err as { code?: string }).code;
      if (isErrorCode(code) && ErrorCodes[code].retry !== "transient") throw err;
      await new Promise((r) => setTimeout(r, 200 * (i + 1)));
    }
  }
  throw last;
}

/** Runs `fn` over `items` with at most `limit` at once. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  }));
  return out;
}

/** The names of a mail's live body objects in mail_bodies (`<mailId>.<nonce>`, one per submission that stored one). */
export async function bodyObjects(nc: NatsConnection, mailId: string): Promise<string[]> {
  const bodies = await new Objm(jetstream(nc)).open(Names.bodiesBucket);
  return (await bodies.list()).filter((i) => !i.deleted && i.name.startsWith(`${mailId}.`)).map((i) => i.name);
}

/**
 * `kv` whose writes (create, update) fail, its reads going through: a node that lost the status store after
 * publishing its events, as one killed between the two leaves it.
 */
export function withoutWrites(kv: KV): KV {
  return new Proxy(kv, {
    get(target, prop, receiver) {
      if (prop === "create" || prop === "update") return async () => { throw new Error("the status store is gone (test)"); };
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === "function" ? v.bind(target) : v;
    },
  }) as KV;
}

/** What `f` throws (awaited), as the FenError the caller expects; fails the test when it throws nothing. */
export async function thrownBy(f: () => unknown): Promise<FenError> {
  try {
    await f();
  } catch (err) {
    return err as FenError;
  }
  throw new Error("nothing was thrown");
}
