// verifyGrowth: an auditor's check that a log only grew between two signed checkpoints.
import { describe, expect, it } from "vitest";
import {
  consistencyProof, hashLeaf, merkleRoot, noteKeyPairFromSeed, parseSignerKey, parseVerifierKey, signCheckpoint, verifyGrowth,
} from "../../ledger/index.js";
import { codeOf } from "./code-of.js";

const ORIGIN = "ledger.fastemail.net/growth";
const keys = noteKeyPairFromSeed(ORIGIN, Uint8Array.from({ length: 32 }, (_, i) => 7 * i));
const signer = parseSignerKey(keys.signerKey);
const verifier = parseVerifierKey(keys.verifierKey);

const leaves = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => hashLeaf(new TextEncoder().encode(`${prefix}${i}`)));
const note = (ls: Uint8Array[], origin = ORIGIN, s = signer) => signCheckpoint({ origin, size: ls.length, rootHash: merkleRoot(ls) }, s);

describe("verifyGrowth", () => {
  const log = leaves("entry ", 13);
  const at5 = note(log.slice(0, 5));
  const at13 = note(log);

  it("accepts a later checkpoint of the same log, and one of the same size", () => {
    const g = verifyGrowth(at5, at13, consistencyProof(log, 5), verifier);
    expect([g.earlier.size, g.later.size]).toEqual([5, 13]);
    expect(verifyGrowth(at13, at13, [], verifier).later.size).toBe(13);
  });

  it("refuses a log whose first entries were rewritten (a fork), though both checkpoints are signed", () => {
    const forked = [...log.slice(0, 2), ...leaves("rewritten ", 11)];
    expect(codeOf(() => verifyGrowth(at5, note(forked), consistencyProof(forked, 5), verifier))).toMatch(/^LEDGER_(PROOF_INVALID|ROOT_MISMATCH)$/);
  });

  it("refuses a shrunk log, a wrong proof, a foreign signer and another origin", () => {
    expect(codeOf(() => verifyGrowth(at13, at5, [], verifier))).toBe("LEDGER_RANGE_INVALID");
    const proof = consistencyProof(log, 5);
    const flipped = proof.map((h, i) => (i === 0 ? Uint8Array.from(h, (b, j) => (j === 0 ? b ^ 1 : b)) : h));
    expect(codeOf(() => verifyGrowth(at5, at13, flipped, verifier))).toMatch(/^LEDGER_(PROOF_INVALID|ROOT_MISMATCH)$/);
    expect(codeOf(() => verifyGrowth(at5, at13, proof.slice(1), verifier))).toBe("LEDGER_PROOF_MALFORMED");
    const other = parseSignerKey(noteKeyPairFromSeed(ORIGIN, new Uint8Array(32)).signerKey);
    expect(codeOf(() => verifyGrowth(at5, note(log, ORIGIN, other), proof, verifier))).toBe("LEDGER_NOTE_UNVERIFIED");
    const elsewhere = noteKeyPairFromSeed("elsewhere.example/log", new Uint8Array(32).fill(3));
    const theirs = parseVerifierKey(elsewhere.verifierKey);
    const mine = signCheckpoint({ origin: "elsewhere.example/log", size: 5, rootHash: merkleRoot(log.slice(0, 5)) }, parseSignerKey(elsewhere.signerKey));
    expect(codeOf(() => verifyGrowth(mine, mine, [], theirs, { origin: ORIGIN }))).toBe("LEDGER_ORIGIN_MISMATCH");
  });
});
