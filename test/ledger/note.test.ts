// C2SP signed notes: interop with golang.org/x/mod/sumdb/note, a pinned
// known-answer vector, and rejection of malformed or tampered notes.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  generateNoteKeyPair,
  noteKeyId,
  noteKeyPairFromSeed,
  openNote,
  parseSignerKey,
  parseVerifierKey,
  signNote,
  type NoteVerifier,
} from "../../ledger/index.js";
import { codeOf } from "./code-of.js";

// golang.org/x/mod/sumdb/note note_test.go.
const GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE =
  GO_TEXT +
  "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

// Our own known answer: seed 0x00..0x1f, pinned once.
const KAT_NAME = "ledger.fastemail.net/test";
const KAT_SEED = Uint8Array.from({ length: 32 }, (_, i) => i);
const KAT_SKEY = "PRIVATE+KEY+ledger.fastemail.net/test+5b3a3ffc+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f";
const KAT_VKEY = "ledger.fastemail.net/test+5b3a3ffc+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";

describe("interop with Go sumdb/note", () => {
  it("derives the Go verifier key and reproduces the Go note byte for byte", () => {
    const signer = parseSignerKey(GO_SKEY);
    expect(signer.verifierKey).toBe(GO_VKEY);
    expect(signer.keyId).toBe(0xc74f20a3);
    expect(signNote(GO_TEXT, [signer])).toBe(GO_NOTE);
  });

  it("opens the Go note", () => {
    const opened = openNote(GO_NOTE, [parseVerifierKey(GO_VKEY)]);
    expect(opened.text).toBe(GO_TEXT);
    expect(opened.verified).toEqual([{ name: "PeterNeumann", keyId: 0xc74f20a3, base64: expect.any(String) }]);
    expect(opened.unverified).toEqual([]);
  });

  it("rejects every truncation and every single-byte increment of the verifier key", () => {
    const b = Buffer.from(GO_VKEY);
    for (let i = 0; i <= b.length; i++) {
      for (let j = i + 1; j <= b.length; j++) {
        if (i !== 0 || j !== b.length) expect(codeOf(() => parseVerifierKey(b.subarray(i, j).toString()))).toBeDefined();
      }
    }
    for (let i = 0; i < b.length; i++) {
      const m = Buffer.from(b);
      m[i] = ((m[i] as number) + 1) & 0xff;
      expect(codeOf(() => parseVerifierKey(m.toString("latin1")))).toBeDefined();
    }
  });
});

