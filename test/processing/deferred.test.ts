import { expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { Names } from "../../protocol/index.js";
import { pool, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";
import { usePipeline } from "../helpers/suite.js";

/**
 * A deferred mail waits for its retry as a JetStream nak(delay), holding an
 * ack-pending slot of the work consumer all that time; when the slots run
 * out the server delivers no new work. Mail that one destination keeps
 * deferring must not hold back mail that can be delivered.
 */
// The relay refuses every recipient at slow.example for now.
const p = usePipeline({
  sink: { rcpt: (a) => (a.endsWith("@slow.example") ? { code: 451, message: "4.4.3 try later" } : undefined) },
  start: async (nc, port) => [await startGateway(nc), await startProcessing(nc, port, { FEN_RETRY_BASE_MS: "600000", FEN_RETRY_MAX_MS: "600000" })],
});

it("2,100 mails deferred for 10 minutes (more than the work consumer's old 2,000 slots) do not hold back a fresh mail", async () => {
  const DEFERRED = 2100;
  const ids = await pool(Array.from({ length: DEFERRED }, (_, i) => i), 32, async (i) =>
    (await submit(p.nc, structured(`slow-${i}`, { key: `slow-${i}`, to: [`user${i}@slow.example`] }))).mailId);
  const jsm = await jetstreamManager(p.nc);
  await until(`${DEFERRED} mails deferred`, async () => {
    const ci = await jsm.consumers.info(Names.workStream, Names.workConsumer);
    return ci.num_pending === 0 && ci.num_ack_pending === DEFERRED && ci;
  }, 120_000, 500);
  expect((await status(p.nc, ids[0]!)).state).toBe("Deferred");

  const fresh = await submit(p.nc, structured("fresh", { key: "fresh-1", to: ["someone@example.net"] }));
  await until("the fresh mail Sent", async () => (await status(p.nc, fresh.mailId)).state === "Sent", 30_000);
  expect(p.sink.messages.map((m) => m.messageId)).toEqual([fresh.messageId]);
}, 180_000);
