import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { Names, mailIdFromIdempotencyKey, stateEventsFilter } from "../../protocol/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { useProvisionedCluster } from "../helpers/suite.js";

// The gateway records PendingProcessing right after the work item is stored,
// and a processing node that takes the item at once records it too. Both
// write the same event (same Nats-Msg-Id) and create the same status key at
// the same moment; JetStream answers one of them "duplicate message id is in
// process" (10158) or "wrong last sequence", and a follower may not have the
// record yet. Neither writer may fail: a failed work item costs a
// redelivery and its backoff (the benchmark showed more than one per mail).
describe("two writers create the same mail's state at once", () => {
  const env = useProvisionedCluster();

  it("both succeed, exactly one creates it, one PendingProcessing event per mail", async () => {
    // Two connections to different servers, as the gateway and a node would have.
    const ncs = await Promise.all([connect({ servers: env.cluster.urls[0]! }), connect({ servers: env.cluster.urls[1]! })]);
    try {
      const stores = await Promise.all(ncs.map(async (nc, i) => {
        const js = jetstream(nc);
        return createMailStateStore({ js, kv: await new Kvm(js).open(Names.statusBucket), clock: systemClock, node: `writer-${i}` });
      }));
      const ids = Array.from({ length: 60 }, (_, i) => mailIdFromIdempotencyKey(`state-race-${i}`));
      const at = new Date().toISOString();
      const results = await Promise.all(ids.map((id) => Promise.all(stores.map((s) => s.create(id, at, ["r@example.net"])))));
      for (const [a, b] of results) {
        expect(Number(a!.created) + Number(b!.created)).toBe(1);
        expect(a!.versioned.revision).toBe(b!.versioned.revision);
        expect(a!.versioned.record.state).toBe("PendingProcessing");
      }
      const info = await (await jetstreamManager(env.nc)).streams.info(Names.eventsStream, { subjects_filter: stateEventsFilter("PendingProcessing") });
      const perSubject = info.state.subjects ?? {};
      expect(ids.map((id) => perSubject[`fen.events.${id}.PendingProcessing`])).toEqual(ids.map(() => 1));
    } finally {
      await Promise.all(ncs.map((nc) => nc.close()));
    }
  });
});
