import { expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { CLAIM_TTL_MS, Names, mailIdFromIdempotencyKey } from "../../protocol/index.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { usePipeline } from "../helpers/suite.js";
import { startGateway, startProcessing, status, structured, submit, until, withoutWrites } from "../helpers/system.js";

/**
 * A node publishes an attempt's outcome event before it swaps the status
 * entry (the swap is the commit point). One that dies in between, or cannot
 * reach the status store, leaves the mail DeliveryScheduled with the outcome
 * in MAIL_EVENTS. The node that takes the mail over records that outcome:
 * for a Deferred one too (a reviewer found only Sent and Bounced were
 * looked for), so the recipients who took the mail are not sent it again
 * and the retry waits for its time.
 *
 * Made here by hand: the mail claimed (attempt 1) by a "node" whose clock
 * runs CLAIM_TTL_MS behind (its claim looks dead), then its Deferred event
 * published through a store whose swaps fail; only then does a processing
 * node start.
 */
const p = usePipeline({ start: async (nc) => [await startGateway(nc)] });

it("a Deferred outcome stored as an event but never swapped in is recorded by the node taking over: the accepted recipient gets nothing again", async () => {
  const to = ["ok@example.net", "busy@example.net"];
  const reply = await submit(p.nc, structured("takeover-deferred", { key: "takeover-deferred", to }));
  const mailId = mailIdFromIdempotencyKey("takeover-deferred");
  expect(reply.mailId).toBe(mailId);
  const js = jetstream(p.nc);
  const kv = await new Kvm(js).open(Names.statusBucket);
  const past = { now: () => Date.now() - CLAIM_TTL_MS - 5_000 };
  const dead = createMailStateStore({ js, kv, clock: past, node: "dead-node" });
  const begun = await dead.begin(mailId, new Date().toISOString(), to);
  const claimed = await dead.advance(begun, [{ state: "Processing" }, { state: "Validated" }, { state: "DeliveryScheduled" }], to, 1);
  // Its attempt 1: ok@ took the mail, busy@ was put off. The event is stored; the swap fails.
  const noSwaps = withoutWrites(kv);
  const dying = createMailStateStore({ js, kv: noSwaps, readKv: kv, clock: past, node: "dead-node" });
  const retryAt = new Date(Date.now() + 1000).toISOString();
  await expect(dying.advance(claimed, [{ state: "Deferred", detail: {
    smtp: { code: 250, response: "250 OK queued" }, pending: ["busy@example.net"], retryAt,
    rejected: [{ recipient: "busy@example.net", transient: true, smtp: { code: 450, response: "450 4.2.1 busy" } }],
    error: { code: "SMTP_TRANSIENT", message: "1 of 2 recipients refused for now" },
  } }], to, 1)).rejects.toThrow();
  expect((await dead.get(mailId))?.record.state).toBe("DeliveryScheduled");

  const sinkPort = p.sink.port;
  const node = await startProcessing(p.nc, sinkPort);
  try {
    const st = await until("Sent", async () => { const s = await status(p.nc, reply.mailId); return s.state === "Sent" && s; }, 60_000);
    const got = p.sink.messages.filter((m) => m.messageId === reply.messageId).map((m) => m.to);
    expect(got).toEqual([["busy@example.net"]]);
    expect(st.history.map((e) => [e.state, e.attempt])).toEqual([
      ["PendingProcessing", 0], ["Processing", 1], ["Validated", 1], ["DeliveryScheduled", 1], ["Deferred", 1],
      ["Processing", 2], ["Validated", 2], ["DeliveryScheduled", 2], ["Sent", 2],
    ]);
    expect(st.history.some((e) => e.detail.inDoubt === true)).toBe(false);
  } finally {
    await node.drain();
  }
}, 90_000);
