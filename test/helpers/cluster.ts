import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startCluster } from "../../nodes/local/nats-cluster.js";
import type { NatsCluster } from "../../nodes/local/nats-cluster.js";

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
export async function startTestCluster(opts: { extraConfig?: string; creds?: { user: string; pass: string }; syncInterval?: string } = {}): Promise<TestCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fen-nats-"));
  const cluster = await startCluster({
    binary: NATS_SERVER_BIN, dir, size: 3, syncInterval: opts.syncInterval ?? "always",
    ...(opts.extraConfig ? { extraConfig: opts.extraConfig } : {}),
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
