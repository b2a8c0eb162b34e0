// Canonical entry encoding: determinism, strict decoding, recipient commitments.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type {
  LedgerError} from "../../ledger/index.js";
import {
  ENTRY_FORMAT_VERSION,
  ENTRY_FORMAT_VERSION_IN_DOUBT,
  MailState,
  commitRecipient,
  commitRecipients,
  decodeEntry,
  encodeEntry,
  entryLeafHash,
  hashLeaf,
  type LedgerEntry,
} from "../../ledger/index.js";
import { codeOf } from "./code-of.js";

const KEY = new Uint8Array(32).fill(9);

const sample: LedgerEntry = {
  mailId: "m-0001",
  state: MailState.Bounced,
  attempt: 2,
  at: "2025-01-02T03:04:05.678Z",
  eventId: "ev-42",
  recipients: commitRecipients(KEY, ["Bob@Example.com", "alice@example.com"]),
  detail: {
    smtp: { code: 550, enhanced: "5.1.1", message: "user unknown", command: "RCPT TO" },
    errorCode: "SMTP_PERMANENT",
    classification: { verdict: "ham", score: 0.125, modelVersion: "nb-2025.01" },
  },
};

// Pinned once; any change to the encoding must bump ENTRY_FORMAT_VERSION.
// The commitments were cross-checked with Python's hmac module.
const SAMPLE_JSON =
  '{"at":"2025-01-02T03:04:05.678Z","attempt":2,"detail":{"classification":{"modelVersion":"nb-2025.01",' +
  '"score":0.125,"verdict":"ham"},"errorCode":"SMTP_PERMANENT","smtp":{"code":550,"command":"RCPT TO",' +
  '"enhanced":"5.1.1","message":"user unknown"}},"eventId":"ev-42","mailId":"m-0001","recipients":' +
  '["30e1fe12c24ad67730199715669e844ddec2c15f2a24e406413376313e23e2a3",' +
  '"6bcdb43b98d1cd0a146dd1f62a20de641df71eca879e61d383036914b7d944a6"],"state":"Bounced"}';
const SAMPLE_LEAF_HASH = "f3cb3a4e10a0b3e726efbb6c6e6433a4a3515fff3291a1e35bfa050d605e439f";

function shuffleKeys(v: unknown, seed: number): unknown {
  if (Array.isArray(v)) return v.map((x) => shuffleKeys(x, seed));
  if (typeof v !== "object" || v === null) return v;
  const entries = Object.entries(v);
  entries.sort((a, b) => ((a[0].length * 31 + seed) % 7) - ((b[0].length * 31 + seed) % 7) || (seed % 2 ? 1 : -1));
  return Object.fromEntries(entries.map(([k, x]) => [k, shuffleKeys(x, seed + 1)]));
}

const hex64 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString("hex"));
const noControl = (s: string): boolean => [...s].every((c) => c.charCodeAt(0) >= 0x20 && c !== "\u007f");
const text = (max: number): fc.Arbitrary<string> =>
  fc.string({ minLength: 1, maxLength: max, unit: "grapheme" }).filter(noControl);
const entryArb: fc.Arbitrary<LedgerEntry> = fc.record({
  mailId: text(40),
  state: fc.constantFrom(...Object.values(MailState)),
  attempt: fc.integer({ min: 0, max: 0x7fff_ffff }),
  at: fc.date({ min: new Date(0), max: new Date("2200-01-01T00:00:00Z"), noInvalidDate: true }).map((d) => d.toISOString()),
  eventId: text(40),
  recipients: fc.uniqueArray(hex64, { maxLength: 5 }).map((r) => [...r].sort()),
  detail: fc.record(
    {
      smtp: fc.record(
        {
          code: fc.integer({ min: 200, max: 599 }),
          enhanced: fc.constantFrom("2.0.0", "4.7.1", "5.1.1"),
          message: text(60),
          command: fc.constantFrom("RCPT TO", "DATA", "MAIL FROM"),
        },
        { requiredKeys: ["code"] },
      ),
      errorCode: fc.constantFrom("E_TIMEOUT", "SMTP_PERMANENT", "a.b:c-d"),
      classification: fc.record({
        verdict: fc.constantFrom("ham", "spam"),
        // -0 is encoded as 0 (ECMAScript number serialization), so it cannot round-trip.
        score: fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x)),
        modelVersion: text(20),
      }),
      inDoubt: fc.constant(true as const),
    },
    { requiredKeys: [] },
  ),
});

