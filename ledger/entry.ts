/**
 * Canonical, versioned encoding of one mail life-cycle event as a log entry.
 *
 * Encoding (version 1): the byte `0x01` followed by the UTF-8 canonical JSON
 * (keys sorted by UTF-16 code units, no whitespace, ECMAScript number
 * formatting, RFC 8785 style) of an object with exactly the keys `at`,
 * `attempt`, `detail`, `eventId`, `mailId`, `recipients`, `state`.
 * Recipients appear only as keyed commitments (see {@link commitRecipient}),
 * sorted ascending without duplicates. `at` is the `Date.toISOString()` form
 * (`YYYY-MM-DDTHH:mm:ss.sssZ`). Absent optional `detail` fields are omitted.
 * Version 2 is the same encoding for an entry whose detail carries
 * `inDoubt` (added later): such an entry starts with `0x02`, every other
 * one still with `0x01`, so earlier entries keep their bytes and hashes and
 * a verifier that predates the field reports "unsupported entry version"
 * instead of a malformed entry.
 *
 * Decoding is strict: the bytes must be exactly what {@link encodeEntry}
 * produces for the decoded value, so every entry has one encoding and one
 * leaf hash.
 *
 * @module
 */
import { createHmac } from "node:crypto";
import { hasControlChars, isWellFormedString, utf8DecodeStrict } from "./encoding.js";
import { canonicalJson } from "./canonical-json.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";
import { hashLeaf } from "./hash.js";

/** Version byte of the entries {@link encodeEntry} produces without `detail.inDoubt`. */
export const ENTRY_FORMAT_VERSION = 1;

/** Version byte of the entries whose detail carries `inDoubt`. */
export const ENTRY_FORMAT_VERSION_IN_DOUBT = 2;

/** Largest encoded entry accepted, in bytes. */
export const ENTRY_MAX_BYTES = 64 * 1024;

/** Most recipient commitments per entry. */
export const ENTRY_MAX_RECIPIENTS = 1000;

/** Shortest accepted recipient commitment key, in bytes. */
export const COMMITMENT_KEY_MIN_BYTES = 16;

/** Life-cycle states a mail can be recorded in. */
export const MailState = {
  PendingProcessing: "PendingProcessing",
  Processing: "Processing",
  Validated: "Validated",
  DeliveryScheduled: "DeliveryScheduled",
  Sent: "Sent",
  Deferred: "Deferred",
  Bounced: "Bounced",
  Quarantined: "Quarantined",
  Rejected: "Rejected",
} as const;

/** One of the {@link MailState} values. */
export type MailState = (typeof MailState)[keyof typeof MailState];

/** Structured SMTP reply recorded with an event. */
export interface SmtpReplyDetail {
  /** Basic reply code, 200..599. */
  readonly code: number;
  /** RFC 3463 enhanced status code such as `5.1.1`. */
  readonly enhanced?: string;
  /** Reply text (at most 1024 characters). */
  readonly message?: string;
  /** SMTP command the reply answered, e.g. `RCPT TO`. */
  readonly command?: string;
}

/** Classifier outcome recorded with an event. */
export interface ClassificationDetail {
  /** Verdict label, e.g. `ham` or `spam`. */
  readonly verdict: string;
  /** Classifier score; any finite number. */
  readonly score: number;
  /** Version of the model that produced the verdict. */
  readonly modelVersion: string;
}

/** Small, typed event detail. Every field is optional. */
export interface EntryDetail {
  /** SMTP reply of the last delivery attempt. */
  readonly smtp?: SmtpReplyDetail;
  /** Stable error code (e.g. from the processing node's error registry). */
  readonly errorCode?: string;
  /** Spam/abuse classification. */
  readonly classification?: ClassificationDetail;
  /**
   * The mail may be delivered twice: on a Deferred (or Bounced) event, the
   * attempt failed after the whole message had gone out with no reply to its
   * end (the relay may have it); on a Processing event, a node took the mail
   * over from one that stopped in mid-delivery, so its attempt sends the
   * mail again. Only `true`; absent otherwise. Entries that carry it are
   * format version 2.
   */
  readonly inDoubt?: true;
}

/** One mail life-cycle event as stored in the ledger. */
export interface LedgerEntry {
  /** Mail identifier (1..256 characters, no control characters). */
  readonly mailId: string;
  /** State entered by this event. */
  readonly state: MailState;
  /** Delivery attempt number, 0-based, at most 2^31-1. */
  readonly attempt: number;
  /** Event time in `Date.toISOString()` form. */
  readonly at: string;
  /** Unique event identifier (1..256 characters, no control characters). */
  readonly eventId: string;
  /** Recipient commitments: 64 lower-case hex digits each, sorted ascending, unique. */
  readonly recipients: readonly string[];
  /** Event detail; `{}` when there is none. */
  readonly detail: EntryDetail;
}

