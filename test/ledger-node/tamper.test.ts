import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { LedgerCodecs } from "../../protocol/index.js";
import type { LedgerBlock, LedgerBlockRef } from "../../protocol/index.js";
import { generateNoteKeyPair, parseSignerKey, signCheckpoint, tilePath } from "../../ledger/index.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { connectAndProvision, until } from "../helpers/system.js";
import { headSize, ledgerCli, ledgerIdentity, ledgerKv, publishEvents, startLedger } from "./helpers.js";

interface Report { ok: boolean; firstBadBlock?: number; size: number; blocks: number; faults: { block: number; where: string; code: string; message: string }[] }

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("ledger audit against tampering in the bucket", () => {
  let cluster: TestCluster;
  let nc: NatsConnection;
  let kv: KV;
  let server: string;
  const id = ledgerIdentity();
  const N = 500;
  const restore: (() => Promise<unknown>)[] = [];

  const audit = async (): Promise<Report> => {
    const r = await ledgerCli(["verify", "--json", "--server", server, "--key", id.verifierKey], {});
    const report = JSON.parse(r.stdout) as Report;
    expect(r.code).toBe(report.ok ? 0 : 1);
    return report;
  };
  const raw = async (key: string): Promise<Uint8Array> => {
    const e = await kv.get(key);
    if (!e || e.operation !== "PUT") throw new Error(`${key} missing`);
    return e.value;
  };
  /** Overwrites (or deletes) a key, remembering how to put it back. */
  const tamper = async (key: string, value: Uint8Array | undefined) => {
    const e = await kv.get(key);
    const before = e && e.operation === "PUT" ? e.value : undefined;
    restore.push(() => (before ? kv.put(key, before) : kv.purge(key)));
    if (value) await kv.put(key, value);
    else await kv.purge(key);
  };
  const blockRef = async (n: number) => LedgerCodecs.blockRef.decode(await raw(`block.${n}`));
  const stageOf = async (n: number) => LedgerCodecs.block.decode(await raw(`stage.${(await blockRef(n)).stage}`));
  /** Rewrites block n's content the way a careful attacker would: re-staged under its new hash, the record pointing at it. */
  const restage = async (n: number, edit: (b: LedgerBlock) => LedgerBlock) => {
    const ref = await blockRef(n);
    const bytes = LedgerCodecs.block.encode(edit(await stageOf(n)));
    await tamper(`stage.${sha(bytes)}`, bytes);
    await tamper(`block.${n}`, LedgerCodecs.blockRef.encode({ ...ref, stage: sha(bytes) }));
  };

  beforeAll(async () => {
    cluster = await startTestCluster();
    server = cluster.urls.join(",");
    nc = await connectAndProvision(cluster.urls);
    kv = await ledgerKv(nc);
    await publishEvents(nc, "tamper", 0, N);
    const node = await startLedger(nc, id, { FEN_LEDGER_BATCH_SIZE: "40" });
    await until(`${N} entries`, async () => (await headSize(kv)) === N, 60_000);
    await node.drain();
  });
  beforeEach(async () => {
    const r = await audit();
    expect(r).toMatchObject({ ok: true, size: N });
    expect(r.blocks).toBeGreaterThanOrEqual(13);
  });
  afterEach(async () => {
    while (restore.length > 0) await restore.pop()!();
  });
  afterAll(async () => {
    await nc?.close();
    await cluster?.dispose();
  });

  it("one byte changed in an entry: the first bad block is named", async () => {
    const ref = await blockRef(4);
    const body = await stageOf(4);
    const entry = Buffer.from(body.entries[3]!, "base64");
    const at = entry.indexOf('"mailId":"') + 12;
    entry[at] = entry[at]! ^ 0x01;
    const bytes = LedgerCodecs.block.encode({ ...body, entries: body.entries.map((e, i) => (i === 3 ? entry.toString("base64") : e)) });
    await tamper(`stage.${ref.stage}`, bytes);
    expect(await audit()).toMatchObject({ ok: false, firstBadBlock: 4, faults: [{ code: "LEDGER_CORRUPT" }] });
  });

  it("one byte changed in an entry and the block re-staged under its new hash: the recomputed root names the block", async () => {
    await restage(7, (b) => {
      const e = Buffer.from(b.entries[0]!, "base64");
      e[e.indexOf("2025")] = "3".charCodeAt(0);
      return { ...b, entries: [e.toString("base64"), ...b.entries.slice(1)] };
    });
    const r = await audit();
    expect(r).toMatchObject({ ok: false, firstBadBlock: 7 });
    expect(r.faults.map((f) => f.code)).toContain("LEDGER_ROOT_MISMATCH");
  });

  it("one byte changed in a block record: its checkpoint no longer verifies", async () => {
    const bytes = Buffer.from(await raw("block.6"));
    // A digit of the tree size inside the signed checkpoint.
    const at = bytes.indexOf(`\\n${(await blockRef(6)).size}\\n`) + 2;
    bytes[at] = bytes[at] === 0x39 ? 0x38 : bytes[at]! + 1;
    await tamper("block.6", bytes);
    const r = await audit();
    expect(r).toMatchObject({ ok: false, firstBadBlock: 6 });
    expect(r.faults[0]!.code).toMatch(/^LEDGER_(SIGNATURE_INVALID|CORRUPT)$/);
  });

  it("an entry deleted: the block that held it is named", async () => {
    await restage(3, (b) => ({ ...b, entries: b.entries.filter((_, i) => i !== 5) }));
    expect(await audit()).toMatchObject({ ok: false, firstBadBlock: 3 });
  });

  it("two entries swapped: the block is named", async () => {
    await restage(2, (b) => ({ ...b, entries: [b.entries[1]!, b.entries[0]!, ...b.entries.slice(2)] }));
    const r = await audit();
    expect(r).toMatchObject({ ok: false, firstBadBlock: 2 });
    expect(r.faults.map((f) => f.code)).toContain("LEDGER_ROOT_MISMATCH");
  });

  it("two entries swapped between neighbouring blocks: the earlier block is named", async () => {
    const a = await stageOf(8);
    const b = await stageOf(9);
    await restage(8, (x) => ({ ...x, entries: [...x.entries.slice(0, -1), b.entries[0]!] }));
    await restage(9, (x) => ({ ...x, entries: [a.entries.at(-1)!, ...x.entries.slice(1)] }));
    expect(await audit()).toMatchObject({ ok: false, firstBadBlock: 8 });
  });

  it("a key other than the bucket's fails the audit and says so", async () => {
    const r = await ledgerCli(["verify", "--server", server, "--key", generateNoteKeyPair(id.origin).verifierKey], {});
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^ledger FAILED: first bad block 0/m);
    expect(r.stdout).toContain(`note: the given key is not the one the bucket's meta record names (${id.verifierKey})`);
  });

  it("an empty --key file is a usage error: the audit does not fall back to the bucket's own key", async () => {
    // It used to: `verify --key keyfile` with a truncated key file passed (exit 0) against whatever key the bucket names.
    const file = path.join(cluster.dir, "empty.pub");
    await writeFile(file, "");
    const r = await ledgerCli(["verify", "--server", server, "--key", file], {});
    expect(r.stderr).toContain("is empty");
    expect(r.stdout).toBe("");
    expect(r.code).toBe(2);
  });

  it("a forged head (a bigger log signed by another key) is named", async () => {
    const head = LedgerCodecs.blockRef.decode(await raw("head"));
    const mallory = parseSignerKey(generateNoteKeyPair(id.origin).signerKey);
    const checkpoint = signCheckpoint({ origin: id.origin, size: head.size + 10, rootHash: new Uint8Array(32).fill(7) }, mallory);
    const forged: LedgerBlockRef = { ...head, block: head.block + 1, oldSize: head.size, size: head.size + 10, checkpoint, stage: head.stage };
    await tamper("head", LedgerCodecs.blockRef.encode(forged));
    const r = await audit();
    expect(r).toMatchObject({ ok: false, firstBadBlock: head.block + 1, size: N });
    expect(r.faults[0]!.code).toBe("LEDGER_NOTE_UNVERIFIED");
  });

  it("a head rolled back to an earlier, genuinely signed block is named", async () => {
    await tamper("head", await raw("block.5"));
    expect(await audit()).toMatchObject({ ok: false, firstBadBlock: 5, faults: [{ where: "head" }] });
  });

  it("a changed hash tile or a deleted index record is found", async () => {
    const ref = await blockRef(1);
    const body = await stageOf(1);
    const entry = JSON.parse(Buffer.from(body.entries[0]!, "base64").subarray(1).toString("utf8")) as { mailId: string; eventId: string };
    await tamper(`m.${entry.mailId}.1`, undefined);
    const r = await audit();
    expect(r).toMatchObject({ ok: false, firstBadBlock: 1 });
    expect(r.faults[0]!.message).toContain(`m.${entry.mailId}.1`);
    while (restore.length > 0) await restore.pop()!();
    const tile = `tile/0/000.p/${ref.size}`;
    const t = Buffer.from(await raw(tile));
    t[0] = t[0]! ^ 0x80;
    await tamper(tile, t);
    expect(await audit()).toMatchObject({ ok: false, firstBadBlock: 1 });
  });

  it("the last two block records deleted: the blocks pass as still rolling forward, but their tiles and index records are still compared", async () => {
    const h = LedgerCodecs.blockRef.decode(await raw("head")).block;
    const prev = await blockRef(h - 1);
    await tamper(`block.${h}`, undefined);
    await tamper(`block.${h - 1}`, undefined);
    const deleted = await audit();
    expect(deleted).toMatchObject({ ok: true, size: N });
    const s = prev.size;
    const tile = tilePath({ level: 0, index: Math.floor((s - 1) / 256), width: s % 256 || 256 });
    const t = Buffer.from(await raw(tile));
    t[0] = t[0]! ^ 0x80;
    await tamper(tile, t);
    const r = await audit();
    expect(r).toMatchObject({ ok: false, firstBadBlock: h - 1 });
    expect(r.faults[0]!.message).toContain(tile);
    while (restore.length > 2) await restore.pop()!();
    const entry = JSON.parse(Buffer.from(LedgerCodecs.block.decode(await raw(`stage.${prev.stage}`)).entries[0]!, "base64").subarray(1).toString("utf8")) as { mailId: string };
    const key = `m.${entry.mailId}.${h - 1}`;
    const rec = LedgerCodecs.mailIndex.decode(await raw(key));
    await tamper(key, LedgerCodecs.mailIndex.encode({ ...rec, events: [...rec.events, { eventId: `${entry.mailId}.Bounced.0`, index: rec.events[0]!.index }] }));
    const i = await audit();
    expect(i).toMatchObject({ ok: false, firstBadBlock: h - 1 });
    expect(i.faults[0]!.message).toContain(key);
  });

  it("a receipt verifies offline with the pinned key, and fails with one flipped bit anywhere that matters", async () => {
    const body = await stageOf(5);
    const mailId = (JSON.parse(Buffer.from(body.entries[0]!, "base64").subarray(1).toString("utf8")) as { mailId: string }).mailId;
    const proved = await ledgerCli(["prove", mailId, "--server", server], {});
    expect(proved.code).toBe(0);
    const file = path.join(cluster.dir, "receipt.json");
    await writeFile(file, proved.stdout);
    const ok = await ledgerCli(["verify-receipt", file, "--key", id.verifierKey, "--origin", id.origin], {});
    expect(ok.stdout).toContain("receipt OK");
    expect(ok.code).toBe(0);
    expect((await ledgerCli(["verify-receipt", "-", "--key", id.verifierKey], {}, proved.stdout)).code).toBe(0);
    expect((await ledgerCli(["verify-receipt", file, "--key", generateNoteKeyPair(id.origin).verifierKey], {})).code).toBe(1);

    const receipt = JSON.parse(proved.stdout) as { checkpoint: string; entries: { leafIndex: number; entry: string; proof: string[] }[] };
    const flipB64 = (s: string, bit: number) => {
      const b = Buffer.from(s, "base64");
      const at = Math.floor(bit / 8) % b.length;
      b[at] = b[at]! ^ (1 << (bit % 8));
      return b.toString("base64");
    };
    const variants: [string, (r: typeof receipt) => void][] = [
      ["entry byte", (r) => { r.entries[0]!.entry = flipB64(r.entries[0]!.entry, 8 * 20 + 2); }],
      ["proof hash", (r) => { r.entries[1]!.proof[0] = flipB64(r.entries[1]!.proof[0]!, 77); }],
      ["leaf index", (r) => { r.entries[0]!.leafIndex ^= 1; }],
      ["checkpoint signature", (r) => {
        const cut = r.checkpoint.lastIndexOf(" ") + 1;
        r.checkpoint = r.checkpoint.slice(0, cut) + flipB64(r.checkpoint.slice(cut).trim(), 200) + "\n";
      }],
    ];
    for (const [what, flip] of variants) {
      const bad = structuredClone(receipt);
      flip(bad);
      await writeFile(file, JSON.stringify(bad));
      const r = await ledgerCli(["verify-receipt", file, "--key", id.verifierKey], {});
      expect(r.code, what).toBe(1);
      expect(r.stdout, what).toContain("receipt INVALID");
    }
    // And a flipped bit in the raw file, at every 97th bit.
    const text = Buffer.from(proved.stdout);
    for (let bit = 0; bit < text.length * 8; bit += 97) {
      const bad = Buffer.from(text);
      bad[bit >> 3] = bad[bit >> 3]! ^ (1 << (bit & 7));
      await writeFile(file, bad);
      expect((await ledgerCli(["verify-receipt", file, "--key", id.verifierKey], {})).code, `bit ${bit}`).not.toBe(0);
    }
  });
});
