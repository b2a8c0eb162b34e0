// Offline receipts: build from a tiled log, verify, and reject any tampering.
import { beforeAll, describe, expect, it } from "vitest";
import {
  EMPTY_FRONTIER,
  LedgerError,
  MailState,
  appendBatch,
  commitRecipients,
  createMemoryTileStore,
  createReceipt,
  createTileHashReader,
  encodeEntry,
  hashLeaf,
  noteKeyPairFromSeed,
  parseReceipt,
  parseSignerKey,
  parseVerifierKey,
  proveInclusion,
  serializeReceipt,
  signCheckpoint,
  verifyReceipt,
  type LedgerEntry,
  type Receipt,
} from "../../ledger/index.js";
import { codeOf } from "./code-of.js";

const ORIGIN = "ledger.fastemail.net/test";
const keys = noteKeyPairFromSeed(ORIGIN, Uint8Array.from({ length: 32 }, (_, i) => i));
const KEY = new Uint8Array(32).fill(1);

function event(mailId: string, i: number, state: LedgerEntry["state"]): LedgerEntry {
  return {
    mailId,
    state,
    attempt: i % 3,
    at: new Date(Date.UTC(2025, 0, 1, 0, 0, i)).toISOString(),
    eventId: `${mailId}-ev-${i}`,
    recipients: commitRecipients(KEY, [`user${i}@example.com`]),
    detail: state === MailState.Sent ? { smtp: { code: 250, enhanced: "2.0.0", message: "queued" } } : {},
  };
}

let receipt: Receipt;
let json: string;
let single: string;
let foreign: { leafIndex: number; entry: Uint8Array; proof: Uint8Array[] };
let checkpoint: string;

beforeAll(async () => {
  // 300 events from 100 mails; mail "m-7" has three of them, in different blocks.
  const entries = Array.from({ length: 300 }, (_, i) =>
    encodeEntry(event(`m-${i % 100}`, i, [MailState.PendingProcessing, MailState.Processing, MailState.Sent][Math.floor(i / 100)] as LedgerEntry["state"])),
  );
  const store = createMemoryTileStore();
  let f = EMPTY_FRONTIER;
  for (const block of [entries.slice(0, 120), entries.slice(120, 250), entries.slice(250)]) {
    const r = await appendBatch(f, block.map((e) => hashLeaf(e)), store);
    store.writeTiles(r.tiles);
    f = r.frontier;
    checkpoint = signCheckpoint({ origin: ORIGIN, size: f.size, rootHash: r.root }, parseSignerKey(keys.signerKey));
  }
  const reader = createTileHashReader(store, f.size);
  const prove = async (i: number) => ({ leafIndex: i, entry: entries[i] as Uint8Array, proof: await proveInclusion(reader, i, f.size) });
  receipt = createReceipt({ mailId: "m-7", checkpoint, entries: await Promise.all([207, 7, 107].map(prove)) });
  json = serializeReceipt(receipt);
  single = serializeReceipt(createReceipt({ mailId: "m-7", checkpoint, entries: [await prove(107)] }));
  foreign = await prove(8);
});

