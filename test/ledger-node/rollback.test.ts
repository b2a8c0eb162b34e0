import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { KV } from "@nats-io/kv";
import { LedgerBucketKeys, LedgerCodecs } from "../../protocol/index.js";
import type { MailId } from "../../protocol/index.js";
import { openCheckpoint, parseVerifierKey } from "../../ledger/index.js";
import { auditLedger } from "../../nodes/ledger/audit.js";
import { latestComplete } from "../../nodes/ledger/prove.js";
import { createSequencer } from "../../nodes/ledger/sequencer.js";
import type { Sequencer } from "../../nodes/ledger/sequencer.js";
import type { LedgerStore } from "../../nodes/ledger/store.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { ledgerCli, ledgerIdentity, ledgerKv, sequencerKit, startLedger } from "./helpers.js";
import type { SequencerKit } from "./helpers.js";

/**
 * Someone with write access to the `ledger` bucket but not the signing key
 * rolls `head` back: an honest writer must not sign a block on it (that
 * block's checkpoint would be a fork of the bigger one already signed).
 */
describe("a head rolled back by someone without the key", () => {
  const env = useProvisionedCluster();
  const id = ledgerIdentity();
  const restore: (() => Promise<unknown>)[] = [];
  let kv: KV;

  /** Overwrites (or deletes) a key, remembering how to put it back. */
  const tamper = async (key: string, value: Uint8Array | undefined) => {
    kv ??= await ledgerKv(env.nc);
    const e = await kv.get(key);
    const before = e && e.operation === "PUT" ? e.value : undefined;
    restore.push(() => (before ? kv.put(key, before) : kv.purge(key)));
    if (value) await kv.put(key, value);
    else await kv.purge(key);
  };
  afterEach(async () => {
    while (restore.length > 0) await restore.pop()!();
  });

  /** Four blocks of three entries on whatever the log holds; returns their first block number and the writer. */
  const fourBlocks = async (kit: SequencerKit, prefix: string): Promise<{ base: number; seq: Sequencer }> => {
    const seq = createSequencer(kit.deps());
    const tip = await seq.load();
    const base = tip.head ? tip.head.value.block + 1 : 0;
    for (let b = 0; b < 4; b++) await seq.commit(kit.pending(prefix, b * 3, b * 3 + 3));
    await seq.settle();
    expect((await kit.store.readHead())?.value.block).toBe(base + 3);
    return { base, seq };
  };
  const stageCount = async (kit: SequencerKit) => (await kit.store.keys(LedgerBucketKeys.stages)).length;

  it("a fresh writer refuses to load a head behind an existing block record", async () => {
    const kit = await sequencerKit(env.nc, id);
    const { base } = await fourBlocks(kit, "rb-fresh");
    await tamper(LedgerBucketKeys.head, (await kit.store.readBlockRef(base + 1))!.bytes);
    const stages = await stageCount(kit);
    const fresh = createSequencer(kit.deps());
    await expect(fresh.load()).rejects.toMatchObject({ code: "LEDGER_CORRUPT", message: expect.stringContaining(`block.${base + 2}`) });
    await expect(fresh.commit(kit.pending("rb-fresh", 100, 101))).rejects.toMatchObject({ code: "LEDGER_CORRUPT" });
    expect(await stageCount(kit)).toBe(stages);
  });

  it("a running writer refuses to build on a head rolled back under it", async () => {
    const kit = await sequencerKit(env.nc, id);
    const { base, seq } = await fourBlocks(kit, "rb-running");
    const rolledBack = (await kit.store.readBlockRef(base + 1))!.bytes;
    await tamper(LedgerBucketKeys.head, rolledBack);
    const stages = await stageCount(kit);
    await expect(seq.commit(kit.pending("rb-running", 100, 101))).rejects.toMatchObject({ code: "LEDGER_CORRUPT" });
    expect(Buffer.from((await kit.store.readHead())!.bytes).equals(Buffer.from(rolledBack))).toBe(true);
    expect(await stageCount(kit)).toBe(stages);
  });

  it("a running writer refuses a head that does not extend what it signed, even with the later block records deleted", async () => {
    const kit = await sequencerKit(env.nc, id);
    const { base, seq } = await fourBlocks(kit, "rb-deleted");
    const signed = openCheckpoint((await kit.store.readHead())!.value.checkpoint, parseVerifierKey(id.verifierKey)).checkpoint;
    await tamper(LedgerBucketKeys.block(base + 3), undefined);
    await tamper(LedgerBucketKeys.block(base + 2), undefined);
    await tamper(LedgerBucketKeys.head, (await kit.store.readBlockRef(base + 1))!.bytes);
    const stages = await stageCount(kit);
    await expect(seq.commit(kit.pending("rb-deleted", 100, 101))).rejects.toMatchObject({
      code: "LEDGER_CORRUPT", message: expect.stringContaining(`${signed.size}`),
    });
    expect(await stageCount(kit)).toBe(stages);
  });

  it("proofs are not served against a head that differs from its own block's record", async () => {
    const kit = await sequencerKit(env.nc, id);
    const { base } = await fourBlocks(kit, "rb-prove");
    const two = (await kit.store.readBlockRef(base + 2))!.value;
    const one = (await kit.store.readBlockRef(base + 1))!.value;
    // A head naming block base + 2 whose record is another block's (as a fork signed on a rolled-back head would be).
    await tamper(LedgerBucketKeys.head, LedgerCodecs.blockRef.encode({ ...two, stage: one.stage }));
    await expect(latestComplete(kit.store)).rejects.toMatchObject({ code: "LEDGER_CORRUPT" });
  });
});

