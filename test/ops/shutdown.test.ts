import path from "node:path";
import { readFile } from "node:fs/promises";
import type { ChildProcess } from "node:child_process";
import { expect, it } from "vitest";
import { freePort } from "../../nodes/local/nats-cluster.js";
import { spawnNode, until } from "../helpers/system.js";
import { useProvisionedCluster } from "../helpers/suite.js";

const env = useProvisionedCluster();

/**
 * A node told to stop while every NATS server is gone (the whole release
 * uninstalled at once, an outage during a rollout, the servers of a
 * `kill -9`'d npm start killed first) stops: it logged "stopped" and then
 * stayed up for ever, its client reconnecting, or (stopping its service
 * waits for a server) never got that far, until something killed it.
 */
it("gateway and processing nodes stop on SIGTERM with every NATS server gone (exit 1 when the drain could not finish)", async () => {
  const base = { FEN_NATS_URLS: env.cluster.urls.join(","), FEN_MODEL_DIR: "none", FEN_DRAIN_TIMEOUT_MS: "2000" };
  const nodes: { role: string; child: ChildProcess; port: number; log: string }[] = [];
  for (const role of ["gateway", "processing"] as const) {
    const port = await freePort();
    const log = path.join(env.cluster.dir, `shutdown-${role}.log`);
    nodes.push({ role, child: spawnNode(role, { ...base, FEN_HTTP_PORT: String(port) }, log), port, log });
  }
  try {
    await until("every node ready", async () => {
      for (const n of nodes) if ((await fetch(`http://127.0.0.1:${n.port}/readyz`).catch(() => ({ status: 0 }))).status !== 200) return false;
      return true;
    }, 60_000, 200);
    for (let i = 0; i < 3; i++) await env.cluster.kill(i);
    await until("every node not ready", async () => {
      for (const n of nodes) if ((await fetch(`http://127.0.0.1:${n.port}/readyz`).catch(() => ({ status: 0 }))).status !== 503) return false;
      return true;
    }, 30_000, 200);
    const exits = nodes.map((n) => new Promise<number | null>((r) => (n.child.exitCode !== null ? r(n.child.exitCode) : n.child.once("exit", (code) => r(code)))));
    for (const n of nodes) n.child.kill("SIGTERM");
    // A drain that cannot finish (stopping the service waits for a server) is given up after 10 s without one: exit 1.
    const codes = await Promise.race([Promise.all(exits), new Promise<"still running">((r) => setTimeout(() => r("still running"), 25_000))]);
    const logs = await Promise.all(nodes.map((n) => readFile(n.log, "utf8")));
    expect(codes, logs.join("\n").slice(-3000)).not.toBe("still running");
    (codes as (number | null)[]).forEach((code, i) => {
      expect([0, 1], nodes[i]!.role).toContain(code);
      expect(logs[i], nodes[i]!.role).toMatch(/"msg":"stopped"/);
      if (code === 1) expect(logs[i], nodes[i]!.role).toMatch(/"msg":"no NATS server answers: stopping without finishing the drain"/);
    });
  } finally {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill("SIGKILL");
    for (let i = 0; i < 3; i++) await env.cluster.restart(i);
  }
}, 120_000);
