import { ProcessingKeys, loadConfig } from "../config/index.js";
import { systemClock, systemRandom } from "../common/clock.js";
import { createLogger } from "../common/logger.js";
import { createMetrics } from "../common/metrics.js";
import { connectNats } from "../common/nats.js";
import { orExit } from "../common/startup.js";
import { endProcess, runUntilSignal, watchSupervisor } from "../common/runtime.js";
import { loadMailClassifier } from "./load-classifier.js";
import { createDelivery, relayOptions } from "./delivery.js";
import { createProcessingNode } from "./processor.js";
import { createWorkLagSampler } from "./lag.js";
import { jetstreamManager } from "@nats-io/jetstream";

// Before anything slow (the model load, connecting): npm start may go away meanwhile.
watchSupervisor();

const config = await orExit("processing", () => loadConfig(ProcessingKeys, process.env));
const relay = relayOptions(config);
const node = config.nodeName ?? `processing-${process.pid}`;
const log = createLogger({ level: config.logLevel, node });
// A missing or corrupt model stops the node here, before it takes any work.
const classifier = await loadMailClassifier(config.modelDir).catch((err: unknown) => {
  log.fatal({ err }, "classifier model could not be loaded; refusing to start");
  process.exit(1);
});
const nc = await orExit("processing", () => connectNats(config, node));
const metrics = createMetrics({ role: "processing" });
const delivery = createDelivery(relay, { log: log.child({ actor: "delivery" }) });
const actor = createProcessingNode({ nc, log, clock: systemClock, random: systemRandom, node, metrics, delivery, classifier }, config);
const lag = createWorkLagSampler({ jsm: await jetstreamManager(nc, { checkAPI: false }), metrics, log });
lag.start();
void actor.closed.then(() => lag.stop());
await endProcess(await runUntilSignal({ actor, nc, config, metrics, log }));
