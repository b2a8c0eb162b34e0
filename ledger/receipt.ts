/**
 * Self-contained, offline-verifiable receipt for one mail.
 *
 * A receipt (format version 1) is the JSON object
 * `{"type":"fastemailnet.ledger.receipt","v":1,"mailId":…,"checkpoint":…,"entries":[…]}`
 * where `checkpoint` is a signed checkpoint note and each entry is
 * `{"leafIndex":n,"entry":base64(encoded entry),"proof":[base64 hash,…]}`,
 * proving the entry's inclusion in the tree the checkpoint commits to.
 * Entries are sorted by `leafIndex` without duplicates. {@link serializeReceipt}
 * writes canonical JSON; {@link parseReceipt} accepts any JSON whitespace but
 * no unknown or missing fields.
 *
 * @module
 */
import { fromBase64Strict, isWellFormedString, toBase64, utf8DecodeStrict } from "./encoding.js";
import { isSafeSize } from "./bits.js";
import { canonicalJson } from "./canonical-json.js";
import { type Checkpoint, openCheckpoint } from "./checkpoint.js";
import { type LedgerEntry, decodeEntry } from "./entry.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";
import { HASH_SIZE, hashLeaf } from "./hash.js";
import { type NoteVerifier, parseVerifierKey } from "./note.js";
import { verifyInclusion } from "./verify.js";

/** Discriminant of the receipt JSON object. */
export const RECEIPT_TYPE = "fastemailnet.ledger.receipt";

/** Receipt format version produced by {@link createReceipt}. */
export const RECEIPT_FORMAT_VERSION = 1;

/** Most entries one receipt may carry. */
export const RECEIPT_MAX_ENTRIES = 10_000;

/** Largest serialized receipt {@link parseReceipt} accepts, in bytes. */
export const RECEIPT_MAX_BYTES = 16 * 1024 * 1024;

/** One proven entry in a receipt (wire form). */
export interface ReceiptEntry {
  /** Index of the entry's leaf in the log. */
  readonly leafIndex: number;
  /** Standard base64 of the encoded entry bytes. */
  readonly entry: string;
  /** Inclusion proof against the receipt's checkpoint: standard base64 of 32-byte hashes. */
  readonly proof: readonly string[];
}

/** A receipt in its wire form (the parsed JSON object). */
export interface Receipt {
  /** Always {@link RECEIPT_TYPE}. */
  readonly type: typeof RECEIPT_TYPE;
  /** Always {@link RECEIPT_FORMAT_VERSION}. */
  readonly v: typeof RECEIPT_FORMAT_VERSION;
  /** Mail the receipt is about; every entry must carry it. */
  readonly mailId: string;
  /** Signed checkpoint note the proofs are against. */
  readonly checkpoint: string;
  /** Proven entries, ascending by `leafIndex`. */
  readonly entries: readonly ReceiptEntry[];
}

/** Input of {@link createReceipt}. */
export interface ReceiptInput {
  /** Mail the receipt is about. */
  readonly mailId: string;
  /** Signed checkpoint note. */
  readonly checkpoint: string;
  /** Entries with their leaf index and inclusion proof at the checkpoint's size; any order. */
  readonly entries: readonly { readonly leafIndex: number; readonly entry: Uint8Array; readonly proof: readonly Uint8Array[] }[];
}

/** Result of a successful {@link verifyReceipt}. */
export interface VerifiedReceipt {
  /** Mail the receipt is about. */
  readonly mailId: string;
  /** The verified checkpoint. */
  readonly checkpoint: Checkpoint;
  /** Decoded entries with their leaf indexes, ascending. */
  readonly entries: readonly { readonly leafIndex: number; readonly entry: LedgerEntry }[];
}