describe("known-answer vector", () => {
  it("key id is SHA-256(name || 0x0A || 0x01 || public key)[:4]", () => {
    const kp = noteKeyPairFromSeed(KAT_NAME, KAT_SEED);
    expect(kp).toEqual({ signerKey: KAT_SKEY, verifierKey: KAT_VKEY });
    // The base64 field may itself contain "+": take everything after the key id.
    const pub = Buffer.from(KAT_VKEY.slice(KAT_VKEY.indexOf("+5b3a3ffc+") + 10), "base64").subarray(1);
    expect(pub.toString("hex")).toBe("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
    const digest = createHash("sha256").update(KAT_NAME).update(Uint8Array.of(0x0a, 0x01)).update(pub).digest();
    expect(noteKeyId(KAT_NAME, pub)).toBe(digest.readUInt32BE(0));
    expect(noteKeyId(KAT_NAME, pub).toString(16)).toBe("5b3a3ffc");
  });
});

describe("sign and open", () => {
  const kp = generateNoteKeyPair("ledger.example/log");
  const signer = parseSignerKey(kp.signerKey);
  const verifier = parseVerifierKey(kp.verifierKey);
  const text = "hello\nworld\n";
  const note = signNote(text, [signer]);

  it("round-trips from string and bytes", () => {
    expect(openNote(note, [verifier]).text).toBe(text);
    expect(openNote(Buffer.from(note), [verifier]).text).toBe(text);
  });

  it("uses the injected random source", () => {
    const a = generateNoteKeyPair("x", (n) => new Uint8Array(n).fill(7));
    const b = generateNoteKeyPair("x", (n) => new Uint8Array(n).fill(7));
    expect(a).toEqual(b);
  });

  it("reports unknown signers as unverified and ignores repeats", () => {
    const other = parseSignerKey(generateNoteKeyPair("other.example").signerKey);
    const both = signNote(text, [signer, other]);
    const opened = openNote(both, [verifier]);
    expect(opened.verified.map((s) => s.name)).toEqual(["ledger.example/log"]);
    expect(opened.unverified.map((s) => s.name)).toEqual(["other.example"]);
    const sigLine = note.slice(text.length + 1);
    expect(openNote(note + sigLine, [verifier]).verified).toHaveLength(1);
  });

  it.each([
    ["changed body", () => openNote(note.replace("hello", "hellO"), [verifier]), "LEDGER_SIGNATURE_INVALID"],
    ["changed signature", () => openNote(flipSignature(note), [verifier]), "LEDGER_SIGNATURE_INVALID"],
    ["wrong key name", () => openNote(note.replace("— ledger.example/log ", "— ledger.example/logs "), [verifier]), "LEDGER_NOTE_UNVERIFIED"],
    ["wrong key id", () => openNote(note, [withKeyId(verifier, verifier.keyId ^ 1)]), "LEDGER_NOTE_UNVERIFIED"],
    ["other key, same name and id", () => openNote(note, [impostor(verifier)]), "LEDGER_SIGNATURE_INVALID"],
    ["no verifiers", () => openNote(note, []), "LEDGER_NOTE_UNVERIFIED"],
  ])("%s is rejected", (_name, fn, code) => {
    expect(codeOf(fn)).toBe(code);
  });

  it.each([
    ["no blank line", "hello\n— a AAAAAAA=\n"],
    ["missing final newline", note.slice(0, -1)],
    ["empty signature block", `${text}\n`],
    ["hyphen instead of em dash", note.replace("—", "-")],
    ["no space after em dash", note.replace("— ", "—")],
    ["no signature field", `${text}\n— ledger.example/log\n`],
    ["signature too short", `${text}\n— ledger.example/log AAAA\n`],
    ["non-canonical base64", note.replace(/=\n$/, "\n")],
    ["invalid name", `${text}\n— a+b AAAAAAA=\n`],
    ["control character", note.replace("hello", "hel\u0007lo")],
    ["carriage return", note.replace("hello\n", "hello\r\n")],
    ["lone surrogate", note.replace("hello", "hel\uD800lo")],
    ["too many signatures", text + "\n" + "— x AAAAAAA=\n".repeat(101)],
  ])("malformed: %s", (_name, bad) => {
    expect(codeOf(() => openNote(bad, [verifier]))).toBe("LEDGER_NOTE_MALFORMED");
  });

  it("rejects invalid UTF-8 bytes and oversized notes", () => {
    const bytes = Buffer.concat([Buffer.from("hel"), Buffer.from([0xff]), Buffer.from(note.slice(3))]);
    expect(codeOf(() => openNote(bytes, [verifier]))).toBe("LEDGER_NOTE_MALFORMED");
    expect(codeOf(() => openNote(note, [verifier], { maxBytes: 10 }))).toBe("LEDGER_NOTE_MALFORMED");
  });

  it("refuses to sign bad text", () => {
    expect(codeOf(() => signNote("no newline", [signer]))).toBe("LEDGER_NOTE_MALFORMED");
    expect(codeOf(() => signNote("tab\there\n", [signer]))).toBe("LEDGER_NOTE_MALFORMED");
    expect(codeOf(() => signNote(text, []))).toBe("LEDGER_NOTE_MALFORMED");
  });

  it("rejects malformed keys", () => {
    for (const k of [
      "",
      "name",
      "name+12345678",
      "name+1234567+AQ==",
      "na me+5b3a3ffc+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
      KAT_VKEY.replace("5b3a3ffc", "5B3A3FFC"),
      KAT_VKEY.replace("+AQ", "+Ag"),
      KAT_VKEY.replace("ledger.", "Ledger."),
    ]) {
      expect(codeOf(() => parseVerifierKey(k))).toBe("LEDGER_KEY_MALFORMED");
    }
    expect(codeOf(() => parseSignerKey(KAT_VKEY))).toBe("LEDGER_KEY_MALFORMED");
    expect(codeOf(() => parseSignerKey(KAT_SKEY.replace("5b3a3ffc", "5b3a3ffd")))).toBe("LEDGER_KEY_MALFORMED");
    expect(codeOf(() => noteKeyPairFromSeed("bad name", KAT_SEED))).toBe("LEDGER_KEY_MALFORMED");
    expect(codeOf(() => noteKeyPairFromSeed("ok", KAT_SEED.subarray(1)))).toBe("LEDGER_KEY_MALFORMED");
  });
});

function flipSignature(note: string): string {
  const i = note.lastIndexOf(" ") + 10;
  const c = note[i] as string;
  return note.slice(0, i) + (c === "A" ? "B" : "A") + note.slice(i + 1);
}

function withKeyId(v: NoteVerifier, keyId: number): NoteVerifier {
  return { ...v, keyId, verify: (m, s) => v.verify(m, s) };
}

function impostor(v: NoteVerifier): NoteVerifier {
  const other = parseVerifierKey(generateNoteKeyPair(v.name).verifierKey);
  return { ...other, keyId: v.keyId, verify: (m, s) => other.verify(m, s) };
}