const STATES = new Set<string>(Object.values(MailState));
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const COMMITMENT_RE = /^[0-9a-f]{64}$/;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkKeys(v: Record<string, unknown>, allowed: readonly string[], path: string, issues: string[]): void {
  for (const k of Object.keys(v)) if (!allowed.includes(k)) issues.push(`${path}.${k}: unknown field`);
}

function checkText(v: unknown, path: string, max: number, issues: string[], required = true): void {
  if (v === undefined && !required) return;
  const ok =
    typeof v === "string" && v.length > 0 && v.length <= max && isWellFormedString(v) && !hasControlChars(v) && !v.includes("\u007f");
  if (!ok) {
    issues.push(`${path}: must be a string of 1..${max} characters without control characters`);
  }
}

function checkDetail(d: unknown, issues: string[]): void {
  if (!isPlainObject(d)) {
    issues.push("detail: must be an object");
    return;
  }
  checkKeys(d, ["smtp", "errorCode", "classification", "inDoubt"], "detail", issues);
  if (d.inDoubt !== undefined && d.inDoubt !== true) issues.push("detail.inDoubt: must be true when present");
  if (d.smtp !== undefined) {
    const s = d.smtp;
    if (!isPlainObject(s)) issues.push("detail.smtp: must be an object");
    else {
      checkKeys(s, ["code", "enhanced", "message", "command"], "detail.smtp", issues);
      if (!Number.isInteger(s.code) || (s.code as number) < 200 || (s.code as number) > 599) {
        issues.push("detail.smtp.code: must be an integer 200..599");
      }
      if (s.enhanced !== undefined && (typeof s.enhanced !== "string" || !/^[245]\.\d{1,3}\.\d{1,3}$/.test(s.enhanced))) {
        issues.push("detail.smtp.enhanced: must be an enhanced status code like 5.1.1");
      }
      checkText(s.message, "detail.smtp.message", 1024, issues, false);
      checkText(s.command, "detail.smtp.command", 64, issues, false);
    }
  }
  if (d.errorCode !== undefined && (typeof d.errorCode !== "string" || !/^[A-Za-z0-9_.:-]{1,128}$/.test(d.errorCode))) {
    issues.push("detail.errorCode: must match [A-Za-z0-9_.:-]{1,128}");
  }
  if (d.classification !== undefined) {
    const c = d.classification;
    if (!isPlainObject(c)) issues.push("detail.classification: must be an object");
    else {
      checkKeys(c, ["verdict", "score", "modelVersion"], "detail.classification", issues);
      checkText(c.verdict, "detail.classification.verdict", 64, issues);
      if (typeof c.score !== "number" || !Number.isFinite(c.score)) issues.push("detail.classification.score: must be a finite number");
      checkText(c.modelVersion, "detail.classification.modelVersion", 128, issues);
    }
  }
}

/** Returns every problem with `e` as an entry (empty when valid). */
function entryIssues(e: unknown): string[] {
  const issues: string[] = [];
  if (!isPlainObject(e)) return ["entry: must be an object"];
  checkKeys(e, ["mailId", "state", "attempt", "at", "eventId", "recipients", "detail"], "entry", issues);
  checkText(e.mailId, "mailId", 256, issues);
  checkText(e.eventId, "eventId", 256, issues);
  if (typeof e.state !== "string" || !STATES.has(e.state)) issues.push("state: must be a MailState");
  if (!Number.isSafeInteger(e.attempt) || (e.attempt as number) < 0 || (e.attempt as number) > 0x7fff_ffff) {
    issues.push("attempt: must be an integer 0..2^31-1");
  }
  if (typeof e.at !== "string" || !ISO_RE.test(e.at) || Number.isNaN(Date.parse(e.at)) || new Date(e.at).toISOString() !== e.at) {
    issues.push("at: must be a Date.toISOString() timestamp");
  }
  if (!Array.isArray(e.recipients) || e.recipients.length > ENTRY_MAX_RECIPIENTS) {
    issues.push(`recipients: must be an array of at most ${ENTRY_MAX_RECIPIENTS} commitments`);
  } else {
    const seen = new Set<unknown>();
    e.recipients.forEach((r, i) => {
      if (typeof r !== "string" || !COMMITMENT_RE.test(r)) issues.push(`recipients[${i}]: must be 64 lower-case hex digits`);
      else if (seen.has(r)) issues.push(`recipients[${i}]: duplicate commitment`);
      seen.add(r);
    });
  }
  checkDetail(e.detail, issues);
  return issues;
}

