import { describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Codecs, Names, eventSubject } from "../../protocol/index.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { until } from "../helpers/system.js";
import { headSize, ledgerIdentity, ledgerKv, publishEvents, startLedger, testEvent } from "./helpers.js";

describe("ledger node and a newer version's events", () => {
  const env = useProvisionedCluster();

  it("an event it cannot read (a field it does not know) is left for another ledger node, not terminated; the others are appended", async () => {
    const { nc } = env;
    const jsm = await jetstreamManager(nc);
    const kv = await ledgerKv(nc);
    await publishEvents(nc, "before", 0, 10);
    const ev = testEvent("newer", 0);
    const newer = new TextEncoder().encode(JSON.stringify({ ...ev, detail: { ...ev.detail }, traceId: "from a later version" }));
    expect(() => Codecs.mailEvent.decode(newer)).toThrow();
    const ack = await jetstream(nc).publish(eventSubject(ev.mailId, ev.state), newer, { msgID: ev.eventId });
    await publishEvents(nc, "after", 0, 10);
    const node = await startLedger(nc, ledgerIdentity(), { FEN_LEDGER_BATCH_MS: "20" });
    try {
      await until("the 20 readable events appended", async () => (await headSize(kv)) === 20);
      await until("their acks", async () => (await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer)).num_ack_pending <= 1);
      const info = await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer);
      // Terminated, it would count as acknowledged (the ack floor past it) and never come back.
      expect(info.num_ack_pending).toBe(1);
      expect(info.ack_floor.stream_seq).toBeLessThan(ack.seq);
      expect(await headSize(kv)).toBe(20);
    } finally {
      await node.drain();
    }
  }, 60_000);
});
