import { describe, expect, it } from "vitest";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { JsMsg } from "@nats-io/jetstream";
import { createPullFeed, createRoomGate } from "../../nodes/common/pull-feed.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { testLog, until } from "../helpers/system.js";

/**
 * The pull feed's back-pressure (`room`) holds after a pull request the
 * server voided: a consumer leader change ends the request with "409
 * Leadership Change", and the feed pulls again at once, but only once the
 * caller has room. (It used to pull again regardless, so a node could hold a
 * batch more than it takes at once after each change: items held without
 * `working()` come back to another node after ack_wait.)
 */
const env = useProvisionedCluster();

it("after a leader change voids its pull request, the feed asks for more only once the caller has room", async () => {
  const jsm = await jetstreamManager(env.nc);
  await jsm.streams.add({ name: "FEED_TEST", subjects: ["feedtest.>"], num_replicas: 3 });
  await jsm.consumers.add("FEED_TEST", { durable_name: "feed", ack_policy: AckPolicy.Explicit });
  const js = jetstream(env.nc);
  const got: JsMsg[] = [];
  let letIn!: () => void;
  const noRoom = new Promise<void>((r) => (letIn = r));
  const feed = createPullFeed(await js.consumers.get("FEED_TEST", "feed"), (m) => got.push(m), { batch: 4, expiresMs: 30_000, room: () => noRoom }, testLog);
  try {
    // The first request is open with 2 of its 4 messages delivered.
    for (let i = 0; i < 2; i++) await js.publish(`feedtest.${i}`, "x");
    await until("the first two messages", () => got.length === 2, 10_000);
    const res = await env.nc.request("$JS.API.CONSUMER.LEADER.STEPDOWN.FEED_TEST.feed", undefined, { timeout: 10_000 });
    expect(JSON.parse(new TextDecoder().decode(res.data))).toMatchObject({ success: true });
    for (let i = 2; i < 12; i++) await js.publish(`feedtest.${i}`, "x");
    // No room: nothing more may come, however long the caller is busy.
    await new Promise((r) => setTimeout(r, 1500));
    expect(got.length).toBe(2);
    expect(feed.failing()).toBeUndefined();
    // Room again: the feed pulls from the new leader.
    letIn();
    await until("the messages after the change", () => got.length === 12, 10_000);
  } finally {
    for (const m of got) m.ack();
    feed.stop();
    await feed.closed;
  }
}, 60_000);

describe("createRoomGate", () => {
  it("resolves room() at once while there is room, else at the first freed() after which there is", async () => {
    let used = 0;
    const { room, freed } = createRoomGate(() => used < 2);
    await room();
    used = 2;
    let resolved = false;
    const waiting = room().then(() => { resolved = true; });
    freed(); // still no room
    await new Promise((r) => setTimeout(r, 10));
    expect(resolved).toBe(false);
    used = 1;
    freed();
    await waiting;
    expect(resolved).toBe(true);
    freed(); // nobody waits: a no-op
  });
});
