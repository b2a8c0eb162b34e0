import { expect, it } from "vitest";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { ackConfirmed } from "../../nodes/common/acks.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { testLog, until } from "../helpers/system.js";

/**
 * Acks sent while the consumer's leader steps down are dropped with their
 * reply; `ackConfirmed` sends them again until a leader confirms them, so
 * the messages do not come back after ack_wait. (Before, the processing
 * node and the ledger node gave up after one unanswered `ackAck`: 20 per
 * node in a 28 s step-down probe run, each message redelivered 10 s later.)
 */
const env = useProvisionedCluster();

it("acks of a batch sent as the consumer's leader steps down are confirmed by the next leader, and nothing comes back", async () => {
  const jsm = await jetstreamManager(env.nc);
  await jsm.streams.add({ name: "ACK_TEST", subjects: ["acktest.>"], num_replicas: 3 });
  await jsm.consumers.add("ACK_TEST", { durable_name: "acks", ack_policy: AckPolicy.Explicit, ack_wait: 4_000_000_000 });
  const js = jetstream(env.nc);
  const consumer = await js.consumers.get("ACK_TEST", "acks");
  const rounds = 10;
  const attempts: number[] = [];
  for (let round = 0; round < rounds; round++) {
    await Promise.all(Array.from({ length: 10 }, (_, i) => js.publish(`acktest.${round}.${i}`, "x")));
    const msgs = [];
    for await (const m of await consumer.fetch({ max_messages: 10, expires: 5000 })) {
      msgs.push(m);
      if (msgs.length === 10) break;
    }
    expect(msgs).toHaveLength(10);
    // The step-down and the acks race: the acks reach the old leader, the new one, or neither.
    const stepDown = env.nc.request("$JS.API.CONSUMER.LEADER.STEPDOWN.ACK_TEST.acks", undefined, { timeout: 10_000 }).catch(() => undefined);
    const r = await ackConfirmed(env.nc, msgs, testLog);
    expect(r).toMatchObject({ confirmed: true });
    attempts.push(r.attempts);
    await stepDown;
    // The next pull goes to the new leader: one made before it is in place is answered "no responders" (a
    // fresh-clone CI run on a loaded machine failed here, in the test's own fetch, not in the acks).
    await until("the consumer's new leader", async () => (await jsm.consumers.info("ACK_TEST", "acks").catch(() => undefined))?.cluster?.leader);
  }
  // Past the ack wait: nothing redelivered, nothing awaiting an ack.
  await new Promise((r) => setTimeout(r, 5500));
  const again = [];
  for await (const m of await consumer.fetch({ max_messages: 10, expires: 1000 })) again.push(m.seq);
  const info = await jsm.consumers.info("ACK_TEST", "acks");
  const retried = attempts.filter((a) => a > 1).length;
  console.log(`acks during step-downs: ${rounds} batches of 10 confirmed, ${retried} after a retry (attempts ${attempts.join(",")}); redelivered ${info.num_redelivered}, awaiting ack ${info.num_ack_pending}`);
  // The step-downs did drop acks (10 of 10 batches in a CI run): the test shows the resend, not a lucky race.
  expect(retried).toBeGreaterThan(0);
  expect(again).toEqual([]);
  expect(info.num_ack_pending).toBe(0);
  expect(info.num_redelivered).toBe(0);
}, 120_000);

it("a batch's acks are confirmed at once when nothing goes wrong, and an empty batch needs no attempt", async () => {
  const jsm = await jetstreamManager(env.nc);
  await jsm.streams.add({ name: "ACK_TEST_QUIET", subjects: ["ackquiet.>"], num_replicas: 3 });
  await jsm.consumers.add("ACK_TEST_QUIET", { durable_name: "acks", ack_policy: AckPolicy.Explicit });
  const js = jetstream(env.nc);
  await Promise.all(Array.from({ length: 5 }, (_, i) => js.publish(`ackquiet.${i}`, "x")));
  const msgs = [];
  for await (const m of await (await js.consumers.get("ACK_TEST_QUIET", "acks")).fetch({ max_messages: 5, expires: 5000 })) {
    msgs.push(m);
    if (msgs.length === 5) break;
  }
  expect(await ackConfirmed(env.nc, msgs, testLog)).toEqual({ confirmed: true, attempts: 1 });
  expect((await jsm.consumers.info("ACK_TEST_QUIET", "acks")).num_ack_pending).toBe(0);
  expect(await ackConfirmed(env.nc, [], testLog)).toEqual({ confirmed: true, attempts: 0 });
}, 60_000);