function malformed(message: string, issues?: string[]): LedgerError {
  return new LedgerError(LedgerErrorCode.ReceiptMalformed, message, issues ? { issues } : undefined);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks the wire shape of a receipt, collecting every problem. */
function assertReceipt(value: unknown): asserts value is Receipt {
  if (isPlainObject(value) && value.type === RECEIPT_TYPE && value.v !== RECEIPT_FORMAT_VERSION && value.v !== undefined) {
    throw new LedgerError(LedgerErrorCode.ReceiptVersionUnsupported, `unsupported receipt version ${String(value.v)}`);
  }
  const issues: string[] = [];
  if (!isPlainObject(value)) throw malformed("receipt must be a JSON object");
  for (const k of Object.keys(value)) {
    if (!["type", "v", "mailId", "checkpoint", "entries"].includes(k)) issues.push(`${k}: unknown field`);
  }
  if (value.type !== RECEIPT_TYPE) issues.push(`type: must be ${RECEIPT_TYPE}`);
  if (value.v !== RECEIPT_FORMAT_VERSION) issues.push(`v: must be ${RECEIPT_FORMAT_VERSION}`);
  // A lone surrogate (JSON.parse makes one of "\ud800") has no UTF-8 form:
  // refused here, so serializing an accepted receipt cannot fail.
  if (typeof value.mailId !== "string" || value.mailId.length === 0) issues.push("mailId: must be a non-empty string");
  else if (!isWellFormedString(value.mailId)) issues.push("mailId: must not hold lone surrogates");
  if (typeof value.checkpoint !== "string") issues.push("checkpoint: must be a string");
  else if (!isWellFormedString(value.checkpoint)) issues.push("checkpoint: must not hold lone surrogates");
  const entries = value.entries;
  if (!Array.isArray(entries) || entries.length === 0 || entries.length > RECEIPT_MAX_ENTRIES) {
    issues.push(`entries: must be an array of 1..${RECEIPT_MAX_ENTRIES} entries`);
  } else {
    let prev = -1;
    entries.forEach((e: unknown, i) => {
      const at = `entries[${i}]`;
      if (!isPlainObject(e)) {
        issues.push(`${at}: must be an object`);
        return;
      }
      for (const k of Object.keys(e)) if (!["leafIndex", "entry", "proof"].includes(k)) issues.push(`${at}.${k}: unknown field`);
      if (!isSafeSize(e.leafIndex)) issues.push(`${at}.leafIndex: must be a non-negative safe integer`);
      else if (e.leafIndex <= prev) issues.push(`${at}.leafIndex: must be greater than the previous entry's`);
      else prev = e.leafIndex;
      if (typeof e.entry !== "string" || fromBase64Strict(e.entry) === undefined) issues.push(`${at}.entry: must be base64`);
      if (!Array.isArray(e.proof) || e.proof.length > 64) issues.push(`${at}.proof: must be an array of at most 64 hashes`);
      else {
        e.proof.forEach((h: unknown, j) => {
          const bytes = typeof h === "string" ? fromBase64Strict(h) : undefined;
          if (!bytes || bytes.length !== HASH_SIZE) issues.push(`${at}.proof[${j}]: must be base64 of ${HASH_SIZE} bytes`);
        });
      }
    });
  }
  if (issues.length > 0) throw malformed(`invalid receipt: ${issues.join("; ")}`, issues);
}

/**
 * Builds a receipt from binary parts, sorting entries by leaf index.
 *
 * @throws {@link LedgerError} `LEDGER_RECEIPT_MALFORMED` for bad shapes (including
 *   entries that are not bytes, and strings with lone surrogates) or duplicate leaf indexes.
 */
export function createReceipt(input: ReceiptInput): Receipt {
  // Binary parts are checked before they are encoded; the rest by assertReceipt.
  const given: unknown = input;
  if (!isPlainObject(given) || !Array.isArray(given.entries)) throw malformed("invalid receipt input: entries must be an array");
  const issues: string[] = [];
  given.entries.forEach((e: unknown, i) => {
    if (!isPlainObject(e)) issues.push(`entries[${i}]: must be an object`);
    else {
      if (!(e.entry instanceof Uint8Array)) issues.push(`entries[${i}].entry: must be bytes`);
      if (!Array.isArray(e.proof) || !e.proof.every((h) => h instanceof Uint8Array)) issues.push(`entries[${i}].proof: must be an array of byte arrays`);
    }
  });
  if (issues.length > 0) throw malformed(`invalid receipt input: ${issues.join("; ")}`, issues);
  const entries = [...input.entries]
    .sort((a, b) => a.leafIndex - b.leafIndex)
    .map((e) => ({ leafIndex: e.leafIndex, entry: toBase64(e.entry), proof: e.proof.map((h) => toBase64(h)) }));
  const receipt = {
    type: RECEIPT_TYPE,
    v: RECEIPT_FORMAT_VERSION,
    mailId: input.mailId,
    checkpoint: input.checkpoint,
    entries,
  } as const;
  assertReceipt(receipt);
  return receipt;
}

/**
 * Canonical JSON text of a receipt (sorted keys, no whitespace).
 *
 * @throws {@link LedgerError} `LEDGER_RECEIPT_MALFORMED` when `receipt` is not a well-formed receipt.
 */
export function serializeReceipt(receipt: Receipt): string {
  assertReceipt(receipt);
  return canonicalJson(receipt);
}

/**
 * Parses receipt JSON (text or UTF-8 bytes) strictly.
 *
 * @throws {@link LedgerError} `LEDGER_RECEIPT_MALFORMED`, `LEDGER_RECEIPT_VERSION_UNSUPPORTED`.
 */
export function parseReceipt(json: string | Uint8Array): Receipt {
  let text: string | undefined;
  if (json instanceof Uint8Array) {
    if (json.length > RECEIPT_MAX_BYTES) throw malformed("receipt too large");
    text = utf8DecodeStrict(json);
  } else if (typeof json === "string") {
    if (json.length > RECEIPT_MAX_BYTES) throw malformed("receipt too large");
    text = json;
  }
  if (text === undefined) throw malformed("receipt is not UTF-8 text");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new LedgerError(LedgerErrorCode.ReceiptMalformed, "receipt is not valid JSON", { cause: err });
  }
  assertReceipt(value);
  return value;
}

