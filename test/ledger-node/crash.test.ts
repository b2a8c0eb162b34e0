import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import type { NatsConnection } from "@nats-io/nats-core";
import { freePort } from "../../nodes/local/nats-cluster.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { connectAndProvision, spawnNode, until } from "../helpers/system.js";
import { headSize, ledgerCli, ledgerIdentity, ledgerKv, publishEvents } from "./helpers.js";

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once("exit", () => r())));

describe("ledger node crash", () => {
  let cluster: TestCluster;
  let nc: NatsConnection;
  const children: ChildProcess[] = [];
  const id = ledgerIdentity();

  beforeAll(async () => {
    cluster = await startTestCluster();
    nc = await connectAndProvision(cluster.urls);
  });
  afterAll(async () => {
    for (const c of children) c.kill("SIGKILL");
    await nc?.close();
    await cluster?.dispose();
  });

  it("SIGKILLed under load and restarted: no event lost, none appended twice, the audit passes", async () => {
    const kv = await ledgerKv(nc);
    const env = { ...id.env, FEN_NATS_URLS: cluster.urls.join(","), FEN_LEDGER_BATCH_SIZE: "64", FEN_LEDGER_BATCH_MS: "20" };
    const N = 6000;
    const publishing = publishEvents(nc, "crash", 0, N, 128);
    const victim = spawnNode("ledger", { ...env, FEN_NODE_NAME: "ledger-victim", FEN_HTTP_PORT: String(await freePort()) }, `${cluster.dir}/ledger-victim.log`);
    children.push(victim);
    const atKill = await until("the victim to append", async () => {
      const n = await headSize(kv);
      return n >= 1500 && n;
    }, 60_000, 20);
    victim.kill("SIGKILL");
    await exited(victim);
    const survivor = spawnNode("ledger", { ...env, FEN_NODE_NAME: "ledger-restarted" }, `${cluster.dir}/ledger-restarted.log`);
    children.push(survivor);
    await publishing;
    // Events the victim held unacknowledged come back after the ledger consumer's ack wait (LEDGER_ACK_WAIT_MS, 10 s).
    await until(`all ${N} events appended`, async () => (await headSize(kv)) >= N, 120_000, 500);
    survivor.kill("SIGTERM");
    await exited(survivor);
    expect(survivor.exitCode).toBe(0);
    const audit = await ledgerCli(["verify", "--json", "--server", cluster.urls.join(","), "--key", id.verifierKey], {});
    const report = JSON.parse(audit.stdout) as { ok: boolean; size: number; blocks: number };
    console.log(`ledger kill: head at ${atKill} entries when SIGKILLed; ${report.size} entries in ${report.blocks} blocks after restart`);
    // Exactly N entries and no duplicate (the audit faults on an event id seen twice).
    expect(report).toMatchObject({ ok: true, size: N });
    expect(audit.code).toBe(0);
  }, 240_000);
});