describe("receipt", () => {
  it("verifies offline from the object, the JSON text and the bytes", () => {
    for (const input of [receipt, json, Buffer.from(json)]) {
      const v = verifyReceipt(input, keys.verifierKey, { origin: ORIGIN });
      expect(v.mailId).toBe("m-7");
      expect(v.checkpoint.size).toBe(300);
      expect(v.entries.map((e) => e.leafIndex)).toEqual([7, 107, 207]);
      expect(v.entries.map((e) => e.entry.state)).toEqual(["PendingProcessing", "Processing", "Sent"]);
    }
    expect(parseReceipt(json)).toEqual(receipt);
  });

  it("rejects every single-bit flip anywhere in a serialized one-entry receipt", () => {
    const bytes = Buffer.from(single);
    const verifier = parseVerifierKey(keys.verifierKey);
    const accepted: string[] = [];
    let checked = 0;
    for (let i = 0; i < bytes.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        bytes[i] = (bytes[i] as number) ^ (1 << bit);
        try {
          verifyReceipt(bytes, verifier);
          accepted.push(`byte ${i} bit ${bit}`);
        } catch (err) {
          if (!(err instanceof LedgerError)) accepted.push(`byte ${i} bit ${bit}: ${String(err)}`);
        }
        bytes[i] = (bytes[i] as number) ^ (1 << bit);
        checked++;
      }
    }
    expect(accepted).toEqual([]);
    expect(checked).toBe(Buffer.byteLength(single) * 8);
  });

  it("rejects a flipped bit in each decoded field", () => {
    const flipB64 = (s: string, bit: number): string => {
      const b = Buffer.from(s, "base64");
      b[Math.floor(bit / 8) % b.length] = (b[Math.floor(bit / 8) % b.length] as number) ^ (1 << bit % 8);
      return b.toString("base64");
    };
    const e0 = receipt.entries[0] as Receipt["entries"][number];
    const cases: Receipt[] = [
      { ...receipt, mailId: "m-6" },
      { ...receipt, checkpoint: receipt.checkpoint.replace("\n300\n", "\n301\n") },
      { ...receipt, entries: [{ ...e0, leafIndex: e0.leafIndex ^ 1 }, ...receipt.entries.slice(1)] },
    ];
    for (let bit = 0; bit < 256; bit += 37) {
      cases.push({ ...receipt, entries: [{ ...e0, entry: flipB64(e0.entry, bit) }, ...receipt.entries.slice(1)] });
      e0.proof.forEach((_, k) =>
        cases.push({
          ...receipt,
          entries: [{ ...e0, proof: e0.proof.map((h, j) => (j === k ? flipB64(h, bit) : h)) }, ...receipt.entries.slice(1)],
        }),
      );
    }
    for (const c of cases) expect(codeOf(() => verifyReceipt(c, keys.verifierKey))).toBeDefined();
  });

  it("rejects an entry of another mail even with a valid proof", () => {
    const mixed = createReceipt({
      mailId: "m-7",
      checkpoint,
      entries: [foreign],
    });
    expect(codeOf(() => verifyReceipt(mixed, keys.verifierKey))).toBe("LEDGER_RECEIPT_MISMATCH");
  });

  it("rejects the wrong key, the wrong origin and unknown versions", () => {
    const other = noteKeyPairFromSeed(ORIGIN, new Uint8Array(32).fill(3));
    expect(codeOf(() => verifyReceipt(receipt, other.verifierKey))).toBe("LEDGER_NOTE_UNVERIFIED");
    expect(codeOf(() => verifyReceipt(receipt, keys.verifierKey, { origin: "x" }))).toBe("LEDGER_ORIGIN_MISMATCH");
    expect(codeOf(() => verifyReceipt(json.replace('"v":1', '"v":2'), keys.verifierKey))).toBe(
      "LEDGER_RECEIPT_VERSION_UNSUPPORTED",
    );
  });

  it.each([
    ["not JSON", (): string => "{"],
    ["unknown field", (): string => json.replace('"v":1', '"v":1,"x":0')],
    ["missing entries", (): string => json.replace(/,"entries":\[.*\],"mailId"/, ',"mailId"')],
    ["unsorted entries", (): string => JSON.stringify({ ...receipt, entries: [...receipt.entries].reverse() })],
    ["duplicate leaf", (): string => JSON.stringify({ ...receipt, entries: [receipt.entries[0], receipt.entries[0]] })],
    ["empty entries", (): string => JSON.stringify({ ...receipt, entries: [] })],
    ["wrong type", (): string => json.replace("fastemailnet.ledger.receipt", "other")],
    ["unpadded base64", (): string => JSON.stringify({ ...receipt, entries: [{ ...receipt.entries[0], proof: ["AAAA"] }] })],
  ])("rejects a malformed receipt: %s", (_name, text) => {
    expect(codeOf(() => verifyReceipt(text(), keys.verifierKey))).toBe("LEDGER_RECEIPT_MALFORMED");
  });

  // JSON.parse turns "\ud800" into a lone surrogate, which has no UTF-8 form
  // and cannot be serialized canonically: the shape check refuses it, so
  // every entry point throws the typed error rather than a plain one later.
  it.each([
    ["mailId", { mailId: "m-7\ud800" }],
    ["checkpoint", { checkpoint: "\udc00" + checkpoint }],
  ])("refuses a lone surrogate in %s with LEDGER_RECEIPT_MALFORMED, parsed or serialized", (field, change) => {
    const bad = { ...receipt, ...change } as Receipt;
    expect(codeOf(() => parseReceipt(JSON.stringify(bad)))).toBe("LEDGER_RECEIPT_MALFORMED");
    expect(codeOf(() => serializeReceipt(bad))).toBe("LEDGER_RECEIPT_MALFORMED");
    expect(codeOf(() => verifyReceipt(bad, keys.verifierKey))).toBe("LEDGER_RECEIPT_MALFORMED");
    expect(() => parseReceipt(JSON.stringify(bad))).toThrow(new RegExp(`${field}: `));
  });

  it("createReceipt refuses ill-typed input with LEDGER_RECEIPT_MALFORMED before touching it", () => {
    const proof = [...(receipt.entries[0] as Receipt["entries"][number]).proof].map((h) => new Uint8Array(Buffer.from(h, "base64")));
    const ok = { leafIndex: 7, entry: new Uint8Array([1, 2]), proof };
    type In = Parameters<typeof createReceipt>[0];
    const cases: unknown[] = [
      { mailId: "m-7", checkpoint, entries: [{ ...ok, entry: "AQ==" }] },
      { mailId: "m-7", checkpoint, entries: [{ ...ok, proof: undefined }] },
      { mailId: "m-7", checkpoint, entries: [{ ...ok, proof: ["AAAA"] }] },
      { mailId: "m-7", checkpoint, entries: [null] },
      { mailId: "m-7", checkpoint, entries: "x" },
      { mailId: "m-7\ud800", checkpoint, entries: [ok] },
      null,
    ];
    for (const c of cases) expect(codeOf(() => createReceipt(c as In))).toBe("LEDGER_RECEIPT_MALFORMED");
  });
});
