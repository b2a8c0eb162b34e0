// Attacker-controlled inputs: every parser and verifier either succeeds or
// throws a LedgerError; nothing else escapes (no TypeError, RangeError, ...).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  LedgerError,
  decodeEntry,
  decodeFrontier,
  noteKeyPairFromSeed,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseReceipt,
  parseSignerKey,
  parseVerifierKey,
  signCheckpoint,
  verifyConsistency,
  verifyInclusion,
  verifyReceipt,
} from "../../ledger/index.js";

const keys = noteKeyPairFromSeed("log.example", new Uint8Array(32).fill(5));
const verifier = parseVerifierKey(keys.verifierKey);
const note = signCheckpoint({ origin: "log.example", size: 1, rootHash: new Uint8Array(32) }, parseSignerKey(keys.signerKey));

function onlyLedgerErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LedgerError);
  }
}

/** Random edits of a valid string: the interesting inputs are near-valid ones. */
const mutated = (base: string): fc.Arbitrary<string> =>
  fc
    .array(fc.tuple(fc.nat(), fc.nat(), fc.string({ maxLength: 3, unit: "binary" })), { maxLength: 4 })
    .map((edits) =>
      edits.reduce((s, [at, len, ins]) => {
        const i = at % (s.length + 1);
        return s.slice(0, i) + ins + s.slice(i + (len % 3));
      }, base),
    );

const anything = fc.oneof(fc.anything(), fc.string(), fc.uint8Array(), fc.constant(null));
const num = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-0, 2 ** 53, 2 ** 64, Number.NaN, Infinity));
const hashy = fc.oneof(fc.uint8Array({ minLength: 30, maxLength: 34 }), anything) as fc.Arbitrary<Uint8Array>;

describe("robustness", () => {
  it("openNote / openCheckpoint", () => {
    fc.assert(
      fc.property(fc.oneof(mutated(note), fc.string({ unit: "binary" })), (s) => {
        onlyLedgerErrors(() => openNote(s, [verifier]));
        onlyLedgerErrors(() => openCheckpoint(s, verifier));
        onlyLedgerErrors(() => openNote(Buffer.from(s, "latin1"), [verifier]));
      }),
      { numRuns: 500 },
    );
  });

  it("parseCheckpoint, key parsers", () => {
    fc.assert(
      fc.property(fc.oneof(mutated("log.example\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), mutated(keys.verifierKey), mutated(keys.signerKey)), (s) => {
        onlyLedgerErrors(() => parseCheckpoint(s));
        onlyLedgerErrors(() => parseVerifierKey(s));
        onlyLedgerErrors(() => parseSignerKey(s));
      }),
      { numRuns: 500 },
    );
  });

  it("decodeEntry, decodeFrontier, parseReceipt, verifyReceipt", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.json(), anything, (bytes, json, value) => {
        onlyLedgerErrors(() => decodeEntry(bytes));
        onlyLedgerErrors(() => decodeEntry(Uint8Array.of(1, ...Buffer.from(json))));
        onlyLedgerErrors(() => decodeFrontier(bytes));
        onlyLedgerErrors(() => parseReceipt(json));
        onlyLedgerErrors(() => parseReceipt(bytes));
        onlyLedgerErrors(() => verifyReceipt(value as string, verifier));
      }),
      { numRuns: 500 },
    );
  });

  it("proof verifiers with arbitrary sizes, hashes and proofs", () => {
    fc.assert(
      fc.property(num, num, hashy, hashy, fc.oneof(fc.array(hashy, { maxLength: 70 }), anything), (a, b, h1, h2, proof) => {
        onlyLedgerErrors(() => verifyInclusion(a, b, h1, proof as Uint8Array[], h2));
        onlyLedgerErrors(() => verifyConsistency(a, b, proof as Uint8Array[], h1, h2));
      }),
      { numRuns: 1000 },
    );
  });
});
