import { afterAll, beforeAll, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { Names } from "../../protocol/index.js";
import type { Actor } from "../../nodes/common/actor.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { SmtpSink } from "../../nodes/local/smtp-sink.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { connectAndProvision, pool, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

/**
 * A deferred mail waits for its retry as a JetStream nak(delay), holding an
 * ack-pending slot of the work consumer all that time; when the slots run
 * out the server delivers no new work. Mail that one destination keeps
 * deferring must not hold back mail that can be delivered.
 */
let cluster: TestCluster;
let nc: NatsConnection;
let sink: SmtpSink;
const actors: Actor[] = [];
beforeAll(async () => {
  cluster = await startTestCluster();
  nc = await connectAndProvision(cluster.urls);
  // The relay refuses every recipient at slow.example for now.
  sink = await startSmtpSink({ rcpt: (a) => (a.endsWith("@slow.example") ? { code: 451, message: "4.4.3 try later" } : undefined) });
  actors.push(await startGateway(nc), await startProcessing(nc, sink.port, { FEN_RETRY_BASE_MS: "600000", FEN_RETRY_MAX_MS: "600000" }));
});
afterAll(async () => {
  for (const a of actors) await a.drain();
  await sink?.close();
  await nc?.close();
  await cluster?.dispose();
});

it("2,100 mails deferred for 10 minutes (more than the work consumer's old 2,000 slots) do not hold back a fresh mail", async () => {
  const DEFERRED = 2100;
  const ids = await pool(Array.from({ length: DEFERRED }, (_, i) => i), 32, async (i) =>
    (await submit(nc, structured(`slow-${i}`, { key: `slow-${i}`, to: [`user${i}@slow.example`] }))).mailId);
  const jsm = await jetstreamManager(nc);
  await until(`${DEFERRED} mails deferred`, async () => {
    const ci = await jsm.consumers.info(Names.workStream, Names.workConsumer);
    return ci.num_pending === 0 && ci.num_ack_pending === DEFERRED && ci;
  }, 120_000, 500);
  expect((await status(nc, ids[0]!)).state).toBe("Deferred");

  const fresh = await submit(nc, structured("fresh", { key: "fresh-1", to: ["someone@example.net"] }));
  await until("the fresh mail Sent", async () => (await status(nc, fresh.mailId)).state === "Sent", 30_000);
  expect(sink.messages.map((m) => m.messageId)).toEqual([fresh.messageId]);
}, 180_000);
