import { expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import { BodiesBucketStream, FenError, Names } from "../../protocol/index.js";
import { readObject } from "../../nodes/processing/body.js";
import { useProvisionedCluster } from "../helpers/suite.js";

/**
 * The processing node reads a body object with `readObject`, not the
 * client's `getBlob`: getBlob waits for ever for chunks that were purged
 * after the object's info was read, and so would the mail's work item.
 * readObject gives up after its timeout with STORE_UNAVAILABLE (the work
 * item is retried, and the retry's checks find the body gone) and stops
 * reading.
 */
const c = useProvisionedCluster();

it("reads a body object whole, and gives up on one whose chunks are gone with STORE_UNAVAILABLE", async () => {
  const bodies = await new Objm(jetstream(c.nc)).open(Names.bodiesBucket);
  const data = Buffer.alloc(600_000, "body line\n");
  await bodies.putBlob({ name: "body-read-whole" }, data);
  await bodies.putBlob({ name: "body-read-purged" }, data);
  expect(Buffer.from((await readObject(bodies, "body-read-whole"))!).equals(data)).toBe(true);
  expect(await readObject(bodies, "body-read-absent")).toBeNull();

  const info = await bodies.info("body-read-purged");
  expect(info!.chunks).toBeGreaterThan(1);
  const jsm = await jetstreamManager(c.nc);
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
