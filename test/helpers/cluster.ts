import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startCluster } from "../../nodes/local/nats-cluster.js";
import type { ClusterOptions, NatsCluster, ReadyProbeOptions } from "../../nodes/local/nats-cluster.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The pinned nats-server that deploy/tools/install.sh built. */
export const NATS_SERVER_BIN = process.env["FEN_NATS_SERVER"] ?? path.join(root, ".tools/bin/nats-server");
/** The pinned natscli. */
export const NATS_CLI_BIN = path.join(root, ".tools/bin/nats");

/** A started 3-node cluster with a temporary store; `dispose()` removes it. */
export interface TestCluster extends NatsCluster {
  readonly dir: string;
  dispose(): Promise<void>;
}

/**
 * Starts a real 3-node JetStream cluster on free loopback ports with
 * temporary store dirs and waits until the meta leader answers.
 */
export async function startTestCluster(opts: {
  extraConfig?: string; creds?: ReadyProbeOptions; syncInterval?: string;
  /** Server environment (e.g. `$VAR` passwords) and client-port TLS, see ClusterOptions. */
  env?: ClusterOptions["env"]; tls?: ClusterOptions["tls"];
  /** Use this folder (e.g. one holding included config files) instead of a fresh temporary one. */
  dir?: string;
} = {}): Promise<TestCluster> {
  const dir = opts.dir ?? await mkdtemp(path.join(os.tmpdir(), "fen-nats-"));
  const cluster = await startCluster({
    binary: NATS_SERVER_BIN, dir, size: 3, syncInterval: opts.syncInterval ?? "always",
    ...(opts.extraConfig ? { extraConfig: opts.extraConfig } : {}),
    ...(opts.env ? { env: opts.env } : {}), ...(opts.tls ? { tls: opts.tls } : {}),
  });
  await cluster.waitReady(60_000, opts.creds);
  return Object.assign(cluster, {
    dir,
    async dispose() {
      await cluster.stop();
      if (!process.env["FEN_KEEP_TEST_DIRS"]) await rm(dir, { recursive: true, force: true });
    },
  });
}