/**
 * Someone without the key plants `m.<mailId>.<n>` index records naming
 * events not in the log yet (event ids are predictable): the writer must
 * still append those events, and the audit must name the planted records.
 */
describe("index records planted by someone without the key", () => {
  const env = useProvisionedCluster();
  const id = ledgerIdentity();
  const planted: string[] = [];
  afterEach(async () => {
    const kv = await ledgerKv(env.nc);
    while (planted.length > 0) await kv.purge(planted.pop()!);
  });
  const plant = async (mailId: string, block: number, events: { eventId: string; index: number }[]) => {
    const key = LedgerBucketKeys.mailIndex(mailId, block);
    planted.push(key);
    await (await ledgerKv(env.nc)).put(key, LedgerCodecs.mailIndex.encode({ kind: "ledger.mail-index", v: 1, mailId: mailId as MailId, block, treeSize: 1, events }));
    return key;
  };

  it("do not make the writer drop the events they name, past the head or inside a real block", async () => {
    const kit = await sequencerKit(env.nc, id);
    const seq = createSequencer(kit.deps());
    await seq.load();
    // Events 0..4 are one mail's five life-cycle events: commit the first three, then the victim's last two are next.
    const events = kit.pending("plant", 0, 5);
    await seq.commit(events.slice(0, 3));
    const others = await seq.commit(kit.pending("plant-others", 0, 5));
    await seq.settle();
    const [fourth, fifth] = [events[3]!, events[4]!];
    const victim = fourth.mailId;
    expect(fifth.mailId).toBe(victim);
    await plant(victim, 999, [{ eventId: fourth.eventId, index: 0 }]);
    // In the range of a block that exists (and holds none of the victim's entries), at an index holding another event.
    await plant(victim, others.block!.block, [{ eventId: fifth.eventId, index: others.block!.oldSize }]);
    const other = createSequencer(kit.deps());
    await other.load();
    expect(await other.commit([fourth, fifth])).toMatchObject({ appended: 2, duplicates: 0 });
    await other.settle();
    // Real index records still deduplicate: a fresh writer has only the head's block in memory, the index for the rest.
    const fresh = createSequencer(kit.deps());
    await fresh.load();
    expect(await fresh.commit([...events])).toMatchObject({ appended: 0, duplicates: 5 });
  });

  it("are faults of the audit, naming the record", async () => {
    const kit = await sequencerKit(env.nc, id);
    const seq = createSequencer(kit.deps());
    await seq.load();
    const events = kit.pending("plant-audit", 0, 10);
    const out = await seq.commit(events);
    await seq.settle();
    expect((await auditLedger(kit.store, { verifierKey: id.verifierKey })).faults).toEqual([]);
    const stray = kit.pending("plant-audit", 10, 11)[0]!;
    for (const [mailId, block] of [[stray.mailId, 999], [stray.mailId, out.block!.block]] as const) {
      const key = await plant(mailId, block, [{ eventId: stray.eventId, index: out.block!.oldSize }]);
      const report = await auditLedger(kit.store, { verifierKey: id.verifierKey });
      expect(report.ok, key).toBe(false);
      expect(report.faults.map((f) => f.message).join("\n"), key).toContain(key);
      await (await ledgerKv(env.nc)).purge(planted.pop()!);
    }
  });
});

