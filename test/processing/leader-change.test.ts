import { expect, it, onTestFinished } from "vitest";
import type { Actor } from "../../nodes/common/actor.js";
import { Names } from "../../protocol/index.js";
import { usePipeline } from "../helpers/suite.js";
import { pool, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

/**
 * When the `processing` consumer's leader changes (`nats consumer cluster
 * step-down`, a rolling restart), nats-server voids the pull requests the
 * old leader held ("409 Leadership Change"). A node must pull again at
 * once: the probe of step-downs (test/probes/stepdown.ts) saw both
 * processing nodes, on `consume()`, deliver nothing for 44 s after one,
 * silently and ready, until the client noticed two missed heartbeats.
 *
 * Fixed by the node's pull feed, which treats that 409 as routine
 * (nodes/common/pull-feed.ts). (`consume({ expires: 5000 })` only
 * shortened the stall, to ~7.5 s here.)
 */
let node: Actor | undefined;
const p = usePipeline({ start: async (nc, port) => [await startGateway(nc), node = await startProcessing(nc, port)] });

it("mails submitted after the work consumer's leader stepped down are delivered at once, not after the pull stalls", async () => {
  // Pulling: a first mail goes through.
  const first = await submit(p.nc, structured("before-change", { key: "before-change" }));
  await until("the first mail Sent", async () => (await status(p.nc, first.mailId)).state === "Sent", 30_000, 100);
  const notReady: string[] = [];
  for (let round = 0; round < 3; round++) {
    const res = await p.nc.request(`$JS.API.CONSUMER.LEADER.STEPDOWN.${Names.workStream}.${Names.workConsumer}`, undefined, { timeout: 10_000 });
    expect(JSON.parse(new TextDecoder().decode(res.data))).toMatchObject({ success: true });
    const t0 = Date.now();
    // A pull voided by the change is routine: the node never says it is unready for it.
    const sampling = setInterval(() => { const why = node?.notReady?.(); if (why) notReady.push(why); }, 20);
    onTestFinished(() => clearInterval(sampling));
    const replies = await pool(Array.from({ length: 5 }, (_, i) => i), 5, (i) => submit(p.nc, structured(`after-${round}-${i}`, { key: `after-change-${round}-${i}` })));
    await until(`round ${round}'s mails Sent`, async () => {
      const states = await Promise.all(replies.map((r) => status(p.nc, r.mailId)));
      return states.every((s) => s.state === "Sent");
    }, 10_000, 100);
    clearInterval(sampling);
    // Seconds at most (a pull made again), not the tens of seconds of two missed heartbeats.
    expect(Date.now() - t0).toBeLessThan(5000);
  }
  expect(notReady).toEqual([]);
}, 120_000);
