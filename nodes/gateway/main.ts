import { GatewayKeys, loadConfig } from "../config/index.js";
import { systemClock } from "../common/clock.js";
import { createLogger } from "../common/logger.js";
import { createMetrics } from "../common/metrics.js";
import { connectNats } from "../common/nats.js";
import { orExit } from "../common/startup.js";
import { endProcess, runUntilSignal, watchSupervisor } from "../common/runtime.js";
import { createGateway } from "./gateway.js";
import { checkServerPayload } from "./submit.js";

// Before anything slow (the model load, connecting): npm start may go away meanwhile.
watchSupervisor();

const config = await orExit("gateway", () => loadConfig(GatewayKeys, process.env));
const node = config.nodeName ?? `gateway-${process.pid}`;
const log = createLogger({ level: config.logLevel, node });
const nc = await orExit("gateway", () => connectNats(config, node));
// A message limit whose requests the servers cannot carry: refused before the service is offered.
await orExit("gateway", () => checkServerPayload(config.maxMessageBytes, nc.info?.max_payload));
const metrics = createMetrics({ role: "gateway" });
const actor = createGateway({ nc, log, clock: systemClock, node, metrics }, config);
await endProcess(await runUntilSignal({ actor, nc, config, metrics, log }));
