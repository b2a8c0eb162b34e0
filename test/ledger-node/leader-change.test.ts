import { expect, it } from "vitest";
import { Names } from "../../protocol/index.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { until } from "../helpers/system.js";
import { headSize, ledgerIdentity, ledgerKv, publishEvents, startLedger } from "./helpers.js";

/**
 * When the `ledger` consumer's leader changes (`nats consumer cluster
 * step-down`, a rolling restart), the server ends the pull requests it was
 * holding with "409 Leadership Change". That is routine, not a failure of
 * the pull: the node pulls again at once and stays ready. (The probe of
 * step-downs, test/probes/stepdown.ts, saw the node back off to 5 s between
 * pulls, 503 on /readyz for 35 of 60 s, and 30 s behind the events.)
 */
const env = useProvisionedCluster();

it("the events consumer's leader stepped down again and again: the ledger node stays ready and keeps appending", async () => {
  const node = await startLedger(env.nc, ledgerIdentity(), { FEN_LEDGER_BATCH_MS: "20" });
  const kv = await ledgerKv(env.nc);
  const notReady: string[] = [];
  try {
    for (let round = 0; round < 5; round++) {
      const res = await env.nc.request(`$JS.API.CONSUMER.LEADER.STEPDOWN.${Names.eventsStream}.${Names.ledgerConsumer}`, undefined, { timeout: 10_000 });
      expect(JSON.parse(new TextDecoder().decode(res.data))).toMatchObject({ success: true });
      // Events published right after the change are appended within a moment.
      await publishEvents(env.nc, "leader-change", round * 5, round * 5 + 5);
      const deadline = Date.now() + 1500;
      while (Date.now() < deadline) {
        const why = node.notReady?.();
        if (why) notReady.push(why);
        await new Promise((r) => setTimeout(r, 50));
      }
      await until(`round ${round}'s events appended`, async () => (await headSize(kv)) >= round * 5 + 5, 5000, 50);
    }
    expect(notReady).toEqual([]);
  } finally {
    await node.drain();
  }
}, 120_000);