/**
 * A writer that dies between staging a block and swapping the head (the
 * key-by-key path taken when an atomic batch is refused) leaves a stage
 * whose checkpoint the key signed. Once another block holds that number,
 * receipts against the leftover verify though the log says otherwise.
 */
describe("stages left by a writer that died before its head swap", () => {
  const env = useProvisionedCluster();
  const id = ledgerIdentity();

  /** A store on which the next head swap stages its block key by key and then dies. */
  const diesAfterStaging = (inner: LedgerStore): LedgerStore & { staged: string[] } => {
    const staged: string[] = [];
    return Object.assign(Object.create(inner) as LedgerStore, {
      staged,
      async stageAndSwap(hex: string, stageBytes: Uint8Array) {
        expect(await inner.putImmutable(LedgerBucketKeys.stage(hex), stageBytes)).toBe("created");
        staged.push(hex);
        throw new Error("test: the writer died before its head swap");
      },
    });
  };

  it.each([
    ["a conflicting one is a fault of the audit, naming it", 1, false],
    ["one the log agrees with is only a note", 0, true],
  ] as const)("%s", async (_, skip, ok) => {
    const kit = await sequencerKit(env.nc, id);
    const prefix = `orphan-${skip}`;
    const seq = createSequencer(kit.deps());
    await seq.load();
    await seq.commit(kit.pending(prefix, 0, 3));
    await seq.settle();
    const store = diesAfterStaging(kit.store);
    const dying = createSequencer(kit.deps(store));
    await dying.load();
    await expect(dying.commit(kit.pending(prefix, 3, 4))).rejects.toThrow(/died/);
    // Another writer commits that block number: with another event first (conflict) or with the same one first.
    const next = createSequencer(kit.deps());
    await next.load();
    expect(await next.commit(kit.pending(prefix, 3 + skip, 6))).toMatchObject({ appended: 3 - skip });
    await next.settle();
    const key = LedgerBucketKeys.stage(store.staged[0]!);
    const report = await auditLedger(kit.store, { verifierKey: id.verifierKey });
    try {
      expect(report.ok).toBe(ok);
      if (ok) expect(report.warnings.join("\n")).toContain("referenced by no block");
      else expect(report.faults).toEqual([expect.objectContaining({ code: "LEDGER_CORRUPT", message: expect.stringContaining(key) })]);
    } finally {
      await (await ledgerKv(env.nc)).purge(key);
    }
  });
});

describe("a wiped log", () => {
  const env = useProvisionedCluster();
  const id = ledgerIdentity();

  it("is INCONSISTENT (exit 1) with a checkpoint kept from it, not a failed request", async () => {
    const node = await startLedger(env.nc, id);
    try {
      const kit = await sequencerKit(env.nc, id);
      const seq = createSequencer(kit.deps());
      await seq.load();
      await seq.commit(kit.pending("wiped", 0, 4));
      await seq.settle();
      const file = path.join(env.cluster.dir, "kept.note");
      await writeFile(file, (await kit.store.readHead())!.value.checkpoint);
      const kv = await ledgerKv(env.nc);
      for (const key of await kit.store.keys(">")) if (key !== LedgerBucketKeys.meta) await kv.purge(key);
      const r = await ledgerCli(["consistency", file, "--key", id.verifierKey, "--server", env.cluster.urls.join(",")], {});
      expect([r.code, r.stdout]).toEqual([1, expect.stringContaining(`log INCONSISTENT with ${file}`)]);
      expect(r.stdout).toContain("the log is empty, but the kept checkpoint has 4 entries");
    } finally {
      await node.drain();
    }
  });
});