/** Copies the known fields, dropping absent optionals, sorting recipients. */
function normalize(e: LedgerEntry): Record<string, unknown> {
  const d = e.detail;
  const detail: Record<string, unknown> = {};
  if (d.smtp !== undefined) {
    const s: Record<string, unknown> = { code: d.smtp.code };
    if (d.smtp.enhanced !== undefined) s.enhanced = d.smtp.enhanced;
    if (d.smtp.message !== undefined) s.message = d.smtp.message;
    if (d.smtp.command !== undefined) s.command = d.smtp.command;
    detail.smtp = s;
  }
  if (d.errorCode !== undefined) detail.errorCode = d.errorCode;
  if (d.classification !== undefined) {
    const c = d.classification;
    detail.classification = { verdict: c.verdict, score: c.score, modelVersion: c.modelVersion };
  }
  if (d.inDoubt === true) detail.inDoubt = true;
  return {
    at: e.at,
    attempt: e.attempt,
    detail,
    eventId: e.eventId,
    mailId: e.mailId,
    recipients: [...e.recipients].sort(),
    state: e.state,
  };
}

function malformed(issues: string[]): LedgerError {
  return new LedgerError(LedgerErrorCode.EntryMalformed, `invalid ledger entry: ${issues.join("; ")}`, { issues });
}

/**
 * Encodes an entry canonically (version byte + canonical JSON). Recipient
 * commitments are sorted; the same event always yields the same bytes.
 *
 * @throws {@link LedgerError} `LEDGER_ENTRY_MALFORMED` listing every invalid field.
 */
export function encodeEntry(entry: LedgerEntry): Uint8Array {
  // Undefined optionals are "absent", as in the TypeScript type.
  const issues = entryIssues(stripUndefined(entry));
  if (issues.length > 0) throw malformed(issues);
  const json = Buffer.from(canonicalJson(normalize(entry)), "utf8");
  if (json.length + 1 > ENTRY_MAX_BYTES) throw malformed([`entry: encoding exceeds ${ENTRY_MAX_BYTES} bytes`]);
  const out = new Uint8Array(json.length + 1);
  out[0] = entry.detail.inDoubt === true ? ENTRY_FORMAT_VERSION_IN_DOUBT : ENTRY_FORMAT_VERSION;
  out.set(json, 1);
  return out;
}

function stripUndefined(v: unknown): unknown {
  if (!isPlainObject(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = stripUndefined(x);
  return out;
}

/**
 * Decodes entry bytes strictly: known version, valid UTF-8 JSON, every field
 * valid, and the bytes exactly the canonical encoding.
 *
 * @throws {@link LedgerError} `LEDGER_ENTRY_VERSION_UNSUPPORTED` or `LEDGER_ENTRY_MALFORMED`.
 */
export function decodeEntry(bytes: Uint8Array): LedgerEntry {
  if (!(bytes instanceof Uint8Array) || bytes.length < 2) throw malformed(["entry: too short"]);
  if (bytes.length > ENTRY_MAX_BYTES) throw malformed([`entry: exceeds ${ENTRY_MAX_BYTES} bytes`]);
  // The version must also be the one the content calls for: the bytes are compared with the canonical encoding below.
  if (bytes[0] !== ENTRY_FORMAT_VERSION && bytes[0] !== ENTRY_FORMAT_VERSION_IN_DOUBT) {
    throw new LedgerError(LedgerErrorCode.EntryVersionUnsupported, `unsupported entry version ${bytes[0]}`);
  }
  const text = utf8DecodeStrict(bytes.subarray(1));
  if (text === undefined) throw malformed(["entry: not valid UTF-8"]);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw malformed(["entry: not valid JSON"]);
  }
  const issues = entryIssues(value);
  if (issues.length > 0) throw malformed(issues);
  const entry = value as LedgerEntry;
  const canonical = encodeEntry(entry);
  if (!Buffer.from(canonical).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
    throw malformed(["entry: bytes are not the canonical encoding"]);
  }
  return entry;
}

/** Leaf hash of an entry: `hashLeaf(encodeEntry(entry))`. */
export function entryLeafHash(entry: LedgerEntry): Uint8Array {
  return hashLeaf(encodeEntry(entry));
}

/**
 * Keyed commitment to a recipient: hex HMAC-SHA256(key, lower-cased address).
 * Without the key the commitment reveals nothing about the address; with it,
 * anyone can check whether a given address is among an entry's recipients.
 *
 * @throws {@link LedgerError} `LEDGER_COMMITMENT_KEY_INVALID` if the key is shorter than 16 bytes.
 */
export function commitRecipient(key: Uint8Array, address: string): string {
  if (!(key instanceof Uint8Array) || key.length < COMMITMENT_KEY_MIN_BYTES) {
    throw new LedgerError(LedgerErrorCode.CommitmentKeyInvalid, `commitment key must be at least ${COMMITMENT_KEY_MIN_BYTES} bytes`);
  }
  return createHmac("sha256", key).update(address.toLowerCase(), "utf8").digest("hex");
}

/** Commitments to several recipients, sorted and deduplicated, ready for {@link LedgerEntry.recipients}. */
export function commitRecipients(key: Uint8Array, addresses: readonly string[]): string[] {
  return [...new Set(addresses.map((a) => commitRecipient(key, a)))].sort();
}
