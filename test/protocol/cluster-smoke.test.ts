import { afterAll, beforeAll, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { placed } from "../../nodes/provision/index.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { systemClock } from "../../nodes/common/clock.js";

let cluster: TestCluster;
beforeAll(async () => { cluster = await startTestCluster(); });
afterAll(async () => { await cluster?.dispose(); });

it("starts a 3-node JetStream cluster whose meta group has 3 peers", async () => {
  const nc = await connect({ servers: cluster.urls });
  const jsm = await jetstreamManager(nc);
  // Placement can still be refused for a moment after waitReady (see `placed`).
  const si = await placed("SMOKE", () => jsm.streams.add({ name: "SMOKE", subjects: ["smoke.>"], num_replicas: 3 }), { clock: systemClock });
  expect(si.cluster?.replicas?.length).toBe(2);
  await nc.close();
});

// `npm start` on existing data restarts every server at once. The meta group
// is ready before the streams have re-elected their leaders; provisioning
// right then used to time out on `streams.info` (and left the servers
// running). Ready must mean the streams and consumers answer.
it("after a whole-cluster restart on the same data, waitReady means streams and consumers answer at once", async () => {
  const nc = await connect({ servers: cluster.urls });
  const jsm = await jetstreamManager(nc);
  for (const name of ["RESTART_A", "RESTART_B", "RESTART_C"]) {
    await placed(name, () => jsm.streams.add({ name, subjects: [`${name.toLowerCase()}.>`], num_replicas: 3 }), { clock: systemClock });
    await jsm.consumers.add(name, { durable_name: "d", ack_policy: "explicit" });
    await jetstream(nc).publish(`${name.toLowerCase()}.x`, new TextEncoder().encode("kept"));
  }
  await nc.close();

  await cluster.stop();
  await Promise.all(cluster.servers.map((_, i) => cluster.restart(i)));
  await cluster.waitReady(60_000);

  const nc2 = await connect({ servers: cluster.urls });
  try {
    const jsm2 = await jetstreamManager(nc2, { timeout: 1500 });
    for (const name of ["RESTART_A", "RESTART_B", "RESTART_C"]) {
      expect((await jsm2.streams.info(name)).state.messages).toBe(1);
      expect((await jsm2.consumers.info(name, "d")).num_pending).toBe(1);
    }
  } finally {
    await nc2.close();
  }
});
