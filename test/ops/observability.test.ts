import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Names, mailIdFromIdempotencyKey, workSubject } from "../../protocol/index.js";
import { createLogger } from "../../nodes/common/logger.js";
import { createMetrics } from "../../nodes/common/metrics.js";
import type { Actor } from "../../nodes/common/actor.js";
import { serveHealth } from "../../nodes/common/runtime.js";
import { GatewayKeys, loadConfig } from "../../nodes/config/index.js";
import { createWorkLagSampler } from "../../nodes/processing/lag.js";
import { spawnNode, startGateway, startProcessing, status, structured, submit, testLog, until } from "../helpers/system.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import { provision } from "../../nodes/provision/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { ledgerIdentity, publishEvents, startLedger } from "../ledger-node/helpers.js";

/**
 * Observability pieces that are not visible end to end: the logger's
 * redaction and level, and the work consumer lag gauge. (Every node's
 * /healthz, /readyz and /metrics are checked on the real processes in
 * test/deploy/chart-smoke.test.ts.)
 */

function capture(level: string) {
  const stream = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  let text = "";
  stream.on("data", (b: Buffer) => {
    text += b.toString();
    for (const l of b.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
  });
  const log = createLogger({ level, node: "obs-test", destination: stream });
  return { log, lines, text: () => text };
}

describe("logs", () => {
  it("censors recipient addresses and credentials, also in child loggers", () => {
    const { log, lines, text } = capture("info");
    const secret = "s3cret-Pa55";
    log.child({ mailId: "m1" }).info({
      to: ["alice@example.net"], cc: ["bob@example.net"], bcc: ["carol@example.net"], from: "sender@example.org",
      recipients: ["dave@example.net"], envelope: { from: "sender@example.org", to: ["erin@example.net"] },
      mail: { to: ["frank@example.net"], from: "sender@example.org" },
      password: secret, natsPassword: secret, smtpPassword: secret, auth: { user: "u", pass: secret },
      ledgerSigningKey: "PRIVATE+KEY+x", ledgerCommitmentKey: "00ff", headers: { authorization: `Basic ${secret}` },
      count: 3,
    }, "sending");
    expect(lines).toHaveLength(1);
    const rec = lines[0]!;
    expect(rec).toMatchObject({ node: "obs-test", mailId: "m1", msg: "sending", count: 3, level: 30 });
    for (const k of ["to", "cc", "bcc", "from", "recipients", "password", "natsPassword", "smtpPassword", "auth", "ledgerSigningKey", "ledgerCommitmentKey"]) {
      expect(rec[k], k).toBe("[redacted]");
    }
    expect(rec["envelope"]).toEqual({ from: "[redacted]", to: "[redacted]" });
    expect(rec["mail"]).toEqual({ to: "[redacted]", from: "[redacted]" });
    expect(rec["headers"]).toEqual({ authorization: "[redacted]" });
    expect(text()).not.toMatch(/@example\.(net|org)/);
    expect(text()).not.toContain(secret);
    expect(text()).not.toContain("PRIVATE+KEY");
  });

  it("takes its level from the configuration (FEN_LOG_LEVEL)", () => {
    const config = loadConfig(GatewayKeys, { FEN_LOG_LEVEL: "warn" });
    const { log, lines } = capture(config.logLevel);
    log.info("not shown");
    log.debug("not shown");
    log.warn({ code: "X" }, "shown");
    expect(lines.map((l) => l["msg"])).toEqual(["shown"]);
    expect(() => loadConfig(GatewayKeys, { FEN_LOG_LEVEL: "loud" })).toThrow(/FEN_LOG_LEVEL/);
  });
});

const js = (env: { nc: Parameters<typeof jetstream>[0] }) => jetstream(env.nc);

describe("work consumer lag (fen_work_consumer_pending)", () => {
  const env = useProvisionedCluster();

  it("follows num_pending of MAIL_WORK/processing, on a schedule until stopped", async () => {
    const metrics = createMetrics({ defaults: false });
    const ticks: (() => void)[] = [];
    let cancelled = false;
    const sampler = createWorkLagSampler({
      jsm: await jetstreamManager(env.nc), metrics, log: testLog, everyMs: 1234,
      every: (ms, fn) => { expect(ms).toBe(1234); ticks.push(fn); return () => { cancelled = true; }; },
    });
    const gauge = async () => (await metrics.workLag.get()).values[0]?.value;

    expect(await sampler.sample()).toBe(0);
    const js = jetstream(env.nc);
    for (let i = 0; i < 5; i++) {
      // No processing node runs here, so the items only wait; their content does not matter.
      await js.publish(workSubject(mailIdFromIdempotencyKey(`lag-${i}`)), new TextEncoder().encode("{}"));
    }
    sampler.start();
    expect(ticks).toHaveLength(1);
    // The first sample may run before the consumer's pending count has caught
    // up with the last publish; later scheduled ticks must correct it.
    await expect.poll(async () => { ticks[0]!(); return gauge(); }).toBe(5);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^fen_work_consumer_pending 5$/m);
    // Nothing has taken them: none in flight or deferred.
    expect(text).toMatch(/^fen_work_consumer_ack_pending 0$/m);
    sampler.stop();
    expect(cancelled).toBe(true);
  });
});

