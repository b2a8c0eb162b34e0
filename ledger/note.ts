/**
 * C2SP signed-note with Ed25519 keys, compatible with golang.org/x/mod/sumdb/note.
 *
 * A note is UTF-8 text ending in a newline, a blank line, then signature
 * lines `— <key name> <base64(key id (4 bytes, big-endian) || signature)>\n`.
 * The key id of an Ed25519 key is the first 4 bytes of
 * `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)`.
 *
 * Key strings: verifier `<name>+<hex8 key id>+<base64(0x01 || public key)>`,
 * signer `PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 || 32-byte seed)>`.
 *
 * @module
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { fromBase64Strict, hasControlChars, isWellFormedString, toBase64, utf8DecodeStrict } from "./encoding.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";

/** Signature type byte of Ed25519 in key ids and key strings. */
export const NOTE_ALG_ED25519 = 0x01;

/** Prefix of every signature line: U+2014 EM DASH, then a space. */
export const NOTE_SIGNATURE_PREFIX = "\u2014 ";

/** Most signature lines {@link openNote} accepts (as in Go's note.Open). */
export const NOTE_MAX_SIGNATURES = 100;

/** Largest note {@link openNote} accepts by default, in bytes. */
export const NOTE_MAX_BYTES = 1 << 20;

const NAME_MAX_BYTES = 256;
const ED25519_SEED_SIZE = 32;
const ED25519_SIGNATURE_SIZE = 64;
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** Verifies signatures of one named key. Built by {@link parseVerifierKey}. */
export interface NoteVerifier {
  /** Key name (usually the log origin). */
  readonly name: string;
  /** 32-bit key id. */
  readonly keyId: number;
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** True if `signature` is a valid signature of `message` by this key. */
  verify(message: Uint8Array, signature: Uint8Array): boolean;
}

/** Signs notes with one named key. Built by {@link parseSignerKey}. */
export interface NoteSigner {
  /** Key name (usually the log origin). */
  readonly name: string;
  /** 32-bit key id. */
  readonly keyId: number;
  /** Verifier key string of the matching public key. */
  readonly verifierKey: string;
  /** Ed25519 signature of `message`. */
  sign(message: Uint8Array): Uint8Array;
}

/** A matching signer/verifier key string pair. */
export interface NoteKeyPair {
  /** `PRIVATE+KEY+<name>+<hex8>+<base64(0x01||seed)>`; keep secret. */
  readonly signerKey: string;
  /** `<name>+<hex8>+<base64(0x01||public key)>`; publish. */
  readonly verifierKey: string;
}

/** One signature line of a note. */
export interface NoteSignature {
  /** Key name on the line. */
  readonly name: string;
  /** Key id from the first 4 signature bytes. */
  readonly keyId: number;
  /** Base64 signature field exactly as on the line. */
  readonly base64: string;
}

/** Result of {@link openNote}. */
export interface OpenedNote {
  /** The signed text, including its final newline. */
  readonly text: string;
  /** Signatures verified by a known key (at least one). */
  readonly verified: readonly NoteSignature[];
  /** Signatures by keys not among the verifiers (not checked). */
  readonly unverified: readonly NoteSignature[];
}

function keyError(message: string, cause?: unknown): LedgerError {
  return new LedgerError(LedgerErrorCode.KeyMalformed, message, cause === undefined ? undefined : { cause });
}

function noteError(message: string): LedgerError {
  return new LedgerError(LedgerErrorCode.NoteMalformed, message);
}

/**
 * True for a valid key name: non-empty, well-formed Unicode, at most 256 UTF-8
 * bytes, no whitespace, no `+`, no control characters.
 */
export function isValidKeyName(name: unknown): name is string {
  return (
    typeof name === "string" &&
    name.length > 0 &&
    isWellFormedString(name) &&
    Buffer.byteLength(name, "utf8") <= NAME_MAX_BYTES &&
    !hasControlChars(name) &&
    !name.includes("\u007f") &&
    !/[\s\u0085+]/u.test(name)
  );
}

/** Key id of an Ed25519 key: first 4 bytes (big-endian) of SHA-256(name || 0x0A || 0x01 || publicKey). */
export function noteKeyId(name: string, publicKey: Uint8Array): number {
  const digest = createHash("sha256")
    .update(Buffer.from(name, "utf8"))
    .update(Uint8Array.of(0x0a, NOTE_ALG_ED25519))
    .update(publicKey)
    .digest();
  return digest.readUInt32BE(0);
}

function hex8(id: number): string {
  return id.toString(16).padStart(8, "0");
}

function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" });
}

function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" });
}

function rawPublicKey(priv: KeyObject): Uint8Array {
  const der = createPublicKey(priv).export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(der.length - 32));
}

