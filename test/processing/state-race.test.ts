import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { Names, mailIdFromIdempotencyKey, stateEventsFilter } from "../../protocol/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { useProvisionedCluster } from "../helpers/suite.js";

// The gateway publishes PendingProcessing right after the work item is
// stored, and a processing node that takes the item at once publishes it
// too. Both write the same event (same Nats-Msg-Id) at the same moment;
// JetStream answers one of them "duplicate message id is in process"
// (10158). Neither writer may fail: a failed work item costs a redelivery
// and its backoff (the benchmark showed more than one per mail). The status
// entry is created by the first claim only, and only one claim can win.
describe("two writers record the same mail's state at once", () => {
  const env = useProvisionedCluster();

  it("both begin it, one PendingProcessing event per mail, exactly one claim wins", async () => {
    // Two connections to different servers, as the gateway and a node would have.
    const ncs = await Promise.all([connect({ servers: env.cluster.urls[0]! }), connect({ servers: env.cluster.urls[1]! })]);
    try {
      const stores = await Promise.all(ncs.map(async (nc, i) => {
        const js = jetstream(nc);
        return createMailStateStore({ js, kv: await new Kvm(js).open(Names.statusBucket), clock: systemClock, node: `writer-${i}` });
      }));
      const ids = Array.from({ length: 60 }, (_, i) => mailIdFromIdempotencyKey(`state-race-${i}`));
      const at = new Date().toISOString();
      const begun = await Promise.all(ids.map((id) => Promise.all(stores.map((s) => s.begin(id, at, ["r@example.net"])))));
      for (const pair of begun) {
        for (const v of pair) expect([v.record.state, v.revision]).toEqual(["PendingProcessing", 0]);
      }
      const info = await (await jetstreamManager(env.nc)).streams.info(Names.eventsStream, { subjects_filter: stateEventsFilter("PendingProcessing") });
      const perSubject = info.state.subjects ?? {};
      expect(ids.map((id) => perSubject[`fen.events.${id}.PendingProcessing`])).toEqual(ids.map(() => 1));

      const claims = await Promise.all(begun.map((pair) => Promise.allSettled(pair.map((v, i) =>
        stores[i]!.advance(v, [{ state: "Processing" }], ["r@example.net"], 1)))));
      for (const [a, b] of claims) {
        const won = [a!, b!].filter((r) => r.status === "fulfilled");
        const lost = [a!, b!].filter((r): r is PromiseRejectedResult => r.status === "rejected");
        expect(won).toHaveLength(1);
        expect(lost.map((r) => (r.reason as { code?: string }).code)).toEqual(["STATE_CONFLICT"]);
      }
      for (const id of ids) expect((await stores[0]!.get(id))?.record.state).toBe("Processing");
    } finally {
      await Promise.all(ncs.map((nc) => nc.close()));
    }
  });
});
