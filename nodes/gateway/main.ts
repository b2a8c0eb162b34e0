import { GatewayKeys, loadConfig } from "../config/index.js";
import { systemClock } from "../common/clock.js";
import { createLogger } from "../common/logger.js";
import { createMetrics } from "../common/metrics.js";
import { connectNats } from "../common/nats.js";
import { runUntilSignal } from "../common/runtime.js";
import { createGateway } from "./gateway.js";

const config = (() => {
  try {
    return loadConfig(GatewayKeys, process.env);
  } catch (err) {
    console.error(`fen-gateway: ${(err as { code?: string }).code ?? "ERROR"}: ${(err as Error).message}`);
    process.exit(1);
  }
})();
const node = config.nodeName ?? `gateway-${process.pid}`;
const log = createLogger({ level: config.logLevel, node });
const nc = await connectNats(config, node);
const metrics = createMetrics();
const actor = createGateway({ nc, log, clock: systemClock, node, metrics }, config);
process.exitCode = await runUntilSignal({ actor, nc, config, metrics, log });
