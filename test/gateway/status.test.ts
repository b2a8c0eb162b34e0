import { afterAll, beforeAll, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { Codecs, Names, eventSubject, mailIdFromIdempotencyKey, messageIdFor, workSubject } from "../../protocol/index.js";
import type { WorkItem } from "../../protocol/index.js";
import type { Actor } from "../../nodes/common/actor.js";
import { systemClock } from "../../nodes/common/clock.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { createStatusHandler } from "../../nodes/gateway/status.js";
import type { TestCluster } from "../helpers/cluster.js";
import { askWhileLeaderStopped, clusterAwayFromLeaderOf, startGateway, status, structured, submit, withoutWrites } from "../helpers/system.js";

/**
 * mail.status while JetStream changes leaders (a rolling upgrade, a
 * rebalance, `nats stream cluster step-down`): the reads it makes can fail
 * or go unanswered for a moment, and a submission's second write (its
 * PendingProcessing event) can fail after the work item was stored. No
 * processing node runs here: a mail stays PendingProcessing.
 */
let cluster: TestCluster;
let admin: NatsConnection;
let nc: NatsConnection;
let gateway: Actor;
/** The server the gateway and the test's client use: never the mail_status stream's leader. */
let home: number;

beforeAll(async () => {
  ({ cluster, admin, nc, home } = await clusterAwayFromLeaderOf(`KV_${Names.statusBucket}`));
  gateway = await startGateway(nc);
});
afterAll(async () => {
  await gateway?.drain();
  await nc?.close();
  await admin?.close();
  await cluster?.dispose();
});

it("an accepted mail whose PendingProcessing event was not stored is PendingProcessing, not NOT_FOUND", async () => {
  // What a gateway leaves when the event's publish fails after the work item's (MAIL_EVENTS changing leader),
  // or when it dies between the two: the work item alone. The submitter was told the mail is accepted.
  const mailId = mailIdFromIdempotencyKey("event-lost");
  const item: WorkItem = {
    kind: "mail.work", v: 1, mailId, messageId: messageIdFor(mailId, "fastemailnet.local"), submittedAt: new Date().toISOString(),
    envelope: { from: "sender@example.org", to: ["rcpt@example.net"] }, size: 5, body: { inline: Buffer.from("hello").toString("base64") },
    released: false,
  };
  await jetstream(admin).publish(workSubject(mailId), Codecs.workItem.encode(item), { msgID: mailId });
  const st = await status(nc, mailId);
  expect(st).toMatchObject({ mailId, state: "PendingProcessing", attempt: 0, updatedAt: item.submittedAt, recipients: ["rcpt@example.net"], history: [] });
});

it("mail.status while the mail_status stream's leader does not answer: STORE_UNAVAILABLE (retry), not INTERNAL", async () => {
  const accepted = await submit(nc, structured("leader-gone", { key: "leader-gone" }));
  expect((await status(nc, accepted.mailId)).state).toBe("PendingProcessing");
  // The leader stops answering, as during a leader change: every answer is right or STORE_UNAVAILABLE, never INTERNAL.
  const answers = await askWhileLeaderStopped({ cluster, admin, home }, `KV_${Names.statusBucket}`, () => status(nc, accepted.mailId));
  expect(answers.filter((a) => a !== "ok" && a !== "STORE_UNAVAILABLE")).toEqual([]);
  expect(answers).toContain("STORE_UNAVAILABLE");
  expect((await status(nc, accepted.mailId)).state).toBe("PendingProcessing");
}, 90_000);

it("a claim whose events went out and whose status entry was never created is PendingProcessing, its events in the history", async () => {
  // What a node leaves when it dies (or loses the status store) between publishing a claim's events and creating
  // the entry: events up to DeliveryScheduled and no entry. The mail waits for its work item's redelivery.
  const accepted = await submit(nc, structured("claim-unstored", { key: "claim-unstored" }));
  const js = jetstream(admin);
  const kv = await new Kvm(js).open(Names.statusBucket);
  const noWrites = withoutWrites(kv);
  const dying = createMailStateStore({ js, kv: noWrites, readKv: kv, clock: systemClock, node: "dying-node" });
  const begun = await dying.begin(accepted.mailId as never, new Date().toISOString(), ["rcpt@example.net"]);
  await expect(dying.advance(begun, [{ state: "Processing" }, { state: "Validated" }, { state: "DeliveryScheduled" }], ["rcpt@example.net"], 1)).rejects.toThrow();
  const st = await status(nc, accepted.mailId);
  expect(st).toMatchObject({ state: "PendingProcessing", attempt: 0 });
  expect(st.history.map((e) => e.state)).toEqual(["PendingProcessing", "Processing", "Validated", "DeliveryScheduled"]);
});

it("a mail whose history outgrows a NATS message (900 recipients refused at 60 attempts) still gets an answer: the oldest lists are left out", async () => {
  // Before, the reply (~20 MB here) was over the servers' max_payload: it could not be sent, and every status
  // request for the mail went unanswered (NO_REPLY), for good.
  const mailId = mailIdFromIdempotencyKey("huge-history");
  const to = Array.from({ length: 900 }, (_, i) => `recipient-${String(i).padStart(4, "0")}-${"x".repeat(40)}@example.net`);
  const js = jetstream(admin);
  const at = new Date().toISOString();
  const event = (state: "PendingProcessing" | "Deferred", attempt: number) => Codecs.mailEvent.encode({
    kind: "mail.event", v: 1, eventId: `${mailId}.${state}.${attempt}`, mailId, state, attempt, at, node: "test", recipients: to,
    detail: state === "PendingProcessing" ? {} : {
      retryAt: at, pending: to,
      rejected: to.map((recipient) => ({ recipient, transient: true, smtp: { code: 451, enhanced: "4.7.1", response: `451 4.7.1 ${"greylisted, try again later ".repeat(7)}`, command: "RCPT TO" } })),
    },
  });
  await js.publish(eventSubject(mailId, "PendingProcessing"), event("PendingProcessing", 0), { msgID: `${mailId}.PendingProcessing.0` });
  for (let attempt = 1; attempt <= 60; attempt++) await js.publish(eventSubject(mailId, "Deferred"), event("Deferred", attempt), { msgID: `${mailId}.Deferred.${attempt}` });
  const kv = await new Kvm(js).open(Names.statusBucket);
  await kv.create(mailId, Codecs.statusRecord.encode({
    kind: "mail.status-record", v: 1, mailId, state: "Deferred", attempt: 60, updatedAt: at, submittedAt: at, detail: { retryAt: at, pending: to },
  }));
  const st = await status(nc, mailId);
  expect(st.history).toHaveLength(61);
  expect(st.trimmed).toBeGreaterThan(40);
  // The newest event keeps its lists; the oldest trimmed ones keep everything else.
  expect(st.history.at(-1)?.detail.rejected).toHaveLength(900);
  expect(st.history[1]).toMatchObject({ state: "Deferred", attempt: 1, detail: { retryAt: at } });
  expect(st.history[1]?.detail.rejected).toBeUndefined();
  expect(Buffer.byteLength(JSON.stringify(st))).toBeLessThan(8 * 1024 * 1024);

  // Servers at NATS's default max_payload (1 MiB; an external cluster): the reply is kept under it.
  const small = createStatusHandler({ jsm: await jetstreamManager(admin), state: createMailStateStore({ js, kv, clock: systemClock, node: "test" }), maxPayload: () => 1024 * 1024 });
  const r = await small(Codecs.statusRequest.encode({ kind: "mail.status", v: 1, mailId }));
  expect(Codecs.statusReply.encode(r).length).toBeLessThanOrEqual(1024 * 1024 - 64 * 1024);
  expect(r.history).toHaveLength(61);
  expect(r.trimmed).toBeGreaterThanOrEqual(55);
}, 120_000);