describe("encodeEntry", () => {
  it("pins the bytes: version byte, then canonical JSON with sorted keys", () => {
    const bytes = encodeEntry(sample);
    expect(bytes[0]).toBe(ENTRY_FORMAT_VERSION);
    expect(Buffer.from(bytes.subarray(1)).toString()).toBe(SAMPLE_JSON);
  });

  it("pins the leaf hash of the sample entry", () => {
    expect(Buffer.from(hashLeaf(encodeEntry(sample))).toString("hex")).toBe(SAMPLE_LEAF_HASH);
    expect(Buffer.from(entryLeafHash(sample)).toString("hex")).toBe(SAMPLE_LEAF_HASH);
  });

  it("is canonical: key order and recipient order do not matter", () => {
    fc.assert(
      fc.property(entryArb, fc.nat(), (e, seed) => {
        const shuffled = shuffleKeys(e, seed) as LedgerEntry;
        const reversed = { ...shuffled, recipients: [...e.recipients].reverse() };
        expect(Buffer.from(encodeEntry(reversed)).equals(Buffer.from(encodeEntry(e)))).toBe(true);
      }),
    );
  });

  it("round-trips through decodeEntry", () => {
    fc.assert(
      fc.property(entryArb, (e) => {
        const bytes = encodeEntry(e);
        const back = decodeEntry(bytes);
        expect(back).toEqual(e);
        expect(Buffer.from(encodeEntry(back)).equals(Buffer.from(bytes))).toBe(true);
      }),
    );
  });

  it("lists every invalid field", () => {
    const bad = {
      ...sample,
      mailId: "",
      state: "Lost",
      attempt: -1,
      at: "2025-01-02T03:04:05Z",
      recipients: ["alice@example.com"],
      detail: { smtp: { code: 99 }, extra: 1 },
      more: true,
    } as unknown as LedgerEntry;
    try {
      encodeEntry(bad);
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: "LEDGER_ENTRY_MALFORMED" });
      const issues = (err as LedgerError).issues.join("\n");
      for (const field of ["mailId", "state", "attempt", "at", "recipients[0]", "detail.smtp.code", "detail.extra", "entry.more"]) {
        expect(issues).toContain(field);
      }
    }
  });

  it("records an attempt in doubt as detail.inDoubt: true in a version 2 entry, and takes no other value there", () => {
    const bytes = encodeEntry({ ...sample, state: "Deferred", detail: { errorCode: "SMTP_TRANSIENT", inDoubt: true } });
    expect(bytes[0]).toBe(ENTRY_FORMAT_VERSION_IN_DOUBT);
    expect(Buffer.from(bytes.subarray(1)).toString()).toContain('"detail":{"errorCode":"SMTP_TRANSIENT","inDoubt":true}');
    expect(decodeEntry(bytes).detail).toEqual({ errorCode: "SMTP_TRANSIENT", inDoubt: true });
    expect(codeOf(() => encodeEntry({ ...sample, detail: { inDoubt: false } as never }))).toBe("LEDGER_ENTRY_MALFORMED");
    // One encoding per entry: the version byte must be the one the content calls for.
    const asV1 = Uint8Array.from(bytes);
    asV1[0] = ENTRY_FORMAT_VERSION;
    expect(codeOf(() => decodeEntry(asV1))).toBe("LEDGER_ENTRY_MALFORMED");
    const plain = encodeEntry(sample);
    const asV2 = Uint8Array.from(plain);
    asV2[0] = ENTRY_FORMAT_VERSION_IN_DOUBT;
    expect(codeOf(() => decodeEntry(asV2))).toBe("LEDGER_ENTRY_MALFORMED");
  });

  it("rejects duplicate recipients and invalid timestamps", () => {
    const r = sample.recipients[0] as string;
    expect(codeOf(() => encodeEntry({ ...sample, recipients: [r, r] }))).toBe("LEDGER_ENTRY_MALFORMED");
    expect(codeOf(() => encodeEntry({ ...sample, at: "2025-02-30T00:00:00.000Z" }))).toBe("LEDGER_ENTRY_MALFORMED");
    expect(codeOf(() => encodeEntry({ ...sample, detail: { classification: { verdict: "x", score: Infinity, modelVersion: "1" } } }))).toBe(
      "LEDGER_ENTRY_MALFORMED",
    );
  });
});

describe("decodeEntry is strict", () => {
  const good = encodeEntry(sample);
  const json = Buffer.from(good.subarray(1)).toString();
  const withJson = (s: string): Uint8Array => Uint8Array.of(1, ...Buffer.from(s));

  it("rejects unknown versions", () => {
    for (const v of [0, 3, 0x7b]) {
      expect(codeOf(() => decodeEntry(Uint8Array.of(v, ...good.subarray(1))))).toBe("LEDGER_ENTRY_VERSION_UNSUPPORTED");
    }
  });

  it.each([
    ["whitespace", json.replace('"attempt":2', '"attempt": 2')],
    ["reordered keys", json.replace('{"at":"2025-01-02T03:04:05.678Z","attempt":2,', '{"attempt":2,"at":"2025-01-02T03:04:05.678Z",')],
    ["duplicate key", json.replace('"attempt":2', '"attempt":2,"attempt":2')],
    ["number form", json.replace('"attempt":2', '"attempt":2.0')],
    ["escaped character", json.replace('"m-0001"', '"m\\u002d0001"')],
    ["unknown field", json.replace('"attempt":2', '"attempt":2,"z":1')],
    ["not JSON", "{"],
    ["array", "[]"],
  ])("rejects %s", (_name, s) => {
    expect(codeOf(() => decodeEntry(withJson(s)))).toBe("LEDGER_ENTRY_MALFORMED");
  });

  it("rejects invalid UTF-8, truncation and empty input", () => {
    expect(codeOf(() => decodeEntry(Uint8Array.of(1, 0xff)))).toBe("LEDGER_ENTRY_MALFORMED");
    expect(codeOf(() => decodeEntry(good.subarray(0, good.length - 1)))).toBe("LEDGER_ENTRY_MALFORMED");
    expect(codeOf(() => decodeEntry(new Uint8Array(0)))).toBe("LEDGER_ENTRY_MALFORMED");
  });
});

describe("commitRecipient", () => {
  it("is HMAC-SHA256 of the lower-cased address, hex", () => {
    expect(commitRecipient(KEY, "Alice@Example.COM")).toBe(commitRecipient(KEY, "alice@example.com"));
    expect(commitRecipient(KEY, "alice@example.com")).toMatch(/^[0-9a-f]{64}$/);
    expect(commitRecipient(KEY, "alice@example.com")).not.toBe(commitRecipient(new Uint8Array(32), "alice@example.com"));
    expect(commitRecipients(KEY, ["b@x", "B@X", "a@x"])).toHaveLength(2);
  });

  it("rejects short keys", () => {
    expect(codeOf(() => commitRecipient(new Uint8Array(15), "a@x"))).toBe("LEDGER_COMMITMENT_KEY_INVALID");
  });
});
