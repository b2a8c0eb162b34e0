/**
 * The error-code registry: the one table of every code FastEmailNet puts on
 * the wire. Codes are stable, never reused, and documented in
 * `protocol/ERRORS.md` (a test checks that table and document agree).
 *
 * Across a process or wire boundary, classify by `code`, never by message
 * text or `instanceof`.
 */

/** Whether retrying the same operation can succeed. */
export type RetryClass = "permanent" | "transient";

/** One registry row. */
export interface ErrorSpec {
  /** Retry class: permanent errors are `term()`ed, transient ones `nak(delay)`ed. */
  readonly retry: RetryClass;
  /** One-line meaning, mirrored in ERRORS.md. */
  readonly doc: string;
}

/** The registry. Add rows at the end; never rename or reuse a code. */
export const ErrorCodes = {
  BAD_REQUEST: { retry: "permanent", doc: "The request is not valid JSON or does not match the schema." },
  INVALID_ADDRESS: { retry: "permanent", doc: "An address (from, to, cc, bcc, envelope) is not a valid RFC 5321 mailbox." },
  HEADER_INJECTION: { retry: "permanent", doc: "A header name or value, the subject, a display name or an attachment's name or type contains CR, LF or another control character (TAB aside)." },
  MESSAGE_TOO_LARGE: { retry: "permanent", doc: "The message is larger than the configured size limit, or the request or work item carrying it is larger than NATS takes (the servers' max_payload, the work stream's max_msg_size)." },
  INVALID_MIME: { retry: "permanent", doc: "The raw message, or the message composed from a structured mail's fields, is not a well-formed RFC 5322/MIME message (e.g. a multipart boundary never closed, bad base64, a bare CR, two Message-ID or From fields, a Message-ID over 998 octets or with a control character, an empty line before the header fields); also a structured mail's text or html with a bare CR." },
  NO_RECIPIENTS: { retry: "permanent", doc: "The mail has no recipient." },
  UNSUPPORTED_VERSION: { retry: "permanent", doc: "The payload's schema version is not one this node speaks." },
  NOT_FOUND: { retry: "permanent", doc: "No mail (or ledger entry) with that id, or (operator requests) the mail is not in the state the request acts on, e.g. a release of a mail that is not quarantined; the message says its state." },
  STORE_UNAVAILABLE: { retry: "transient", doc: "JetStream did not acknowledge the write in time, or a read failed (e.g. while a stream changes leaders), or a stored record was written by a newer version (a rolling upgrade: a node of that version reads it); nothing is promised stored, retry (a submission with the same idempotency key)." },
  INTERNAL: { retry: "transient", doc: "An unexpected fault; the request may be retried with the same idempotency key." },
  SMTP_TRANSIENT: { retry: "transient", doc: "The relay answered 4xx or the connection failed; delivery is retried with backoff." },
  SMTP_PERMANENT: { retry: "permanent", doc: "The relay answered 5xx; the mail bounces with the reply kept." },
  RETRIES_EXHAUSTED: { retry: "permanent", doc: "Transient failures exceeded the configured attempt limit; the mail bounces. On a Sent record: recipients the relay still put off (4xx) at the last attempt were given up, listed in `rejected` as not transient. Also when nodes died mid-delivery at two attempts in a row, the second at or past the limit: the mail is Bounced in doubt instead of being sent again." },
  CONFIG_INVALID: { retry: "permanent", doc: "A node's configuration failed validation at start-up." },
  STATE_CONFLICT: { retry: "transient", doc: "Another node changed the mail's state concurrently; the work item is re-evaluated later." },
  SPEC_MISMATCH: { retry: "permanent", doc: "A stream, consumer or bucket exists with a configuration different from the spec." },
  QUARANTINED: { retry: "permanent", doc: "The classifier scored the mail at or above the quarantine threshold." },
  CLASSIFIER_FAILED: { retry: "transient", doc: "The classifier could not score the mail." },
  BODY_UNAVAILABLE: { retry: "permanent", doc: "The mail's body object (a body over 512 KiB, kept in the mail_bodies object store) is missing, has lost chunks or does not match its hash in 3 reads a second apart (so a store that answers wrongly for a moment cannot end a mail): the mail cannot be sent and is Rejected with this code (nothing was sent)." },
  CLASSIFIER_UNSCORABLE: { retry: "permanent", doc: "The classifier fails on this mail alone, twice, with an error it does not call transient, while it scores a canary between the two: the mail is Quarantined unscored, for an operator to release (a released mail is not scored) or delete. (A mail that passed the classifier at an earlier attempt is not quarantined: it is delivered, unscored at that attempt.)" },
  LEDGER_UNAVAILABLE: { retry: "transient", doc: "The ledger could not be read or written." },
  LEDGER_CORRUPT: { retry: "permanent", doc: "Stored ledger data fails verification (tampered, or not what a block's checkpoint commits to)." },
  PLACEMENT_FAILED: { retry: "transient", doc: "JetStream could not place a replicated stream on enough servers (too few online or heard from) within the provisioning wait." },
  IDEMPOTENCY_CONFLICT: { retry: "permanent", doc: "The idempotency key was used before for a different mail; nothing was stored. A new mail needs a new key." },
  TOO_MANY_RECIPIENTS: { retry: "permanent", doc: "The mail has more distinct recipients (to, cc and bcc together) than one mail may have (900); nothing was stored." },
  NATS_UNREACHABLE: { retry: "transient", doc: "A client could not connect to any of its NATS servers, or the servers refused its user; nothing was sent." },
  LEDGER_PENDING: { retry: "transient", doc: "The mail's life-cycle events are not in a signed ledger block yet (blocks are sealed within a second or so); ask again shortly." },
  PERMISSION_DENIED: { retry: "permanent", doc: "The NATS server refused a subject to this client's user (its role's permissions); nothing was done. Use a user whose role may do it." },
  BUSY: { retry: "transient", doc: "The node is already working on as many requests of this kind as it takes at once; nothing was done, retry shortly (another node may take it)." },
  NO_RESPONDERS: { retry: "transient", doc: "(client side) No node serves the request's subject right now (none running, or none started yet); nothing was done." },
  NO_REPLY: { retry: "transient", doc: "(client side) No reply came in time: the request may or may not have been carried out. Repeat it (a submission with the same idempotency key is answered as a duplicate if it was stored)." },
} as const satisfies Record<string, ErrorSpec>;

/** A registered error code. */
export type ErrorCode = keyof typeof ErrorCodes;

/** True when `code` is a registered code (for codes read off the wire). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ErrorCodes, code);
}

/** One offending field of a rejected request. */
export interface FieldError {
  /** Dotted path of the field, e.g. `to.1` or `headers.X-Foo`. */
  readonly field: string;
  readonly code: ErrorCode;
  readonly message: string;
}

/**
 * The one error type FastEmailNet code throws. Carries a stable code, its
 * retry class, the offending fields (for rejected requests) and the cause.
 */
export class FenError extends Error {
  override readonly name = "FenError";
  readonly code: ErrorCode;
  readonly fields: readonly FieldError[];

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; fields?: readonly FieldError[] } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.fields = opts.fields ?? [];
  }

  /** The registry's retry class for this error's code. */
  get retry(): RetryClass {
    return ErrorCodes[this.code].retry;
  }

  /** True when a retry may succeed. */
  get transient(): boolean {
    return this.retry === "transient";
  }
}

/** Wraps anything thrown into a FenError, keeping FenErrors as they are. */
export function toFenError(err: unknown, fallback: ErrorCode = "INTERNAL"): FenError {
  if (err instanceof FenError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FenError(fallback, message, { cause: err });
}
