import { expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import { Names } from "../../protocol/index.js";
import { BODY_READS } from "../../nodes/processing/processor.js";
import { usePipeline } from "../helpers/suite.js";
import { bodyObjects, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

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

it("a mail whose body object is gone is Rejected BODY_UNAVAILABLE after a few reads, not retried for ever", async () => {
  const big = await submit(p.nc, structured("body-gone", { key: "body-gone", text: "a long body line\n".repeat(40_000) }));
  const [object] = await bodyObjects(p.nc, big.mailId);
  expect(object).toBeDefined();
  await (await new Objm(jetstream(p.nc)).open(Names.bodiesBucket)).delete(object!);
  const node = await startProcessing(p.nc, sinkPort, { FEN_CONCURRENCY: "4" });
  try {
    const st = await until("Rejected", async () => { const s = await status(p.nc, big.mailId); return s.state === "Rejected" && s; }, 60_000, 200);
    expect(st.history.at(-1)?.detail.error).toMatchObject({ code: "BODY_UNAVAILABLE", message: expect.stringContaining("is missing") });
    expect(st.history.map((e) => e.state)).toEqual(["PendingProcessing", "Processing", "Rejected"]);
    expect(p.sink.messages).toHaveLength(0);
    console.log(`body gone: Rejected BODY_UNAVAILABLE after ${BODY_READS} reads`);
  } finally {
    await node.drain();
  }
}, 90_000);
