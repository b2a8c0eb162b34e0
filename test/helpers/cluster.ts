import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ClusterStartError, startCluster } from "../../nodes/local/nats-cluster.js";
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
  /** Servers left unlaunched (see ClusterOptions.held); waitReady then covers the others. */
  held?: ClusterOptions["held"];
} = {}): Promise<TestCluster> {
  // Ports are picked free, then bound by the servers a moment later; on a
  // busy machine another process can take one in between, and that server
  // exits or never joins. Such a start is retried on fresh ports, up to 3 times.
  let cluster: NatsCluster | undefined;
  let dir = opts.dir ?? "";
  for (let attempt = 1; ; attempt++) {
    if (!opts.dir) dir = await mkdtemp(path.join(os.tmpdir(), "fen-nats-"));
    const c = await startCluster({
      binary: NATS_SERVER_BIN, dir, size: 3, syncInterval: opts.syncInterval ?? "always",
      ...(opts.extraConfig ? { extraConfig: opts.extraConfig } : {}),
      ...(opts.env ? { env: opts.env } : {}), ...(opts.tls ? { tls: opts.tls } : {}),
      ...(opts.held ? { held: opts.held } : {}),
    });
    try {
      await c.waitReady(attempt < 3 ? 45_000 : 60_000, opts.creds);
      cluster = c;
      break;
    } catch (err) {
      await c.stop();
      if (attempt >= 3 || !(err instanceof ClusterStartError)) throw err;
      process.stderr.write(`test cluster start failed (${err.message}); retrying on fresh ports\n`);
      if (opts.dir) await Promise.all(c.servers.map((s) => rm(path.join(dir, s.name), { recursive: true, force: true })));
      else await rm(dir, { recursive: true, force: true });
    }
  }
  return Object.assign(cluster, {
    dir,
    async dispose() {
      await cluster.stop();
      if (!process.env["FEN_KEEP_TEST_DIRS"]) await rm(dir, { recursive: true, force: true });
    },
  });
}
