import { expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { LEDGER_ACK_WAIT_MS, Names } from "../../protocol/index.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { until } from "../helpers/system.js";
import { headSize, ledgerIdentity, ledgerKv, publishEvents, startLedger } from "./helpers.js";

/**
 * The `ledger` consumer's ack wait is short (LEDGER_ACK_WAIT_MS), so that
 * events lost around a consumer leader change come back soon. A node that
 * holds events longer than that (a block kept open, a commit waiting out a
 * fail-over) keeps them with `working()`: the server sends none again.
 */
const env = useProvisionedCluster();

it("events held twice the ack wait (a block kept open) are not delivered again, and are appended once", async () => {
  const jsm = await jetstreamManager(env.nc);
  const before = await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer);
  const kv = await ledgerKv(env.nc);
  const base = await headSize(kv);
  const openMs = 2 * LEDGER_ACK_WAIT_MS;
  const node = await startLedger(env.nc, ledgerIdentity(), { FEN_LEDGER_BATCH_MS: String(openMs), FEN_LEDGER_BATCH_SIZE: "4096" });
  try {
    const N = 100;
    await publishEvents(env.nc, "keep-held", 0, N);
    const t0 = Date.now();
    await until(`the ${N} events appended`, async () => (await headSize(kv)) >= base + N, openMs + 15_000, 200);
    const heldMs = Date.now() - t0;
    const after = await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer);
    console.log(`ledger keep-alive: ${N} events held ${heldMs} ms (ack wait ${LEDGER_ACK_WAIT_MS} ms); ` +
      `deliveries ${after.delivered.consumer_seq - before.delivered.consumer_seq}, redelivered ${after.num_redelivered}`);
    expect(heldMs).toBeGreaterThan(LEDGER_ACK_WAIT_MS);
    expect(after.delivered.consumer_seq - before.delivered.consumer_seq).toBe(N);
    expect(after.num_redelivered).toBe(0);
    expect(await headSize(kv)).toBe(base + N);
  } finally {
    await node.drain();
  }
}, 90_000);
