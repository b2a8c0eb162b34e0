import { LedgerKeys, loadConfig } from "../config/index.js";
import { systemClock } from "../common/clock.js";
import { createLogger } from "../common/logger.js";
import { createMetrics } from "../common/metrics.js";
import { connectNats } from "../common/nats.js";
import { runUntilSignal } from "../common/runtime.js";
import { ledgerSecrets } from "./keys.js";
import { createLedgerNode } from "./ledger-node.js";

const config = loadConfig(LedgerKeys, process.env);
const node = config.nodeName ?? `ledger-${process.pid}`;
const log = createLogger({ level: config.logLevel, node });
const secrets = ledgerSecrets(config);
const nc = await connectNats(config, node);
const metrics = createMetrics();
const actor = createLedgerNode({ nc, log, clock: systemClock, node, metrics, ...secrets }, config);
const code = await runUntilSignal({ actor, nc, config, metrics, log });
const st = actor.status();
process.exitCode = code !== 0 || (st.state === "closed" && st.error !== undefined) ? 1 : 0;