describe("work consumer lag when the consumer cannot be read", () => {
  const env = useProvisionedCluster();

  it("is NaN, not the last value, while MAIL_WORK/processing cannot be read (a lag of 0 there hid mails piling up); logged once", async () => {
    const metrics = createMetrics({ defaults: false });
    const ticks: (() => void)[] = [];
    const { log, lines } = capture("info");
    const sampler = createWorkLagSampler({ jsm: await jetstreamManager(env.nc), metrics, log, everyMs: 1000, every: (_ms, fn) => { ticks.push(fn); return () => undefined; } });
    const text = () => metrics.registry.metrics();
    sampler.start();
    await expect.poll(text).toMatch(/^fen_work_consumer_pending 0$/m);
    const jsm = await jetstreamManager(env.nc);
    await jsm.consumers.delete(Names.workStream, Names.workConsumer);
    await js(env).publish(workSubject(mailIdFromIdempotencyKey(`nan-${Date.now()}`)), new TextEncoder().encode("{}"));
    // prom-client writes NaN as "Nan", which Prometheus reads (Go's ParseFloat ignores the case).
    await expect.poll(async () => { ticks[0]!(); return text(); }).toMatch(/^fen_work_consumer_pending NaN$/im);
    expect(await text()).toMatch(/^fen_work_consumer_ack_pending NaN$/im);
    ticks[0]!();
    await new Promise((r) => setTimeout(r, 200));
    expect(lines.filter((l) => l["msg"] === "work consumer lag unknown: the consumer cannot be read")).toHaveLength(1);
    await provision(env.nc, jsm, { replicas: 3 }, { clock: systemClock });
    await expect.poll(async () => { ticks[0]!(); return text(); }).toMatch(/^fen_work_consumer_pending 1$/m);
    expect(lines.map((l) => l["msg"])).toContain("work consumer lag read again");
    sampler.stop();
  });
});

