import { afterAll, beforeAll, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";

let cluster: TestCluster;
beforeAll(async () => { cluster = await startTestCluster(); });
afterAll(async () => { await cluster?.dispose(); });

it("starts a 3-node JetStream cluster whose meta group has 3 peers", async () => {
  const nc = await connect({ servers: cluster.urls });
  const jsm = await jetstreamManager(nc);
  const si = await jsm.streams.add({ name: "SMOKE", subjects: ["smoke.>"], num_replicas: 3 });
  expect(si.cluster?.replicas?.length).toBe(2);
  await nc.close();
});