/**
 * Verifies a receipt fully offline: the checkpoint's signature by
 * `verifierKey`, each entry's strict decoding and mail id, and each inclusion
 * proof from the entry's leaf hash to the checkpoint's root.
 *
 * @param receipt - parsed receipt, or its JSON text/bytes.
 * @param verifierKey - trusted log key, as a verifier key string or parsed.
 * @param options.origin - when set, the checkpoint origin must equal it.
 * @throws {@link LedgerError} with the code of the first failed check, e.g.
 *   `LEDGER_RECEIPT_MALFORMED`, `LEDGER_SIGNATURE_INVALID`, `LEDGER_NOTE_UNVERIFIED`,
 *   `LEDGER_ENTRY_MALFORMED`, `LEDGER_RECEIPT_MISMATCH`, `LEDGER_PROOF_MALFORMED`, `LEDGER_ROOT_MISMATCH`.
 */
export function verifyReceipt(
  receipt: Receipt | string | Uint8Array,
  verifierKey: string | NoteVerifier,
  options: { origin?: string } = {},
): VerifiedReceipt {
  const r = typeof receipt === "string" || receipt instanceof Uint8Array ? parseReceipt(receipt) : receipt;
  assertReceipt(r);
  const verifier = typeof verifierKey === "string" ? parseVerifierKey(verifierKey) : verifierKey;
  const { checkpoint } = openCheckpoint(r.checkpoint, verifier, options);
  const entries = r.entries.map((e) => {
    const bytes = fromBase64Strict(e.entry) as Uint8Array;
    const entry = decodeEntry(bytes);
    if (entry.mailId !== r.mailId) {
      throw new LedgerError(LedgerErrorCode.ReceiptMismatch, `entry at leaf ${e.leafIndex} belongs to another mail`);
    }
    const proof = e.proof.map((h) => fromBase64Strict(h) as Uint8Array);
    verifyInclusion(e.leafIndex, checkpoint.size, hashLeaf(bytes), proof, checkpoint.rootHash);
    return { leafIndex: e.leafIndex, entry };
  });
  return { mailId: r.mailId, checkpoint, entries };
}