describe("/readyz", () => {
  const env = useProvisionedCluster();

  it("a processing node whose FEN_HTTP_PORT is taken exits 1 before it takes any work", async () => {
    const js = jetstream(env.nc);
    const jsm = await jetstreamManager(env.nc);
    const mailId = mailIdFromIdempotencyKey(`port-taken-${Date.now()}`);
    await js.publish(workSubject(mailId), new TextEncoder().encode("{}"));
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
    const port = (taken.address() as AddressInfo).port;
    const logFile = path.join(env.cluster.dir, "port-taken.log");
    try {
      const before = (await jsm.consumers.info(Names.workStream, Names.workConsumer)).delivered.consumer_seq;
      const child = spawnNode("processing", { FEN_NATS_URLS: env.cluster.urls.join(","), FEN_MODEL_DIR: "none", FEN_HTTP_PORT: String(port) }, logFile);
      const code = await new Promise<number | null>((r) => child.once("exit", r));
      expect(code).toBe(1);
      const log = await readFile(logFile, "utf8");
      expect(log).toMatch(/"msg":"start failed"/);
      expect(log).toMatch(/EADDRINUSE/);
      // Nothing was pulled: the node stopped before its consumer asked for work.
      const info = await jsm.consumers.info(Names.workStream, Names.workConsumer);
      expect(info.delivered.consumer_seq).toBe(before);
      expect(info.num_pending).toBeGreaterThanOrEqual(1);
    } finally {
      taken.close();
      await jsm.streams.purge(Names.workStream, { filter: workSubject(mailId) });
    }
  }, 60_000);

  /** A health server for `node` on a free port, and its /readyz as "<status> <body>". */
  async function healthOf(node: Actor) {
    const { log } = capture("info");
    const { server: http, port } = await serveHealth({ host: "127.0.0.1", port: 0, actor: node, nc: env.nc, metrics: createMetrics({ defaults: false }), log });
    const readyz = async () => { const r = await fetch(`http://127.0.0.1:${port}/readyz`); return `${r.status} ${(await r.text()).trim()}`; };
    return { http, readyz };
  }

  it("a processing node is 503, saying why, while its work consumer is gone (deleted, not yet provisioned again), and 200 once it pulls again", async () => {
    const sink = await startSmtpSink({});
    const node = await startProcessing(env.nc, sink.port);
    const { http, readyz } = await healthOf(node);
    const jsm = await jetstreamManager(env.nc);
    try {
      expect(await readyz()).toBe("200 ready");
      // An operator's `nats consumer rm MAIL_WORK processing`: the node would pull nothing, mails would wait in MAIL_WORK.
      await jsm.consumers.delete(Names.workStream, Names.workConsumer);
      await until("503 while the consumer is gone", async () => (await readyz()).startsWith("503"), 15_000, 100);
      expect(await readyz()).toMatch(/^503 not ready: .*MAIL_WORK\/processing/);
      // Provisioned again: the node pulls again (a work item reaches it) and is ready.
      await provision(env.nc, jsm, { replicas: 3 }, { clock: systemClock });
      const mail = await startGateway(env.nc);
      try {
        const r = await submit(env.nc, structured("consumer-back", { key: `consumer-back-${Date.now()}` }));
        await until("the mail Sent", async () => (await status(env.nc, r.mailId)).state === "Sent", 60_000, 200);
      } finally {
        await mail.drain();
      }
      await until("200 once it pulls again", async () => (await readyz()) === "200 ready", 15_000, 100);
    } finally {
      http.close();
      await node.drain();
      await sink.close();
    }
  }, 120_000);

  it("a ledger node is 503, saying why, while its events consumer is gone, and 200 once it pulls again", async () => {
    const id = ledgerIdentity();
    const node = await startLedger(env.nc, id, { FEN_LEDGER_BATCH_MS: "20" });
    const { http, readyz } = await healthOf(node);
    const jsm = await jetstreamManager(env.nc);
    try {
      expect(await readyz()).toBe("200 ready");
      // `nats consumer rm MAIL_EVENTS ledger`: nothing would reach the ledger, its height would stand still.
      await jsm.consumers.delete(Names.eventsStream, Names.ledgerConsumer);
      await until("503 while the consumer is gone", async () => (await readyz()).startsWith("503"), 30_000, 100);
      expect(await readyz()).toMatch(/^503 not ready: the events consumer MAIL_EVENTS\/ledger: pulling from the consumer fails/);
      await provision(env.nc, jsm, { replicas: 3 }, { clock: systemClock });
      await publishEvents(env.nc, "ledger-consumer-back", 0, 5);
      await until("200 once it pulls again", async () => (await readyz()) === "200 ready", 30_000, 100);
    } finally {
      http.close();
      await node.drain();
    }
  }, 120_000);

  it("is 503 while the node's NATS connection is down and reconnecting, 200 again once it is back", async () => {
    // A client of server 0 only, so that killing it disconnects the client (instead of failing over).
    const server = env.cluster.servers[0]!;
    const nc = await connect({ servers: [server.url], ignoreClusterUpdates: true, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    const actor = { status: () => ({ state: "running" as const }) } as unknown as Actor;
    const { log, lines } = capture("info");
    const { server: http, port } = await serveHealth({ host: "127.0.0.1", port: 0, actor, nc, metrics: createMetrics({ defaults: false }), log });
    const readyz = async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
    try {
      expect(await readyz()).toBe(200);
      await env.cluster.kill(0);
      await until("503 while disconnected", async () => (await readyz()) === 503, 15_000, 100);
      // The node's log says so (a server cutting a node off was otherwise silent there).
      expect(lines.filter((l) => l["level"] === 40).map((l) => l["msg"])).toContain("disconnected from NATS; reconnecting");
      await env.cluster.restart(0);
      await until("200 after reconnecting", async () => (await readyz()) === 200, 30_000, 200);
      expect(lines.map((l) => l["msg"])).toContain("reconnected to NATS");
    } finally {
      http.close();
      await nc.close();
    }
  }, 60_000);
});
