import { describe, expect, it } from "vitest";
import { FenError, LedgerBucketKeys } from "../../protocol/index.js";
import { verifyReceipt } from "../../ledger/index.js";
import { auditLedger } from "../../nodes/ledger/audit.js";
import { proveMail } from "../../nodes/ledger/prove.js";
import { createSequencer } from "../../nodes/ledger/sequencer.js";
import type { LedgerStore } from "../../nodes/ledger/index.js";
import type { CasResult } from "../../nodes/ledger/store.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { ledgerIdentity, sequencerKit } from "./helpers.js";

/**
 * A store whose next head swap lands but whose reply is lost, as in a
 * timeout across a stream leader change: `meanwhile` runs once the swap has
 * landed, then the writer sees `lost` (a thrown LEDGER_UNAVAILABLE, or the
 * `{ ok: false }` stageAndSwap answers when its batch's reply is lost and
 * the head has moved on).
 */
function swapReplyLost(inner: LedgerStore, lost: "thrown" | "ok: false", meanwhile: () => Promise<void>): LedgerStore & { arm(): void } {
  let armed = false;
  return Object.assign(Object.create(inner) as LedgerStore, {
    arm: () => { armed = true; },
    async stageAndSwap(...args: Parameters<LedgerStore["stageAndSwap"]>): Promise<CasResult> {
      const landed = await inner.stageAndSwap(...args);
      if (!armed) return landed;
      armed = false;
      expect(landed.ok).toBe(true);
      await meanwhile();
      if (lost === "thrown") throw new FenError("LEDGER_UNAVAILABLE", "test: the head swap's reply was lost");
      return { ok: false };
    },
  });
}

describe("a head swap that landed with its reply lost, built on by another writer before this one looked", () => {
  const env = useProvisionedCluster();
  const id = ledgerIdentity();

  it.each(["thrown", "ok: false"] as const)("(reply %s) counts as committed: the block's stage stays, the audit passes, proofs work", async (lost) => {
    const kit = await sequencerKit(env.nc, id);
    const prefix = `lost-${lost.replace(/\W/g, "")}`;
    const other = createSequencer(kit.deps());
    let otherBlock: number | undefined;
    const store = swapReplyLost(kit.store, lost, async () => {
      // The other writer loads this writer's block as its head (finishing its roll-forward) and commits the next one on it.
      await other.load();
      otherBlock = (await other.commit(kit.pending(prefix, 100, 103))).block?.block;
      await other.settle();
    });
    const seq = createSequencer(kit.deps(store));
    const tip = await seq.load();
    const base = tip.head ? tip.head.value.block + 1 : 0;
    expect((await seq.commit(kit.pending(prefix, 0, 5))).block?.block).toBe(base);
    await seq.settle();

    store.arm();
    const batch = kit.pending(prefix, 5, 15);
    let acknowledged = false;
    const out = await seq.commit(batch, () => { acknowledged = true; });
    await seq.settle();
    expect(otherBlock).toBe(base + 2);
    expect(out).toMatchObject({ block: { block: base + 1 }, appended: 10, duplicates: 0, conflicts: 0 });
    expect(acknowledged).toBe(true);
    const ref = await kit.store.readBlockRef(base + 1);
    expect(ref?.value.stage).toBe(out.block?.stage);
    expect(await kit.store.readStage(ref!.value.stage)).toBeDefined();

    const report = await auditLedger(kit.store, { verifierKey: id.verifierKey });
    expect(report).toMatchObject({ ok: true, blocks: base + 3, faults: [], warnings: [] });
    const proof = await proveMail(kit.store, batch[0]!.mailId);
    expect(verifyReceipt(proof.receipt, id.verifierKey).entries.map((e) => e.entry.eventId)).toContain(batch[0]!.eventId);
    expect(await kit.store.keys(LedgerBucketKeys.stages)).toHaveLength(base + 3);

    // The writer goes on from the real head, and knows the batch is in.
    expect(await seq.commit(batch)).toMatchObject({ appended: 0, duplicates: 10 });
    expect((await seq.commit(kit.pending(prefix, 15, 20))).block?.block).toBe(base + 3);
    await seq.settle();
    expect(await auditLedger(kit.store, { verifierKey: id.verifierKey })).toMatchObject({ ok: true, blocks: base + 4, warnings: [] });
  });
});
