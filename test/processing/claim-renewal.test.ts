import { expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { CLAIM_TTL_MS, Codecs, Names, workSubject } from "../../protocol/index.js";
import { CLAIM_RENEW_MS } from "../../nodes/processing/processor.js";
import { firstBySubject } from "../../nodes/common/js-errors.js";
import { usePipeline } from "../helpers/suite.js";
import { startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

/**
 * A delivery may last longer than a claim's time to live, CLAIM_TTL_MS (a
 * relay slow to answer the final ".", a wait for a free connection: up to
 * FEN_SMTP_TRANSACTION_TIMEOUT_MS, 10 minutes by default). The node renews
 * its claim meanwhile, so that a copy of the work item handed out later
 * (after a consumer leader change, which forgets the node's `working()`
 * signals; or a duplicate item, as made here) is left to it and not sent
 * again. Before the renewal, the claim's age counted from the
 * claim, and the copy was sent at once, "in doubt".
 */
const HOLD_MS = CLAIM_TTL_MS + 10_000;
const p = usePipeline({
  sink: { delayMs: HOLD_MS },
  start: async (nc, port) => [await startGateway(nc), await startProcessing(nc, port, { FEN_CONCURRENCY: "4" })],
});

it("a copy of a work item handed out while its delivery outlasts the claim's time to live is not sent again", async () => {
  const reply = await submit(p.nc, structured("slow-relay", { key: "slow-relay" }));
  await until("the relay to hold the mail", () => p.sink.awaitingReply() > 0, 30_000, 10);
  const heldAt = Date.now();
  // Past the claim's time to live since the claim, the relay still holding the reply: the same work item again.
  await new Promise((r) => setTimeout(r, CLAIM_TTL_MS + 3000));
  const jsm = await jetstreamManager(p.nc);
  const item = await firstBySubject(jsm, Names.workStream, workSubject(reply.mailId), { confirmAbsence: true });
  expect(item).not.toBeNull();
  await jetstream(p.nc).publish(workSubject(reply.mailId), item!.data, { msgID: `${reply.mailId}.again` });
  await until("both copies of the work item done", async () => (await jsm.streams.info(Names.workStream)).state.messages === 0, 3 * HOLD_MS, 200);
  const st = await status(p.nc, reply.mailId);
  console.log(`delivery held ${Date.now() - heldAt} ms; the mail reached the relay ${p.sink.messages.filter((m) => m.messageId === reply.messageId).length} time(s)`);
  expect(st.state).toBe("Sent");
  expect(p.sink.messages.filter((m) => m.messageId === reply.messageId)).toHaveLength(1);
  expect(st.history.filter((e) => e.state === "DeliveryScheduled")).toHaveLength(1);
  expect(st.history.some((e) => e.detail.inDoubt === true)).toBe(false);
}, 4 * HOLD_MS);

it("a renewal that finds the entry moved under the same claim (a renewal whose write landed unanswered) renews from the entry as read", async () => {
  const reply = await submit(p.nc, structured("renewal-conflict", { key: "renewal-conflict" }));
  await until("the relay to hold the mail", () => p.sink.awaitingReply() > 0, 30_000, 10);
  const kv = await new Kvm(jetstream(p.nc)).open(Names.statusBucket);
  // What a renewal whose reply was lost leaves: the same claim at a newer revision than the node holds.
  const e = (await kv.get(reply.mailId))!;
  expect(Codecs.statusRecord.parse(e.json()).state).toBe("DeliveryScheduled");
  await kv.update(reply.mailId, e.value, e.revision);
  const bumped = Date.now();
  // The next renewal meets the moved entry and adopts it; the one after must succeed.
  await new Promise((r) => setTimeout(r, 2 * CLAIM_RENEW_MS + 2000));
  const now = Codecs.statusRecord.parse((await kv.get(reply.mailId))!.json());
  console.log(`claim renewed ${now.claimRenewedAt ? Date.parse(now.claimRenewedAt) - bumped : "never"} ms after the entry moved`);
  expect(now.state).toBe("DeliveryScheduled");
  expect(Date.parse(now.claimRenewedAt!)).toBeGreaterThan(bumped + CLAIM_RENEW_MS);
  await until("Sent", async () => (await status(p.nc, reply.mailId)).state === "Sent", 2 * HOLD_MS, 200);
  expect(p.sink.messages.filter((m) => m.messageId === reply.messageId)).toHaveLength(1);
}, 4 * HOLD_MS);
