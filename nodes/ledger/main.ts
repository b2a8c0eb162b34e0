import { LedgerKeys, loadConfig } from "../config/index.js";
import { systemClock } from "../common/clock.js";
import { createLogger } from "../common/logger.js";
import { createMetrics } from "../common/metrics.js";
import { connectNats } from "../common/nats.js";
import { orExit } from "../common/startup.js";
import { endProcess, runUntilSignal, watchSupervisor } from "../common/runtime.js";
import { ledgerSecrets } from "./keys.js";
import { createLedgerNode } from "./ledger-node.js";

// Before anything slow (the model load, connecting): npm start may go away meanwhile.
watchSupervisor();

const config = await orExit("ledger", () => loadConfig(LedgerKeys, process.env));
const node = config.nodeName ?? `ledger-${process.pid}`;
const log = createLogger({ level: config.logLevel, node });
const secrets = await orExit("ledger", () => ledgerSecrets(config));
const nc = await orExit("ledger", () => connectNats(config, node));
const metrics = createMetrics({ role: "ledger" });
const actor = createLedgerNode({ nc, log, clock: systemClock, node, metrics, ...secrets }, config);
await endProcess(await runUntilSignal({ actor, nc, config, metrics, log }));
