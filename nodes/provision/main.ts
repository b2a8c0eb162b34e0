import { jetstreamManager } from "@nats-io/jetstream";
import { systemClock } from "../common/clock.js";
import { CommonKeys, loadConfig } from "../config/index.js";
import { createLogger } from "../common/logger.js";
import { connectNats } from "../common/nats.js";
import { orExit } from "../common/startup.js";
import { provision } from "./provision.js";

/**
 * Provisioning job: creates or checks every stream, consumer and bucket, then
 * exits. With `--update`, objects that differ from the spec are updated to it
 * (after an upgrade changed a spec) instead of failing with SPEC_MISMATCH.
 */
const update = process.argv.includes("--update");
const config = await orExit("provision", () => loadConfig(CommonKeys, process.env));
const log = createLogger({ level: config.logLevel, node: "provision" });
const nc = await orExit("provision", () => connectNats(config, "fen-provision"));
try {
  const steps = await provision(nc, await jetstreamManager(nc), { replicas: config.replicas }, {
    clock: systemClock,
    onWait: (what, reason, waitedMs) => log.warn({ what, reason, waitedMs }, "cluster cannot place it yet; waiting"),
  }, { update, updateHint: "run this job with --update; with the chart, --set provision.updateSpecs=true" });
  for (const s of steps) log.info(s, "provisioned");
} catch (err) {
  log.fatal({ err }, "provisioning failed");
  process.exitCode = 1;
} finally {
  await nc.close();
}
