import { afterAll, beforeAll, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { StorageType } from "@nats-io/jetstream";
import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { provision } from "../../nodes/provision/index.js";
import { Names, bucketSpecs, consumerSpecs, streamSpecs } from "../../protocol/index.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { systemClock } from "../../nodes/common/clock.js";

/**
 * The specs pin the server defaults the design relies on (no message limit,
 * no consumer filter, no expiry of bucket entries). Before, provisioning
 * compared only the fields FastEmailNet chose, and reported a work stream
 * someone had limited to 5 messages, or a work consumer filtered to no
 * subject, as "unchanged".
 */
let cluster: TestCluster;
let nc: NatsConnection;
let jsm: JetStreamManager;
beforeAll(async () => {
  cluster = await startTestCluster();
  nc = await connect({ servers: cluster.urls });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => { await nc?.close(); await cluster?.dispose(); });

/** The fields the specs pin since they list the server's defaults; objects created before did not send them. */
const PINNED_DEFAULTS = ["max_msgs", "max_bytes", "max_msgs_per_subject", "sealed", "deny_delete", "deny_purge", "allow_rollup_hdrs", "filter_subject", "filter_subjects", "deliver_subject", "backoff"];
const without = <T extends object>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([k]) => !PINNED_DEFAULTS.includes(k))) as Partial<T>;
const run = (update = false) => provision(nc, jsm, { replicas: 3 }, { clock: systemClock }, { update });

it("objects as the previous specs created them (without the pinned defaults) are unchanged: an existing deployment starts as before", async () => {
  for (const spec of streamSpecs({ replicas: 3 })) await jsm.streams.add(without(spec) as StreamConfig);
  for (const { stream, ...cfg } of consumerSpecs()) await jsm.consumers.add(stream, without(cfg));
  const js = jetstream(nc);
  for (const b of bucketSpecs({ replicas: 3 })) {
    if (b.kind === "kv") await new Kvm(js).create(b.name, { replicas: b.replicas, history: b.history });
    else await new Objm(js).create(b.name, { replicas: b.replicas });
    if (b.allow_atomic) {
      const info = await jsm.streams.info(`KV_${b.name}`);
      await jsm.streams.update(info.config.name, { ...info.config, allow_atomic: true });
    }
  }
  const steps = await run();
  expect(steps.filter((s) => s.action !== "unchanged")).toEqual([]);
  expect(steps).toHaveLength(8);
});

it.each([
  ["stream", Names.workStream, "max_msgs", 5, "5", "-1"],
  ["stream", Names.eventsStream, "max_bytes", 4096, "4096", "-1"],
  ["stream", Names.quarantineStream, "max_msgs_per_subject", 1, "1", "-1"],
  ["kv", `KV_${Names.statusBucket}`, "max_age", 3600 * 1e9, "3600000000000", "0"],
  ["kv", `KV_${Names.ledgerBucket}`, "max_bytes", 1 << 30, String(1 << 30), "-1"],
  ["object", `OBJ_${Names.bodiesBucket}`, "max_age", 86_400 * 1e9, "86400000000000", "0"],
] as const)("[%s] %s: %s changed on the server is SPEC_MISMATCH naming the field; updated on request", async (kind, stream, field, value, have, want) => {
  await run(); // provisioned (by the first test, or now)
  const info = await jsm.streams.info(stream);
  await jsm.streams.update(stream, { ...info.config, [field]: value });
  const name = kind === "stream" ? stream : stream.replace(/^(KV|OBJ)_/, "");
  await expect(run()).rejects.toMatchObject({
    code: "SPEC_MISMATCH", message: expect.stringContaining(`${kind} ${name}: field ${field} is ${have} on the server but the spec says ${want}`),
  });
  const updated = await run(true);
  expect(updated.filter((s) => s.action === "updated")).toEqual([{ kind, name, action: "updated", changed: [`${field}: ${have} → ${want}`] }]);
  expect((await jsm.streams.info(stream)).config[field]).toBe(info.config[field]);
  expect((await run()).every((s) => s.action === "unchanged")).toBe(true);
});

it("a work consumer filtered to a subject no work item has is SPEC_MISMATCH naming filter_subject; updated on request (the filter removed)", async () => {
  const name = `${Names.workStream}/${Names.workConsumer}`;
  await run(); // provisioned (by the first test, or now)
  await jsm.consumers.update(Names.workStream, Names.workConsumer, { filter_subject: "fen.work.nothing" });
  await expect(run()).rejects.toMatchObject({
    code: "SPEC_MISMATCH", message: expect.stringContaining(`consumer ${name}: field filter_subject is "fen.work.nothing" on the server but the spec says unset`),
  });
  const updated = await run(true);
  expect(updated.filter((s) => s.action === "updated")).toEqual([{ kind: "consumer", name, action: "updated", changed: ['filter_subject: "fen.work.nothing" → unset'] }]);
  expect((await jsm.consumers.info(Names.workStream, Names.workConsumer)).config.filter_subject).toBeUndefined();
  expect((await run()).every((s) => s.action === "unchanged")).toBe(true);
});

it("a bucket made in memory by hand is SPEC_MISMATCH naming storage (before: \"unchanged\", and a restart lost every queued body)", async () => {
  await run(); // provisioned (by the first test, or now)
  const stream = `OBJ_${Names.bodiesBucket}`;
  await jsm.streams.delete(stream);
  await new Objm(jetstream(nc)).create(Names.bodiesBucket, { replicas: 3, storage: StorageType.Memory });
  await expect(run()).rejects.toMatchObject({
    code: "SPEC_MISMATCH", message: expect.stringContaining(`object ${Names.bodiesBucket}: field storage is "memory" on the server but the spec says "file"`),
  });
  await jsm.streams.delete(stream);
  await run();
  expect((await jsm.streams.info(stream)).config.storage).toBe(StorageType.File);
});

/**
 * allow_atomic is set on the ledger bucket by an update after the bucket API
 * created it. A start stopped between the two (a timeout, a kill) left a
 * bucket every later start refused with SPEC_MISMATCH; it is now completed.
 */
it("a ledger bucket created without allow_atomic (a start stopped half-way) is completed, not refused; with another field differing it is still refused", async () => {
  await run(); // provisioned (by the first test, or now)
  const stream = `KV_${Names.ledgerBucket}`;
  const recreate = async () => {
    await jsm.streams.delete(stream);
    await new Kvm(jetstream(nc)).create(Names.ledgerBucket, { replicas: 3, history: 1 });
    expect((await jsm.streams.info(stream)).config.allow_atomic).toBeFalsy();
  };
  await recreate();
  const steps = await run();
  expect(steps.filter((s) => s.action !== "unchanged")).toEqual([
    { kind: "kv", name: Names.ledgerBucket, action: "updated", changed: ["allow_atomic: unset → true"] },
  ]);
  expect((await jsm.streams.info(stream)).config.allow_atomic).toBe(true);
  expect((await run()).every((s) => s.action === "unchanged")).toBe(true);

  await recreate();
  const info = await jsm.streams.info(stream);
  await jsm.streams.update(stream, { ...info.config, max_age: 3600 * 1e9 });
  await expect(run()).rejects.toMatchObject({ code: "SPEC_MISMATCH", message: expect.stringContaining(`kv ${Names.ledgerBucket}: field max_age is 3600000000000`) });
  await run(true);
  expect((await jsm.streams.info(stream)).config).toMatchObject({ max_age: 0, allow_atomic: true });
});
