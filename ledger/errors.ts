/**
 * Typed errors of the ledger library.
 *
 * Every failure the library reports is a {@link LedgerError} whose `code` is
 * one of {@link LedgerErrorCode}. Codes are stable: they cross process and
 * wire boundaries (e.g. in NATS headers) and callers classify by code, never by
 * message text. The table {@link LEDGER_ERRORS} is the registry; `ERRORS.md` in
 * this folder documents each code and a test keeps both in step.
 *
 * @module
 */

/** Whether retrying the same operation can succeed. */
export type LedgerRetryClass = "permanent" | "transient";

/**
 * Stable error codes of the ledger library.
 * Codes are never reused or renamed; new codes are appended.
 */
export const LedgerErrorCode = {
  /** A proof, hash, size or index given for verification is structurally wrong (bad length, out of range). */
  ProofMalformed: "LEDGER_PROOF_MALFORMED",
  /** A well-formed proof fails an internal consistency check of the RFC 9162 algorithm. */
  ProofInvalid: "LEDGER_PROOF_INVALID",
  /** The root recomputed from a proof differs from the trusted root. */
  RootMismatch: "LEDGER_ROOT_MISMATCH",
  /** A caller asked for a proof, node or tile outside the tree (index >= size, size1 > size2, unsafe integer). */
  RangeInvalid: "LEDGER_RANGE_INVALID",
  /** A leaf or node hash handed to a tree function is not 32 bytes. */
  HashMalformed: "LEDGER_HASH_MALFORMED",
  /** A hash or tile reader failed or returned data of the wrong shape. */
  StorageFailed: "LEDGER_STORAGE_FAILED",
  /** Serialized frontier (compact range) bytes are malformed. */
  FrontierMalformed: "LEDGER_FRONTIER_MALFORMED",
  /** A signed note is syntactically invalid. */
  NoteMalformed: "LEDGER_NOTE_MALFORMED",
  /** A signed note carries no signature by any of the trusted keys (unknown name or key id). */
  NoteUnverified: "LEDGER_NOTE_UNVERIFIED",
  /** A signature line by a trusted key does not verify. */
  SignatureInvalid: "LEDGER_SIGNATURE_INVALID",
  /** A signer or verifier key string, key name or key material is malformed. */
  KeyMalformed: "LEDGER_KEY_MALFORMED",
  /** A checkpoint body is syntactically invalid. */
  CheckpointMalformed: "LEDGER_CHECKPOINT_MALFORMED",
  /** A checkpoint's origin line differs from the expected origin. */
  OriginMismatch: "LEDGER_ORIGIN_MISMATCH",
  /** An entry is invalid or its bytes are not the canonical encoding. */
  EntryMalformed: "LEDGER_ENTRY_MALFORMED",
  /** Entry bytes start with a version byte this library does not know. */
  EntryVersionUnsupported: "LEDGER_ENTRY_VERSION_UNSUPPORTED",
  /** A recipient commitment key is too short. */
  CommitmentKeyInvalid: "LEDGER_COMMITMENT_KEY_INVALID",
  /** A receipt is syntactically invalid (bad JSON, unknown or missing fields, bad base64). */
  ReceiptMalformed: "LEDGER_RECEIPT_MALFORMED",
  /** A receipt declares a format version this library does not know. */
  ReceiptVersionUnsupported: "LEDGER_RECEIPT_VERSION_UNSUPPORTED",
  /** A receipt is well formed but its contents contradict each other (mail id, duplicate leaf). */
  ReceiptMismatch: "LEDGER_RECEIPT_MISMATCH",
} as const;

/** Union of all ledger error code strings. */
export type LedgerErrorCode = (typeof LedgerErrorCode)[keyof typeof LedgerErrorCode];

/** Registry row for one error code. */
export interface LedgerErrorInfo {
  /** Retry class of every error carrying this code. */
  readonly retry: LedgerRetryClass;
  /** One-line description, mirrored in `ledger/ERRORS.md`. */
  readonly summary: string;
}

