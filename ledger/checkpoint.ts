/**
 * C2SP tlog-checkpoint: the signed statement of a log's size and root.
 *
 * Body: `<origin>\n<tree size, decimal>\n<base64 root hash>\n` followed by
 * optional non-empty extension lines, each ending in `\n`. The body is the
 * text of a signed note (see `note.ts`).
 *
 * @module
 */
import { isSafeSize } from "./bits.js";
import { fromBase64Strict, hasControlChars, isWellFormedString, toBase64 } from "./encoding.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";
import { HASH_SIZE, isHash } from "./hash.js";
import { type NoteSigner, type NoteVerifier, type OpenedNote, openNote, signNote } from "./note.js";

/** A parsed checkpoint body. */
export interface Checkpoint {
  /** Log identity, conventionally a schema-less URL such as `ledger.fastemail.net/v1`. */
  readonly origin: string;
  /** Number of leaves in the tree (a safe integer; larger sizes are rejected). */
  readonly size: number;
  /** 32-byte RFC 6962 root hash of the tree of `size` leaves. */
  readonly rootHash: Uint8Array;
  /** Extension lines after the root hash, without newlines. @default [] */
  readonly extensions?: readonly string[];
}

/** A checkpoint together with the verified note it came from. */
export interface OpenedCheckpoint {
  /** The parsed body. */
  readonly checkpoint: Checkpoint;
  /** The note's signatures. */
  readonly note: OpenedNote;
}

function malformed(message: string): LedgerError {
  return new LedgerError(LedgerErrorCode.CheckpointMalformed, message);
}

function checkLine(line: string, what: string): void {
  if (typeof line !== "string" || line.length === 0 || line.includes("\n") || !isWellFormedString(line)) {
    throw malformed(`${what} must be a non-empty single line`);
  }
  if (hasControlChars(line)) throw malformed(`${what} contains control characters`);
}

/**
 * Formats a checkpoint body.
 *
 * @throws {@link LedgerError} `LEDGER_CHECKPOINT_MALFORMED` for an empty or multi-line
 *   origin/extension, a size that is not a safe integer or a root not 32 bytes.
 */
export function formatCheckpoint(cp: Checkpoint): string {
  checkLine(cp.origin, "origin");
  if (!isSafeSize(cp.size)) throw malformed("size must be a non-negative safe integer");
  if (!isHash(cp.rootHash)) throw malformed(`root hash must be ${HASH_SIZE} bytes`);
  const ext = cp.extensions ?? [];
  ext.forEach((line, i) => checkLine(line, `extension line ${i}`));
  return [cp.origin, String(cp.size), toBase64(cp.rootHash), ...ext].map((l) => `${l}\n`).join("");
}

/**
 * Parses a checkpoint body strictly: canonical decimal size (no sign, no
 * leading zeros, at most 2^53-1), canonical base64 of exactly 32 bytes,
 * non-empty extension lines.
 *
 * @throws {@link LedgerError} `LEDGER_CHECKPOINT_MALFORMED`.
 */
export function parseCheckpoint(body: string): Checkpoint {
  if (typeof body !== "string" || !body.endsWith("\n")) throw malformed("checkpoint must end with a newline");
  const lines = body.slice(0, -1).split("\n");
  if (lines.length < 3) throw malformed("checkpoint needs origin, size and root hash lines");
  const [origin, sizeLine, rootLine, ...extensions] = lines as [string, string, string, ...string[]];
  checkLine(origin, "origin");
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeLine) || !isSafeSize(Number(sizeLine))) {
    throw malformed("size must be a canonical decimal integer below 2^53");
  }
  const rootHash = fromBase64Strict(rootLine);
  if (!rootHash || rootHash.length !== HASH_SIZE) throw malformed(`root hash must be base64 of ${HASH_SIZE} bytes`);
  extensions.forEach((line, i) => checkLine(line, `extension line ${i}`));
  return { origin, size: Number(sizeLine), rootHash, extensions };
}

/**
 * Formats and signs a checkpoint, returning the signed note.
 *
 * @throws {@link LedgerError} `LEDGER_CHECKPOINT_MALFORMED`, `LEDGER_KEY_MALFORMED`.
 */
export function signCheckpoint(cp: Checkpoint, signers: NoteSigner | readonly NoteSigner[]): string {
  return signNote(formatCheckpoint(cp), Array.isArray(signers) ? signers : [signers as NoteSigner]);
}

/**
 * Verifies a signed checkpoint note and parses its body.
 *
 * @param options.origin - when set, the checkpoint origin must equal it.
 * @throws {@link LedgerError} `LEDGER_NOTE_MALFORMED`, `LEDGER_SIGNATURE_INVALID`, `LEDGER_NOTE_UNVERIFIED`,
 *   `LEDGER_CHECKPOINT_MALFORMED`, `LEDGER_ORIGIN_MISMATCH`.
 */
export function openCheckpoint(
  note: string | Uint8Array,
  verifiers: NoteVerifier | readonly NoteVerifier[],
  options: { origin?: string } = {},
): OpenedCheckpoint {
  const opened = openNote(note, Array.isArray(verifiers) ? verifiers : [verifiers as NoteVerifier]);
  const checkpoint = parseCheckpoint(opened.text);
  if (options.origin !== undefined && checkpoint.origin !== options.origin) {
    throw new LedgerError(LedgerErrorCode.OriginMismatch, "checkpoint origin differs from the expected origin");
  }
  return { checkpoint, note: opened };
}