/**
 * Derives the key pair strings for `name` from a 32-byte Ed25519 seed
 * (deterministic; use for known-answer tests and key import).
 *
 * @throws {@link LedgerError} `LEDGER_KEY_MALFORMED` for an invalid name or seed length.
 */
export function noteKeyPairFromSeed(name: string, seed: Uint8Array): NoteKeyPair {
  if (!isValidKeyName(name)) throw keyError("invalid key name");
  if (!(seed instanceof Uint8Array) || seed.length !== ED25519_SEED_SIZE) throw keyError("Ed25519 seed must be 32 bytes");
  const pub = rawPublicKey(privateKeyFromSeed(seed));
  const id = hex8(noteKeyId(name, pub));
  return {
    signerKey: `PRIVATE+KEY+${name}+${id}+${toBase64(Uint8Array.of(NOTE_ALG_ED25519, ...seed))}`,
    verifierKey: `${name}+${id}+${toBase64(Uint8Array.of(NOTE_ALG_ED25519, ...pub))}`,
  };
}

/**
 * Generates a fresh Ed25519 key pair for `name`.
 *
 * @param random - source of the 32 seed bytes; defaults to `crypto.randomBytes`.
 */
export function generateNoteKeyPair(name: string, random: (n: number) => Uint8Array = randomBytes): NoteKeyPair {
  return noteKeyPairFromSeed(name, new Uint8Array(random(ED25519_SEED_SIZE)));
}

/** Splits `name+hex8+base64` and checks the name, id syntax and key material. */
function splitKey(s: string): { name: string; id: number; material: Uint8Array } {
  const p1 = s.indexOf("+");
  const p2 = p1 < 0 ? -1 : s.indexOf("+", p1 + 1);
  if (p2 < 0) throw keyError("key must be <name>+<hex8 key id>+<base64 key>");
  const name = s.slice(0, p1);
  const idHex = s.slice(p1 + 1, p2);
  const material = fromBase64Strict(s.slice(p2 + 1));
  if (!isValidKeyName(name)) throw keyError("invalid key name");
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw keyError("key id must be 8 lower-case hex digits");
  if (!material || material.length !== 1 + 32 || material[0] !== NOTE_ALG_ED25519) {
    throw keyError("key material must be base64(0x01 || 32 bytes)");
  }
  return { name, id: Number.parseInt(idHex, 16), material: material.subarray(1) };
}

function makeVerifier(name: string, keyId: number, publicKey: Uint8Array, key: KeyObject): NoteVerifier {
  return Object.freeze({
    name,
    keyId,
    publicKey,
    verify(message: Uint8Array, signature: Uint8Array): boolean {
      if (signature.length !== ED25519_SIGNATURE_SIZE) return false;
      try {
        return verify(null, message, key, signature);
      } catch {
        return false;
      }
    },
  });
}

/**
 * Parses a verifier key string `<name>+<hex8>+<base64(0x01||pubkey)>`,
 * checking that the key id matches the name and key.
 *
 * @throws {@link LedgerError} `LEDGER_KEY_MALFORMED`.
 */
export function parseVerifierKey(vkey: string): NoteVerifier {
  if (typeof vkey !== "string") throw keyError("verifier key must be a string");
  const { name, id, material } = splitKey(vkey);
  if (noteKeyId(name, material) !== id) throw keyError("verifier key id does not match name and key");
  let key: KeyObject;
  try {
    key = publicKeyFromRaw(material);
  } catch (err) {
    throw keyError("invalid Ed25519 public key", err);
  }
  return makeVerifier(name, id, new Uint8Array(material), key);
}

/**
 * Parses a signer key string `PRIVATE+KEY+<name>+<hex8>+<base64(0x01||seed)>`,
 * checking that the key id matches the name and derived public key.
 *
 * @throws {@link LedgerError} `LEDGER_KEY_MALFORMED`.
 */
export function parseSignerKey(skey: string): NoteSigner {
  if (typeof skey !== "string" || !skey.startsWith("PRIVATE+KEY+")) throw keyError("signer key must start with PRIVATE+KEY+");
  const { name, id, material } = splitKey(skey.slice("PRIVATE+KEY+".length));
  const priv = privateKeyFromSeed(material);
  const pub = rawPublicKey(priv);
  if (noteKeyId(name, pub) !== id) throw keyError("signer key id does not match name and key");
  return Object.freeze({
    name,
    keyId: id,
    verifierKey: `${name}+${hex8(id)}+${toBase64(Uint8Array.of(NOTE_ALG_ED25519, ...pub))}`,
    sign: (message: Uint8Array): Uint8Array => new Uint8Array(sign(null, message, priv)),
  });
}

