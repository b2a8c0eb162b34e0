import { expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { BodiesBucketStream, FenError, Names } from "../../protocol/index.js";
import type { MailId } from "../../protocol/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { readObject } from "../../nodes/processing/body.js";
import { BODY_READS } from "../../nodes/processing/processor.js";
import { usePipeline } from "../helpers/suite.js";
import { bodyObjects, startGateway, startProcessing, status, structured, submit, until, workSettled } from "../helpers/system.js";

// Mail bodies the store no longer holds whole, on one cluster. No mail here
// is ever delivered: each test starts its own processing node and drains it.

/**
 * A body over 512 KiB rides in the mail_bodies object store. If that object
 * is gone (deleted by hand, a store restored without it) the mail cannot be
 * sent: the work item used to be retried for ever (INTERNAL, every 30 s at
 * most). The node reads it BODY_READS times, a second apart (a store that
 * answers wrongly for a moment cannot end a mail); then the mail is
 * Rejected BODY_UNAVAILABLE, its work item acknowledged.
 */
let sinkPort = 0;
const p = usePipeline({
  start: async (nc, port) => { sinkPort = port; return [await startGateway(nc)]; },
});

/** Submits a mail whose body (over 512 KiB) goes to the object store; returns the mail and its body object's info. */
async function submitBig(key: string, line: string) {
  const big = await submit(p.nc, structured(key, { key, text: line.repeat(40_000) }));
  const [object] = await bodyObjects(p.nc, big.mailId);
  expect(object).toBeDefined();
  const bodies = await new Objm(jetstream(p.nc)).open(Names.bodiesBucket);
  return { big, object: object!, bodies, info: (await bodies.info(object!))! };
}

/** Starts a processing node and waits until it Rejects mail `mailId`; returns that status (the node is drained). */
async function rejectedBy(mailId: string) {
  const node = await startProcessing(p.nc, sinkPort, { FEN_CONCURRENCY: "4" });
  try {
    return await until("Rejected", async () => { const s = await status(p.nc, mailId); return s.state === "Rejected" && s; }, 60_000, 200);
  } finally {
    await node.drain();
  }
}

it("a mail whose body object is gone is Rejected BODY_UNAVAILABLE after a few reads, not retried for ever", async () => {
  const { big, object, bodies } = await submitBig("body-gone", "a long body line\n");
  await bodies.delete(object);
  const st = await rejectedBy(big.mailId);
  expect(st.history.at(-1)?.detail.error).toMatchObject({ code: "BODY_UNAVAILABLE", message: expect.stringContaining("is missing") });
  expect(st.history.map((e) => e.state)).toEqual(["PendingProcessing", "Processing", "Rejected"]);
  expect(p.sink.messages).toHaveLength(0);
  console.log(`body gone: Rejected BODY_UNAVAILABLE after ${BODY_READS} reads`);
}, 90_000);

/**
 * The same work item can reach two nodes (a consumer leader change). A
 * delivers the mail, records Sent and drops its body object; B, which had
 * read the mail's state before, finds the body gone. A body is dropped only
 * once its mail's final state is recorded, so B reads the state again
 * before it records Rejected: the mail moved on, and B records nothing. (It
 * used to publish Processing and Rejected, whose events go before the
 * status swap, and only then fail STATE_CONFLICT: the history said Sent,
 * then Rejected.) Made deterministic here: node A is played by hand, the
 * moment B reads the status entry (its request to the bucket's stream is
 * seen), while B reads the body BODY_READS times, a second apart.
 */
it("a node that finds the body gone because another node delivered the mail meanwhile records nothing: no Rejected after Sent", async () => {
  const { big, object, bodies } = await submitBig("body-race", "a body line for the race\n");
  const mailId = big.mailId as MailId;
  await bodies.delete(object);
  const js = jetstream(p.nc);
  const a = createMailStateStore({ js, kv: await new Kvm(js).open(Names.statusBucket), clock: systemClock, node: "node-a" });
  const statusReads = p.nc.subscribe(`$JS.API.STREAM.MSG.GET.KV_${Names.statusBucket}`);
  const delivered = (async () => {
    for await (const req of statusReads) {
      if (!req.string().includes(mailId)) continue;
      statusReads.unsubscribe();
      const begun = await a.begin(mailId, new Date().toISOString(), ["rcpt@example.net"]);
      await a.advance(begun, [{ state: "Processing" }, { state: "Validated" }, { state: "DeliveryScheduled" }], ["rcpt@example.net"], 1);
      const claimed = (await a.get(mailId))!;
      await a.advance(claimed, [{ state: "Sent", detail: { smtp: { code: 250, response: "250 2.0.0 queued" } } }], ["rcpt@example.net"], 1);
    }
  })();
  const node = await startProcessing(p.nc, sinkPort, { FEN_CONCURRENCY: "4" });
  try {
    await delivered;
    await workSettled(p.nc);
  } finally {
    await node.drain();
  }
  const st = await status(p.nc, mailId);
  expect(st.history.map((e) => `${e.state}#${e.attempt}`)).toEqual(["PendingProcessing#0", "Processing#1", "Validated#1", "DeliveryScheduled#1", "Sent#1"]);
  expect(st.state).toBe("Sent");
  expect(p.sink.messages).toHaveLength(0);
}, 90_000);

/**
 * A body object one of whose chunks is gone (a message removed from the
 * object store's stream by hand, a store restored in part) no longer
 * matches its digest: the object store client reports "received a corrupt
 * object, digests do not match", which is not a missing object, nor a fault
 * of the store that asking again cures. Like a missing object (or one whose
 * hash differs from the work item's), it Rejects the mail BODY_UNAVAILABLE
 * once the retries are spent, as protocol/ERRORS.md says, instead of the
 * work item failing INTERNAL for ever.
 */
it("a mail whose body object lost a chunk is Rejected BODY_UNAVAILABLE, not retried for ever", async () => {
  const { big, info } = await submitBig("body-corrupt", "a long body line\n");
  expect(info.chunks).toBeGreaterThan(2);
  // The object's second chunk, removed from the bucket's stream.
  const jsm = await jetstreamManager(p.nc);
  const stream = BodiesBucketStream.name;
  const first = await jsm.direct.getMessage(stream, { seq: 1, next_by_subj: BodiesBucketStream.chunks(info.nuid) });
  expect(await jsm.streams.deleteMessage(stream, first!.seq + 1)).toBe(true);
  const st = await rejectedBy(big.mailId);
  expect(st.history.at(-1)?.detail.error).toMatchObject({ code: "BODY_UNAVAILABLE" });
  expect(p.sink.messages).toHaveLength(0);
}, 90_000);

it("a mail whose body object lost every chunk (its meta kept) is Rejected BODY_UNAVAILABLE, not held for ever", async () => {
  // The object store client's read of such an object waits for a chunk for ever, and the node's heartbeat kept the
  // work item alive: the mail stayed PendingProcessing, holding one of the node's slots.
  const { big, info } = await submitBig("body-chunkless", "another long body line\n");
  const jsm = await jetstreamManager(p.nc);
  await jsm.streams.purge(BodiesBucketStream.name, { filter: BodiesBucketStream.chunks(info.nuid) });
  const st = await rejectedBy(big.mailId);
  expect(st.history.at(-1)?.detail.error).toMatchObject({ code: "BODY_UNAVAILABLE", message: expect.stringContaining("no chunk stored") });
  expect(p.sink.messages.filter((m) => m.messageId === big.messageId)).toHaveLength(0);
}, 90_000);

/**
 * The processing node reads a body object with `readObject`, not the
 * client's `getBlob`: getBlob waits for ever for chunks that were purged
 * after the object's info was read, and so would the mail's work item.
 * readObject gives up after its timeout with STORE_UNAVAILABLE (the work
 * item is retried, and the retry's checks find the body gone) and stops
 * reading.
 */
it("reads a body object whole, and gives up on one whose chunks are gone with STORE_UNAVAILABLE", async () => {
  const bodies = await new Objm(jetstream(p.nc)).open(Names.bodiesBucket);
  const data = Buffer.alloc(600_000, "body line\n");
  await bodies.putBlob({ name: "body-read-whole" }, data);
  await bodies.putBlob({ name: "body-read-purged" }, data);
  expect(Buffer.from((await readObject(bodies, "body-read-whole"))!).equals(data)).toBe(true);
  expect(await readObject(bodies, "body-read-absent")).toBeNull();

  const info = await bodies.info("body-read-purged");
  expect(info!.chunks).toBeGreaterThan(1);
  const jsm = await jetstreamManager(p.nc);
  await jsm.streams.purge(BodiesBucketStream.name, { filter: BodiesBucketStream.chunks(info!.nuid) });
  // Readers still subscribed to a consumer of the bucket's stream (the client leaves an ordered consumer it
  // stopped for the server to remove after 5 minutes idle; a stopped one has no subscription, `push_bound`).
  const reading = async () => (await jsm.consumers.list(BodiesBucketStream.name).next()).filter((ci) => ci.push_bound).length;
  const started = Date.now();
  const err = await readObject(bodies, "body-read-purged", 1_500).then(() => undefined, (e: unknown) => e);
  const took = Date.now() - started;
  expect(err).toBeInstanceOf(FenError);
  expect(err).toMatchObject({ code: "STORE_UNAVAILABLE", message: expect.stringContaining("took over 1500 ms") });
  expect(took).toBeLessThan(10_000);
  // The read given up no longer listens for the chunks.
  const deadline = Date.now() + 10_000;
  while ((await reading()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  expect(await reading()).toBe(0);
  console.log(`body read with its chunks purged: STORE_UNAVAILABLE after ${took} ms`);
}, 60_000);
