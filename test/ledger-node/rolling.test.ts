import { describe, expect, it } from "vitest";
import { LedgerBucketKeys } from "../../protocol/index.js";
import { verifyReceipt } from "../../ledger/index.js";
import { auditLedger } from "../../nodes/ledger/audit.js";
import { headOf, latestComplete, proveConsistencyBetween, proveMail } from "../../nodes/ledger/prove.js";
import { createSequencer } from "../../nodes/ledger/sequencer.js";
import type { PendingEntry } from "../../nodes/ledger/sequencer.js";
import type { LedgerStore } from "../../nodes/ledger/index.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { gatedStore, ledgerIdentity, ledgerKv, sequencerKit } from "./helpers.js";
import type { SequencerKit } from "./helpers.js";

/**
 * Commits three blocks of 10 events (block numbers from `base`), the last
 * two while their roll-forwards stall, as behind a slow replica: with
 * ROLL_DEPTH = 2 the writer may commit block n while block n - 1 is still
 * rolled forward, so neither has a `block.<n>` record yet. `finish()` lets
 * the roll-forwards complete.
 */
async function commitWhileRolling(kit: SequencerKit, prefix: string): Promise<{
  base: number; size: number; first: PendingEntry[]; finish(): Promise<void>; crash(): Promise<void>;
}> {
  const store = gatedStore(kit.store);
  const seq = createSequencer(kit.deps(store));
  const tip = await seq.load();
  const base = tip.head ? tip.head.value.block + 1 : 0;
  const first = kit.pending(prefix, 0, 10);
  expect((await seq.commit(first)).block?.block).toBe(base);
  await seq.settle();
  store.shut();
  expect((await seq.commit(kit.pending(prefix, 10, 20))).block?.block).toBe(base + 1);
  let committed!: () => void;
  const swapped = new Promise<void>((r) => (committed = r));
  // This commit returns only once block base + 1's roll-forward is done (back-pressure): awaited in finish().
  const last = seq.commit(kit.pending(prefix, 20, 30), () => committed());
  await swapped;
  expect((await kit.store.readHead())?.value).toMatchObject({ block: base + 2, size: tip.frontier.size + 30 });
  expect(await kit.store.readBlockRef(base + 1)).toBeUndefined();
  expect(await kit.store.readBlockRef(base + 2)).toBeUndefined();
  return {
    base, size: tip.frontier.size, first,
    async finish() {
      store.open();
      await last;
      await seq.settle();
    },
    /** The writer dies with both blocks unfinished: nothing more of it reaches the bucket. */
    async crash() {
      store.crash();
      await expect(last).rejects.toThrow(/crashed/);
    },
  };
}

describe("blocks committed while the older ones still roll forward", () => {
  const env = useProvisionedCluster();
  const id = ledgerIdentity();

  it("the audit checks the unfinished blocks from the stage chain and passes with a warning for each", async () => {
    const kit = await sequencerKit(env.nc, id);
    const r = await commitWhileRolling(kit, "rolling-audit");
    const during = await auditLedger(kit.store, { verifierKey: id.verifierKey });
    expect(during).toMatchObject({ ok: true, blocks: r.base + 3, size: r.size + 30, faults: [] });
    expect(during.warnings.filter((w) => /not yet rolled forward/.test(w))).toEqual([
      `block ${r.base + 1} is committed but not yet rolled forward; checked from its staged content`,
      `block ${r.base + 2} (the head) is committed but not yet rolled forward; checked from its staged content`,
    ]);
    await r.finish();
    expect(await auditLedger(kit.store, { verifierKey: id.verifierKey })).toMatchObject({ ok: true, blocks: r.base + 3, faults: [], warnings: [] });
    // A record missing below one that exists is no roll-forward in progress.
    const kv = await ledgerKv(env.nc);
    const key = LedgerBucketKeys.block(r.base + 1);
    const bytes = (await kit.store.getRaw(key))!;
    await kv.purge(key);
    try {
      expect(await auditLedger(kit.store, { verifierKey: id.verifierKey })).toMatchObject({
        ok: false, firstBadBlock: r.base + 1, faults: [{ code: "LEDGER_CORRUPT", message: `block record ${key} is missing` }],
      });
    } finally {
      await kv.put(key, bytes);
    }
  });

  it("ledger.head, ledger.consistency and ledger.proof answer at the newest block with a record, not 'empty' or 'pending'", async () => {
    const kit = await sequencerKit(env.nc, id);
    const r = await commitWhileRolling(kit, "rolling-serve");
    const meta = { kind: "ledger.meta", v: 1, origin: id.origin, verifierKey: id.verifierKey } as const;
    const complete = { block: r.base, size: r.size + 10 };
    expect((await latestComplete(kit.store))?.value).toMatchObject(complete);
    expect(await headOf(kit.store, meta)).toMatchObject(complete);
    expect(await proveConsistencyBetween(kit.store, 0)).toMatchObject({ from: 0, to: complete.size });
    const proof = await proveMail(kit.store, r.first[0]!.mailId, async () => true);
    expect(proof.size).toBe(complete.size);
    expect(verifyReceipt(proof.receipt, id.verifierKey).entries.map((e) => e.entry.eventId)).toContain(r.first[0]!.eventId);
    await r.finish();
    expect((await latestComplete(kit.store))?.value).toMatchObject({ block: r.base + 2, size: r.size + 30 });
  });

  it("a writer taking over from one that crashed with two blocks unfinished appends none of their events again, though the index lags", async () => {
    const kit = await sequencerKit(env.nc, id);
    const r = await commitWhileRolling(kit, "rolling-takeover");
    await r.crash();
    // Index records come by Direct Get, which a follower that has not applied
    // the two roll-forwards yet may answer: here, without either block's.
    const lagging: LedgerStore = Object.assign(Object.create(kit.store) as LedgerStore, {
      async readMailIndexes(mailIds: readonly string[]) {
        const all = await kit.store.readMailIndexes(mailIds);
        return new Map([...all].map(([mailId, list]) => [mailId, list.filter((rec) => rec.block <= r.base)]));
      },
    });
    const next = createSequencer(kit.deps(lagging));
    expect((await next.load()).head?.value.block).toBe(r.base + 2);
    expect(await kit.store.readBlockRef(r.base + 1)).toBeDefined();
    // Redelivered: the events of both unfinished blocks, and five new ones.
    const out = await next.commit(kit.pending("rolling-takeover", 10, 35));
    await next.settle();
    expect(out).toMatchObject({ block: { block: r.base + 3, size: r.size + 35 }, appended: 5, duplicates: 20 });
    expect(await auditLedger(kit.store, { verifierKey: id.verifierKey })).toMatchObject({ ok: true, blocks: r.base + 4, faults: [] });
  });
});
