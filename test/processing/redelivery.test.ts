import { expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Names, workSubject } from "../../protocol/index.js";
import { firstBySubject } from "../../nodes/common/js-errors.js";
import { usePipeline } from "../helpers/suite.js";
import { startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

/**
 * JetStream may deliver a work item again while the node that took it is
 * still delivering the mail: the probe of leader step-downs
 * (test/probes/stepdown.ts) saw the `processing` consumer's new leader hand
 * an item to a second node 0.4 s after the first, and the second node, finding
 * the mail DeliveryScheduled, took the first for dead and sent the mail again
 * (11-15 mails twice per run, none in doubt for real). A node that finds a
 * claim younger than CLAIM_TTL_MS must leave it to its owner.
 *
 * The second copy is made here by publishing the mail's work item again
 * (another message id) while the relay holds the first delivery's reply:
 * the node then holds two deliveries of one mail at once, as after such a
 * redelivery.
 */
const p = usePipeline({
  sink: { delayMs: 1500 },
  start: async (nc, port) => [await startGateway(nc), await startProcessing(nc, port, { FEN_CONCURRENCY: "4" })],
});

it("a work item delivered again while its node still sends the mail is not sent twice", async () => {
  const reply = await submit(p.nc, structured("redelivered", { key: "redelivered" }));
  await until("the relay to hold the mail", () => p.sink.awaitingReply() > 0, 30_000, 10);
  // The mail is DeliveryScheduled, its node waiting for the relay's 250: the same work item again.
  const jsm = await jetstreamManager(p.nc);
  const item = await firstBySubject(jsm, Names.workStream, workSubject(reply.mailId), { confirmAbsence: true });
  expect(item).not.toBeNull();
  await jetstream(p.nc).publish(workSubject(reply.mailId), item!.data, { msgID: `${reply.mailId}.again` });
  // Both copies acknowledged (MAIL_WORK is a work queue): the mail is settled and nothing of it is left to do.
  await until("both copies of the work item done", async () => (await jsm.streams.info(Names.workStream)).state.messages === 0, 60_000, 200);
  const st = await status(p.nc, reply.mailId);
  expect(st.state).toBe("Sent");
  expect(p.sink.messages.filter((m) => m.messageId === reply.messageId)).toHaveLength(1);
  expect(st.history.filter((e) => e.state === "DeliveryScheduled")).toHaveLength(1);
  expect(st.history.some((e) => e.detail.inDoubt === true)).toBe(false);
}, 90_000);