/** The error-code registry: one row per code. */
export const LEDGER_ERRORS: Readonly<Record<LedgerErrorCode, LedgerErrorInfo>> = Object.freeze({
  LEDGER_PROOF_MALFORMED: { retry: "permanent", summary: "Proof, hash, size or index structurally wrong." },
  LEDGER_PROOF_INVALID: { retry: "permanent", summary: "Proof fails an internal check of the RFC 9162 algorithm." },
  LEDGER_ROOT_MISMATCH: { retry: "permanent", summary: "Recomputed root differs from the trusted root." },
  LEDGER_RANGE_INVALID: { retry: "permanent", summary: "Requested index, size or node lies outside the tree." },
  LEDGER_HASH_MALFORMED: { retry: "permanent", summary: "A hash given to a tree function is not 32 bytes." },
  LEDGER_STORAGE_FAILED: { retry: "transient", summary: "A hash or tile reader failed or returned bad data." },
  LEDGER_FRONTIER_MALFORMED: { retry: "permanent", summary: "Serialized frontier bytes are malformed." },
  LEDGER_NOTE_MALFORMED: { retry: "permanent", summary: "Signed note is syntactically invalid." },
  LEDGER_NOTE_UNVERIFIED: { retry: "permanent", summary: "No signature by a trusted key." },
  LEDGER_SIGNATURE_INVALID: { retry: "permanent", summary: "Signature by a trusted key does not verify." },
  LEDGER_KEY_MALFORMED: { retry: "permanent", summary: "Key string, key name or key material malformed." },
  LEDGER_CHECKPOINT_MALFORMED: { retry: "permanent", summary: "Checkpoint body is syntactically invalid." },
  LEDGER_ORIGIN_MISMATCH: { retry: "permanent", summary: "Checkpoint origin differs from the expected origin." },
  LEDGER_ENTRY_MALFORMED: { retry: "permanent", summary: "Entry invalid or not canonically encoded." },
  LEDGER_ENTRY_VERSION_UNSUPPORTED: { retry: "permanent", summary: "Unknown entry encoding version." },
  LEDGER_COMMITMENT_KEY_INVALID: { retry: "permanent", summary: "Recipient commitment key too short." },
  LEDGER_RECEIPT_MALFORMED: { retry: "permanent", summary: "Receipt is syntactically invalid." },
  LEDGER_RECEIPT_VERSION_UNSUPPORTED: { retry: "permanent", summary: "Unknown receipt format version." },
  LEDGER_RECEIPT_MISMATCH: { retry: "permanent", summary: "Receipt contents contradict each other." },
});

/**
 * The only error type thrown by the ledger library.
 *
 * `code` is stable and `retry` derives from it; `cause` chains the underlying
 * error where there is one (e.g. a failing storage reader).
 */
export class LedgerError extends Error {
  /** Stable error code; classify by this, not by `message`. */
  readonly code: LedgerErrorCode;
  /** Whether a retry can succeed; derived from {@link LEDGER_ERRORS}. */
  readonly retry: LedgerRetryClass;
  /** Every problem found, for errors that validate several fields at once. @default [] */
  readonly issues: readonly string[];

  constructor(code: LedgerErrorCode, message: string, options?: { cause?: unknown; issues?: readonly string[] }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "LedgerError";
    this.code = code;
    this.retry = LEDGER_ERRORS[code].retry;
    this.issues = Object.freeze([...(options?.issues ?? [])]);
  }
}

/**
 * Returns the ledger error code carried by `err`, or `undefined`.
 * Works across realms and serialization boundaries because it inspects the
 * `code` property rather than the prototype chain.
 */
export function ledgerErrorCode(err: unknown): LedgerErrorCode | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && Object.hasOwn(LEDGER_ERRORS, code) ? (code as LedgerErrorCode) : undefined;
}
