import { afterAll, beforeAll, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { provision } from "../../nodes/provision/index.js";
import { Names } from "../../protocol/index.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";

let cluster: TestCluster;
let nc: NatsConnection;
beforeAll(async () => {
  cluster = await startTestCluster();
  nc = await connect({ servers: cluster.urls });
});
afterAll(async () => { await nc?.close(); await cluster?.dispose(); });

it("creates everything once, is a no-op the second time, and names a changed field", async () => {
  const jsm = await jetstreamManager(nc);
  const first = await provision(nc, jsm, { replicas: 3 });
  expect(first.every((s) => s.action === "created")).toBe(true);
  expect(first.map((s) => s.name)).toContain(Names.statusBucket);
  const second = await provision(nc, jsm, { replicas: 3 });
  expect(second.every((s) => s.action === "unchanged")).toBe(true);
  const info = await jsm.streams.info(Names.eventsStream);
  expect(info.config.num_replicas).toBe(3);
  await jsm.streams.update(Names.eventsStream, { ...info.config, max_msg_size: 1234 });
  await expect(provision(nc, jsm, { replicas: 3 })).rejects.toMatchObject({ code: "SPEC_MISMATCH", message: expect.stringContaining("field max_msg_size") });
});
