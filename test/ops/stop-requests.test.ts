import path from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { until } from "../helpers/system.js";
import { useProvisionedCluster } from "../helpers/suite.js";

/**
 * How a node takes stop requests (nodes/common/runtime.ts), with the real runtime around an actor whose start
 * and drain take a known time (test/ops/stop/actor-main.ts).
 */
const env = useProvisionedCluster();
const script = path.join(path.dirname(fileURLToPath(import.meta.url)), "stop/actor-main.ts");

function run(vars: Record<string, string>) {
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    env: { ...process.env, STOP_URLS: env.cluster.urls.join(","), ...vars }, stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
  const exit = new Promise<{ code: number | null; signal: string | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
  const logged = (msg: string) => until(`"${msg}" logged`, async () => out.includes(`"msg":"${msg}"`), 30_000, 20);
  const msgs = () => out.split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { msg: string }).msg);
  return { child, exit, logged, msgs };
}

it("a SIGTERM while the node starts is kept: the node drains once started and exits 0 (before, the signal killed it; as PID 1 it was dropped)", async () => {
  const n = run({ STOP_START_MS: "6000" });
  await n.logged("actor starting");
  n.child.kill("SIGTERM");
  // Sent while the actor starts (it takes 6 s): the log shows no "actor running" before the signal was taken.
  expect(await n.exit).toEqual({ code: 0, signal: null });
  const m = n.msgs();
  expect(m.slice(m.indexOf("actor running"))).toEqual(["actor running", "stopping", "actor draining", "actor drained", "stopped"]);
}, 60_000);

it("a second SIGTERM during the drain is logged, and the drain finishes (before, it killed the node mid-drain)", async () => {
  // A drain long enough for both signals to land in it on a busy machine.
  const n = run({ STOP_DRAIN_MS: "6000" });
  await n.logged("actor running");
  n.child.kill("SIGTERM");
  await n.logged("actor draining");
  n.child.kill("SIGTERM");
  n.child.kill("SIGINT");
  expect(await n.exit).toEqual({ code: 0, signal: null });
  const m = n.msgs();
  expect(m.filter((x) => x.startsWith("already stopping"))).toHaveLength(2);
  expect(m.slice(-2)).toEqual(["actor drained", "stopped"]);
}, 60_000);

it("an actor that stops on a fault of its own makes the node exit 1, not drained as if stopped on purpose (before: exit 0)", async () => {
  const n = run({ STOP_FAIL: "1" });
  expect(await n.exit).toEqual({ code: 1, signal: null });
  expect(n.msgs()).not.toContain("actor draining");
}, 60_000);
