import { expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import { BodiesBucketStream, Names } from "../../protocol/index.js";
import { usePipeline } from "../helpers/suite.js";
import { bodyObjects, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

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
let sinkPort = 0;
const p = usePipeline({
  start: async (nc, port) => { sinkPort = port; return [await startGateway(nc)]; },
});

it("a mail whose body object lost a chunk is Rejected BODY_UNAVAILABLE, not retried for ever", async () => {
  const big = await submit(p.nc, structured("body-corrupt", { key: "body-corrupt", text: "a long body line\n".repeat(40_000) }));
  const [object] = await bodyObjects(p.nc, big.mailId);
  expect(object).toBeDefined();
  const info = await (await new Objm(jetstream(p.nc)).open(Names.bodiesBucket)).info(object!);
  expect(info!.chunks).toBeGreaterThan(2);
  // The object's second chunk, removed from the bucket's stream.
  const jsm = await jetstreamManager(p.nc);
  const stream = BodiesBucketStream.name;
  const first = await jsm.direct.getMessage(stream, { seq: 1, next_by_subj: BodiesBucketStream.chunks(info!.nuid) });
  expect(await jsm.streams.deleteMessage(stream, first!.seq + 1)).toBe(true);
  const node = await startProcessing(p.nc, sinkPort, { FEN_CONCURRENCY: "4" });
  try {
    const st = await until("Rejected", async () => { const s = await status(p.nc, big.mailId); return s.state === "Rejected" && s; }, 60_000, 200);
    expect(st.history.at(-1)?.detail.error).toMatchObject({ code: "BODY_UNAVAILABLE" });
    expect(p.sink.messages).toHaveLength(0);
  } finally {
    await node.drain();
  }
}, 90_000);

it("a mail whose body object lost every chunk (its meta kept) is Rejected BODY_UNAVAILABLE, not held for ever", async () => {
  // The object store client's read of such an object waits for a chunk for ever, and the node's heartbeat kept the
  // work item alive: the mail stayed PendingProcessing, holding one of the node's slots.
  const big = await submit(p.nc, structured("body-chunkless", { key: "body-chunkless", text: "another long body line\n".repeat(40_000) }));
  const [object] = await bodyObjects(p.nc, big.mailId);
  const info = await (await new Objm(jetstream(p.nc)).open(Names.bodiesBucket)).info(object!);
  const jsm = await jetstreamManager(p.nc);
  await jsm.streams.purge(BodiesBucketStream.name, { filter: BodiesBucketStream.chunks(info!.nuid) });
  const node = await startProcessing(p.nc, sinkPort, { FEN_CONCURRENCY: "4" });
  try {
    const st = await until("Rejected", async () => { const s = await status(p.nc, big.mailId); return s.state === "Rejected" && s; }, 60_000, 200);
    expect(st.history.at(-1)?.detail.error).toMatchObject({ code: "BODY_UNAVAILABLE", message: expect.stringContaining("no chunk stored") });
    expect(p.sink.messages.filter((m) => m.messageId === big.messageId)).toHaveLength(0);
  } finally {
    await node.drain();
  }
}, 90_000);
