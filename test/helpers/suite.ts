import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll } from "vitest";
import { startTestCluster } from "./cluster.js";
import type { TestCluster } from "./cluster.js";
import { connectAndProvision } from "./system.js";

// Vitest hooks live here, not in system.ts: the benchmark scripts import
// system.ts outside vitest, where importing "vitest" throws.

/**
 * Registers the common per-file setup: a real 3-node cluster, provisioned,
 * and one connection to it, torn down after the file. Read `.cluster` and
 * `.nc` inside tests and later hooks (they exist once beforeAll has run).
 */
export function useProvisionedCluster(): { readonly cluster: TestCluster; readonly nc: NatsConnection } {
  let cluster: TestCluster | undefined;
  let nc: NatsConnection | undefined;
  beforeAll(async () => {
    cluster = await startTestCluster();
    nc = await connectAndProvision(cluster.urls);
  });
  afterAll(async () => {
    await nc?.close();
    await cluster?.dispose();
  });
  return {
    get cluster() { if (!cluster) throw new Error("cluster not started yet"); return cluster; },
    get nc() { if (!nc) throw new Error("cluster not started yet"); return nc; },
  };
}