/**
 * Signs `text` with each signer and returns the note.
 *
 * @throws {@link LedgerError} `LEDGER_NOTE_MALFORMED` if `text` is not newline-terminated,
 *   contains control characters other than newline or lone surrogates, or there is no signer.
 */
export function signNote(text: string, signers: readonly NoteSigner[]): string {
  if (typeof text !== "string" || !text.endsWith("\n")) throw noteError("note text must end with a newline");
  if (hasControlChars(text, true) || !isWellFormedString(text)) throw noteError("note text has forbidden characters");
  if (signers.length === 0) throw noteError("a note needs at least one signer");
  const message = Buffer.from(text, "utf8");
  const lines = signers.map((s) => {
    if (!isValidKeyName(s.name)) throw keyError("invalid signer name");
    const blob = new Uint8Array(4 + ED25519_SIGNATURE_SIZE);
    new DataView(blob.buffer).setUint32(0, s.keyId >>> 0);
    blob.set(s.sign(message), 4);
    return `${NOTE_SIGNATURE_PREFIX}${s.name} ${toBase64(blob)}\n`;
  });
  return `${text}\n${lines.join("")}`;
}

/**
 * Parses a signed note and verifies its signatures against `verifiers`.
 *
 * Follows Go's note.Open: the text ends at the last blank line; every
 * signature line must be well formed; lines by unknown (name, key id) are
 * returned as unverified; a line by a known key that fails to verify rejects
 * the whole note; repeated lines by one key are ignored; at least one
 * signature must verify.
 *
 * @throws {@link LedgerError} `LEDGER_NOTE_MALFORMED`, `LEDGER_SIGNATURE_INVALID`, `LEDGER_NOTE_UNVERIFIED`.
 */
export function openNote(
  note: string | Uint8Array,
  verifiers: readonly NoteVerifier[],
  options: { maxBytes?: number } = {},
): OpenedNote {
  const maxBytes = options.maxBytes ?? NOTE_MAX_BYTES;
  let msg: string | undefined;
  if (note instanceof Uint8Array) {
    if (note.length > maxBytes) throw noteError("note too large");
    msg = utf8DecodeStrict(note);
  } else if (typeof note === "string" && isWellFormedString(note)) {
    msg = note;
    if (Buffer.byteLength(msg, "utf8") > maxBytes) throw noteError("note too large");
  }
  if (msg === undefined) throw noteError("note is not valid UTF-8");
  if (hasControlChars(msg, true)) throw noteError("note contains control characters");
  const split = msg.lastIndexOf("\n\n");
  if (split < 0) throw noteError("note has no signature block");
  const text = msg.slice(0, split + 1);
  const sigs = msg.slice(split + 2);
  if (sigs.length === 0 || !sigs.endsWith("\n")) throw noteError("signature block must end with a newline");

  const verified: NoteSignature[] = [];
  const unverified: NoteSignature[] = [];
  const seenUnverified = new Set<string>();
  const seenVerified = new Set<string>();
  const message = Buffer.from(text, "utf8");
  const lines = sigs.slice(0, -1).split("\n");
  if (lines.length > NOTE_MAX_SIGNATURES) throw noteError("too many signatures");
  for (const line of lines) {
    if (!line.startsWith(NOTE_SIGNATURE_PREFIX)) throw noteError("signature line must start with an em dash and a space");
    const rest = line.slice(NOTE_SIGNATURE_PREFIX.length);
    const sp = rest.indexOf(" ");
    const name = sp < 0 ? rest : rest.slice(0, sp);
    const b64 = sp < 0 ? "" : rest.slice(sp + 1);
    const blob = fromBase64Strict(b64);
    if (!isValidKeyName(name) || !blob || blob.length < 5) throw noteError("malformed signature line");
    const keyId = new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getUint32(0);
    const sig: NoteSignature = { name, keyId, base64: b64 };
    const dedupe = `${keyId}:${name}`;
    const v = verifiers.find((k) => k.name === name && k.keyId === keyId);
    if (!v) {
      if (!seenUnverified.has(line)) unverified.push(sig);
      seenUnverified.add(line);
      continue;
    }
    if (seenVerified.has(dedupe)) continue;
    seenVerified.add(dedupe);
    if (!v.verify(message, blob.subarray(4))) {
      throw new LedgerError(LedgerErrorCode.SignatureInvalid, `signature by ${name}+${hex8(keyId)} does not verify`);
    }
    verified.push(sig);
  }
  if (verified.length === 0) throw new LedgerError(LedgerErrorCode.NoteUnverified, "note has no signature by a trusted key");
  return { text, verified, unverified };
}
