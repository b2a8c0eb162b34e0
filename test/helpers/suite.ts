import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll } from "vitest";
import type { Actor } from "../../nodes/common/actor.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { SmtpSink } from "../../nodes/local/smtp-sink.js";
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

/**
 * {@link useProvisionedCluster} plus a real SMTP sink and the actors
 * `start` returns (e.g. a gateway and a processing node delivering to the
 * sink), all stopped after the file: actors drained first, then the sink,
 * the connection and the cluster.
 */
export function usePipeline(opts: {
  readonly sink?: Parameters<typeof startSmtpSink>[0];
  readonly start: (nc: NatsConnection, sinkPort: number) => Promise<Actor[]>;
}): { readonly cluster: TestCluster; readonly nc: NatsConnection; readonly sink: SmtpSink } {
  let cluster: TestCluster | undefined;
  let nc: NatsConnection | undefined;
  let sink: SmtpSink | undefined;
  const actors: Actor[] = [];
  beforeAll(async () => {
    cluster = await startTestCluster();
    nc = await connectAndProvision(cluster.urls);
    sink = await startSmtpSink(opts.sink ?? {});
    actors.push(...await opts.start(nc, sink.port));
  });
  afterAll(async () => {
    for (const a of actors) await a.drain();
    await sink?.close();
    await nc?.close();
    await cluster?.dispose();
  });
  const started = <T>(v: T | undefined): T => { if (v === undefined) throw new Error("pipeline not started yet"); return v; };
  return {
    get cluster() { return started(cluster); },
    get nc() { return started(nc); },
    get sink() { return started(sink); },
  };
}
