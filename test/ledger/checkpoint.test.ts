// C2SP tlog-checkpoint bodies inside signed notes.
import { describe, expect, it } from "vitest";
import {
  EMPTY_ROOT,
  formatCheckpoint,
  noteKeyPairFromSeed,
  openCheckpoint,
  parseCheckpoint,
  parseSignerKey,
  parseVerifierKey,
  signCheckpoint,
} from "../../ledger/index.js";
import { codeOf } from "./code-of.js";

const ORIGIN = "ledger.fastemail.net/test";
const SEED = Uint8Array.from({ length: 32 }, (_, i) => i);
const ROOT8 = Buffer.from("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328", "hex");
// Pinned once: checkpoint of the roots.json tree of size 8, signed with the
// seed-0x00..0x1f key. Ed25519 is deterministic, so this must not change.
const PINNED_NOTE =
  "ledger.fastemail.net/test\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\nblock 1\n\n" +
  "— ledger.fastemail.net/test Wzo//H4yj6xZIyfL9AtPoLpTtvwBOw4ABIw9oCM+FisFLpI29fvjxXYHEHhdSgGuW1Fwx85nTrClOK2x38UrfknjnA8=\n";

const keys = noteKeyPairFromSeed(ORIGIN, SEED);
const signer = parseSignerKey(keys.signerKey);
const verifier = parseVerifierKey(keys.verifierKey);

describe("checkpoint", () => {
  it("signs the pinned note byte for byte", () => {
    expect(signCheckpoint({ origin: ORIGIN, size: 8, rootHash: ROOT8, extensions: ["block 1"] }, signer)).toBe(PINNED_NOTE);
  });

  it("opens the pinned note", () => {
    const { checkpoint, note } = openCheckpoint(PINNED_NOTE, verifier, { origin: ORIGIN });
    expect(checkpoint.origin).toBe(ORIGIN);
    expect(checkpoint.size).toBe(8);
    expect(Buffer.from(checkpoint.rootHash).equals(ROOT8)).toBe(true);
    expect(checkpoint.extensions).toEqual(["block 1"]);
    expect(note.verified).toHaveLength(1);
  });

  it("round-trips without extensions and for the empty tree", () => {
    const body = formatCheckpoint({ origin: ORIGIN, size: 0, rootHash: EMPTY_ROOT });
    expect(body).toBe(`${ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n`);
    expect(parseCheckpoint(body)).toMatchObject({ origin: ORIGIN, size: 0, extensions: [] });
  });

  it("rejects tampering and the wrong origin", () => {
    expect(codeOf(() => openCheckpoint(PINNED_NOTE.replace("\n8\n", "\n9\n"), verifier))).toBe("LEDGER_SIGNATURE_INVALID");
    expect(codeOf(() => openCheckpoint(PINNED_NOTE, verifier, { origin: "other" }))).toBe("LEDGER_ORIGIN_MISMATCH");
    const other = parseVerifierKey(noteKeyPairFromSeed("other.example", SEED).verifierKey);
    expect(codeOf(() => openCheckpoint(PINNED_NOTE, other))).toBe("LEDGER_NOTE_UNVERIFIED");
  });

  it.each([
    ["missing root line", `${ORIGIN}\n8\n`],
    ["leading zero", `${ORIGIN}\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n`],
    ["sign", `${ORIGIN}\n+8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n`],
    ["size above 2^53", `${ORIGIN}\n18446744073709551615\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n`],
    ["short root", `${ORIGIN}\n8\nXcnaeacGWamtVZy3Ad7Zoqud\n`],
    ["unpadded root", `${ORIGIN}\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg\n`],
    ["empty origin", `\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n`],
    ["empty extension line", `${ORIGIN}\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\nx\n`],
    ["no final newline", `${ORIGIN}\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=`],
  ])("parse rejects %s", (_name, body) => {
    expect(codeOf(() => parseCheckpoint(body))).toBe("LEDGER_CHECKPOINT_MALFORMED");
  });

  it("format rejects bad fields", () => {
    expect(codeOf(() => formatCheckpoint({ origin: "a\nb", size: 1, rootHash: ROOT8 }))).toBe("LEDGER_CHECKPOINT_MALFORMED");
    expect(codeOf(() => formatCheckpoint({ origin: ORIGIN, size: -1, rootHash: ROOT8 }))).toBe("LEDGER_CHECKPOINT_MALFORMED");
    expect(codeOf(() => formatCheckpoint({ origin: ORIGIN, size: 1, rootHash: ROOT8.subarray(1) }))).toBe(
      "LEDGER_CHECKPOINT_MALFORMED",
    );
    expect(codeOf(() => formatCheckpoint({ origin: ORIGIN, size: 1, rootHash: ROOT8, extensions: [""] }))).toBe(
      "LEDGER_CHECKPOINT_MALFORMED",
    );
  });
});
