import { describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { encodeEntry, parseSignerKey, parseVerifierKey } from "../../ledger/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { createSequencer } from "../../nodes/ledger/sequencer.js";
import type { PendingEntry } from "../../nodes/ledger/sequencer.js";
import { createLedgerStore, entryOfEvent } from "../../nodes/ledger/index.js";
import { testLog, until } from "../helpers/system.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { headSize, ledgerCli, ledgerIdentity, ledgerKv, publishEvents, startLedger, testEvent } from "./helpers.js";
import type { BlockCommitted } from "../../nodes/ledger/index.js";

describe("two ledger writers at once", () => {
  const env = useProvisionedCluster();
  const id = ledgerIdentity();

  it("two sequencers racing for the same block: one wins the head swap, the other retries on top, each event once", async () => {
    const store = createLedgerStore(await ledgerKv(env.nc), await jetstreamManager(env.nc));
    const signer = parseSignerKey(id.env["FEN_LEDGER_SIGNING_KEY"]!);
    const deps = { store, signer, verifier: parseVerifierKey(signer.verifierKey), origin: id.origin, clock: systemClock, log: testLog };
    const key = Buffer.from(id.env["FEN_LEDGER_COMMITMENT_KEY"]!, "hex");
    const pending = (i: number): PendingEntry => {
      const ev = testEvent("race", i);
      return { mailId: ev.mailId, eventId: ev.eventId, bytes: encodeEntry(entryOfEvent(ev, key)) };
    };
    const a = createSequencer(deps);
    const b = createSequencer(deps);
    await Promise.all([a.load(), b.load()]);
    // Overlapping batches: events 20..29 are in both.
    const batchA = Array.from({ length: 30 }, (_, i) => pending(i));
    const batchB = Array.from({ length: 30 }, (_, i) => pending(i + 20));
    const [ra, rb] = await Promise.all([a.commit(batchA), b.commit(batchB)]);
    expect(ra.conflicts + rb.conflicts).toBe(1);
    expect(ra.appended + rb.appended).toBe(50);
    expect(ra.duplicates + rb.duplicates).toBe(10);
    expect(new Set([ra.block?.block, rb.block?.block])).toEqual(new Set([0, 1]));
    await Promise.all([a.settle(), b.settle()]);
    // No node wrote the meta record here: pin the key.
    const audit = await ledgerCli(["verify", "--json", "--server", env.cluster.urls.join(","), "--key", id.verifierKey], {});
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true, size: 50, blocks: 2, trustRoot: "flag" });
    // The loser's stage was discarded.
    expect(JSON.parse(audit.stdout).warnings).toEqual([]);
  });

  it("two ledger nodes on the same stream produce one linear history with every event exactly once", async () => {
    const kv = await ledgerKv(env.nc);
    const base = await headSize(kv);
    const N = 4000;
    const blocks: BlockCommitted[][] = [[], []];
    const x = await startLedger(env.nc, id, { FEN_LEDGER_BATCH_SIZE: "32", FEN_LEDGER_BATCH_MS: "20" }, (b) => blocks[0]!.push(b));
    const y = await startLedger(env.nc, id, { FEN_LEDGER_BATCH_SIZE: "32", FEN_LEDGER_BATCH_MS: "20" }, (b) => blocks[1]!.push(b));
    const events = await publishEvents(env.nc, "two-nodes", 0, N, 64);
    // The same events again, as a processing node re-publishing after a crash would.
    await publishEvents(env.nc, "two-nodes", 0, 200, 64);
    await until(`${N} new entries`, async () => (await headSize(kv)) === base + N, 120_000, 200);
    await Promise.all([x.drain(), y.drain()]);
    const committed = blocks.map((l) => l.filter((b) => b.block).length);
    const conflicts = blocks.flat().reduce((n, b) => n + b.conflicts, 0);
    console.log(`two ledger nodes: blocks committed ${committed.join(" + ")}, head swaps lost and retried: ${conflicts}`);
    expect(committed[0]).toBeGreaterThan(0);
    expect(committed[1]).toBeGreaterThan(0);
    expect(blocks.flat().reduce((n, b) => n + b.appended, 0)).toBe(N);
    const audit = await ledgerCli(["verify", "--json", "--server", env.cluster.urls.join(",")], {});
    expect(audit.code).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true, size: base + N });
    expect(new Set(events.map((e) => e.eventId)).size).toBe(N);
  }, 180_000);
});
