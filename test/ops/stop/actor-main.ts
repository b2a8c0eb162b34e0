/**
 * A node's main.ts around an actor whose start and drain take as long as the test says (STOP_START_MS,
 * STOP_DRAIN_MS), or which fails on its own once running (STOP_FAIL=1): the real runtime (stop requests,
 * runUntilSignal, endProcess) on a real NATS connection (STOP_URLS), for test/ops/stop-requests.test.ts.
 */
import { connect } from "@nats-io/transport-node";
import type { Actor, ActorStatus } from "../../../nodes/common/actor.js";
import { createLogger } from "../../../nodes/common/logger.js";
import { createMetrics } from "../../../nodes/common/metrics.js";
import { endProcess, runUntilSignal, watchSupervisor } from "../../../nodes/common/runtime.js";
import type { CommonConfig } from "../../../nodes/config/index.js";

watchSupervisor();
const env = process.env;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = createLogger({ level: "info", node: "stop-test" });
const nc = await connect({ servers: (env["STOP_URLS"] ?? "").split(",") });
let status: ActorStatus = { state: "created" };
let closedNow!: () => void;
const closed = new Promise<void>((r) => { closedNow = r; });
const actor: Actor = {
  async start() {
    log.info("actor starting");
    await sleep(Number(env["STOP_START_MS"] ?? 0));
    status = { state: "running" };
    log.info("actor running");
    if (env["STOP_FAIL"] === "1") {
      setTimeout(() => { status = { state: "closed", error: new Error("a fault of its own") }; log.error("actor failed"); closedNow(); }, 200);
    }
  },
  async drain() {
    status = { state: "draining" };
    log.info("actor draining");
    await sleep(Number(env["STOP_DRAIN_MS"] ?? 0));
    status = { state: "closed" };
    log.info("actor drained");
    closedNow();
  },
  closed,
  status: () => status,
};
const config = { httpHost: "127.0.0.1", httpPort: 0 } as CommonConfig;
await endProcess(await runUntilSignal({ actor, nc, config, metrics: createMetrics({ role: "gateway" }), log }));
