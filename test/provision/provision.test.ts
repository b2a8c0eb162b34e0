import { afterAll, beforeAll, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { TimeoutError } from "@nats-io/nats-core";
import { placed, provision } from "../../nodes/provision/index.js";
import { Names } from "../../protocol/index.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { systemClock } from "../../nodes/common/clock.js";

// The third server is held back at first: a cluster whose meta leader has
// not heard from enough servers refuses to place an R3 stream, which is what
// a just-started cluster answers until every server's stats have arrived.
let cluster: TestCluster;
let nc: NatsConnection;
beforeAll(async () => {
  cluster = await startTestCluster({ held: [2] });
  nc = await connect({ servers: cluster.urls.slice(0, 2) });
});
afterAll(async () => { await nc?.close(); await cluster?.dispose(); });

it("a cluster that cannot place R3 yet: provisioning waits, then fails with PLACEMENT_FAILED, having created nothing", async () => {
  const jsm = await jetstreamManager(nc);
  const waits: string[] = [];
  await expect(provision(nc, jsm, { replicas: 3 }, { clock: systemClock, timeoutMs: 1500, intervalMs: 200, onWait: (what) => waits.push(what) }))
    .rejects.toMatchObject({ code: "PLACEMENT_FAILED", message: expect.stringContaining(`stream ${Names.workStream}`) });
  expect(waits.length).toBeGreaterThan(2);
  expect(await jsm.streams.names().next()).toEqual([]);
});

it("provisioning waits for the third server, then creates everything once; a second run is a no-op; a changed field is named", async () => {
  const jsm = await jetstreamManager(nc);
  const waits: string[] = [];
  const first = await provision(nc, jsm, { replicas: 3 }, {
    clock: systemClock, intervalMs: 200,
    onWait: (what) => { if (waits.push(what) === 1) void cluster.restart(2); },
  });
  console.log(`provisioning waited ${waits.length} times for the third server (first: ${waits[0]})`);
  expect(waits.length).toBeGreaterThan(0);
  expect(first.every((s) => s.action === "created")).toBe(true);
  expect(first.map((s) => s.name)).toContain(Names.statusBucket);
  const second = await provision(nc, jsm, { replicas: 3 }, { clock: systemClock });
  expect(second.every((s) => s.action === "unchanged")).toBe(true);
  const info = await jsm.streams.info(Names.eventsStream);
  expect(info.config.num_replicas).toBe(3);
  expect(info.cluster?.replicas?.length).toBe(2);
  await jsm.streams.update(Names.eventsStream, { ...info.config, max_msg_size: 1234 });
  await expect(provision(nc, jsm, { replicas: 3 }, { clock: systemClock })).rejects.toMatchObject({ code: "SPEC_MISMATCH", message: expect.stringContaining("field max_msg_size") });
  // The way to ask for an update is the caller's (npm start, the provisioning job); it said npm start's everywhere.
  const mismatch = (hint?: string) => provision(nc, jsm, { replicas: 3 }, { clock: systemClock }, hint ? { updateHint: hint } : {}).then(() => "", (e: Error) => e.message);
  expect(await mismatch("run this job with --update")).toContain("; provision with update (run this job with --update), change it with 'nats stream edit', or remove it");
  expect(await mismatch()).toContain("; provision with update, change it with");
  expect(await mismatch()).not.toContain("npm start");

  // Data from an older version (a consumer limit the spec has since raised): named by default, updated on request.
  const work = await jsm.consumers.info(Names.workStream, Names.workConsumer);
  await jsm.consumers.update(Names.workStream, Names.workConsumer, { ...work.config, max_ack_pending: 2000 });
  const updated = await provision(nc, jsm, { replicas: 3 }, { clock: systemClock }, { update: true });
  expect(updated.filter((s) => s.action === "updated")).toEqual([
    { kind: "stream", name: Names.eventsStream, action: "updated", changed: [`max_msg_size: 1234 → ${info.config.max_msg_size}`] },
    { kind: "consumer", name: `${Names.workStream}/${Names.workConsumer}`, action: "updated", changed: [`max_ack_pending: 2000 → ${work.config.max_ack_pending}`] },
  ]);
  expect((await jsm.consumers.info(Names.workStream, Names.workConsumer)).config.max_ack_pending).toBe(work.config.max_ack_pending);
  expect((await provision(nc, jsm, { replicas: 3 }, { clock: systemClock })).every((s) => s.action === "unchanged")).toBe(true);
});

it("a create that timed out is sent again (creating an identical object is a no-op); other errors are not", async () => {
  let calls = 0;
  const waits: string[] = [];
  const created = await placed("stream X", async () => {
    if (++calls === 1) throw new TimeoutError();
    return "created";
  }, { clock: systemClock, intervalMs: 1, onWait: (_w, reason) => waits.push(reason) });
  expect([created, calls, waits]).toEqual(["created", 2, ["timeout"]]);
  await expect(placed("stream Y", () => Promise.reject(new Error("boom")), { clock: systemClock })).rejects.toThrow("boom");
});
