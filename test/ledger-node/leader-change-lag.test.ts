import { expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { Codecs, Names, eventSubject } from "../../protocol/index.js";
import { publishOnce } from "../../nodes/common/js-errors.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { headSize, ledgerIdentity, ledgerKv, startLedger, testEvent } from "./helpers.js";

/**
 * Events keep flowing while the leaders of the `ledger` consumer and of
 * MAIL_EVENTS change, again and again: every event must be in the ledger a
 * moment after the flow stops, not an ack wait (30 s) later, which is how
 * long an event the old leader recorded as delivered, but never sent,
 * would wait.
 */
const env = useProvisionedCluster();

/** A publish that is made again (same message id: stored once) when the stream's leader change dropped it. */
async function publishSurely(js: ReturnType<typeof jetstream>, ev: ReturnType<typeof testEvent>): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      await publishOnce(js, eventSubject(ev.mailId, ev.state), Codecs.mailEvent.encode(ev), { msgID: ev.eventId });
      return;
    } catch (err) {
      if (i >= 5) throw err;
    }
  }
}

it("events flowing while the ledger consumer's and MAIL_EVENTS' leaders change reach the ledger within moments", async () => {
  const node = await startLedger(env.nc, ledgerIdentity(), { FEN_LEDGER_BATCH_MS: "50" });
  const kv = await ledgerKv(env.nc);
  let published = 0;
  let flowing = true;
  const flow = (async () => {
    while (flowing) {
      const js = jetstream(env.nc);
      await Promise.all(Array.from({ length: 50 }, (_, k) => publishSurely(js, testEvent("lag", published + k))));
      published += 50;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    for (let round = 0; round < 8; round++) {
      await new Promise((r) => setTimeout(r, 1000));
      const subject = round % 2 === 0 ? `$JS.API.CONSUMER.LEADER.STEPDOWN.${Names.eventsStream}.${Names.ledgerConsumer}` : `$JS.API.STREAM.LEADER.STEPDOWN.${Names.eventsStream}`;
      await env.nc.request(subject, undefined, { timeout: 10_000 }).catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 1000));
    flowing = false;
    await flow;
    const t0 = Date.now();
    let size = 0;
    while (Date.now() - t0 < 45_000 && (size = await headSize(kv)) < published) await new Promise((r) => setTimeout(r, 100));
    const lagMs = Date.now() - t0;
    console.log(`ledger after 4 step-downs of its consumer and 4 of MAIL_EVENTS: ${size} of ${published} events, all in ${lagMs} ms after the flow stopped`);
    expect(size).toBe(published);
    expect(lagMs).toBeLessThan(10_000);
  } finally {
    flowing = false;
    await node.drain();
  }
}, 120_000);
