import { z } from "zod";
import type { ErrorCode, FieldError } from "./errors.js";
import { FenError, isErrorCode } from "./errors.js";
import { asciiDomainMailbox, hasLineBreak, hasNonAsciiLocalPart, isHeaderName, isMailbox } from "./address.js";
import { MAIL_STATES } from "./lifecycle.js";
import { isMailId } from "./ids.js";
import type { MailId } from "./ids.js";

/**
 * Versioned payload schemas. Every message carries `kind` (a discriminant)
 * and `v` (its version); each has one schema and one codec (see codec.ts).
 * Refinements carry the registry code of what they reject so a decode error
 * lists every bad field with a stable code.
 */

const coded = (code: ErrorCode) => ({ params: { code } });

/**
 * Text that goes into a header field (subject, custom header values,
 * display names, file names, content types): no line break, which would
 * start a new field, and no other control character but TAB (NUL, ESC, ...
 * reach the recipient's reader as they are).
 */
const HeaderText = (max: number) => z.string().max(max).superRefine((s, ctx) => {
  if (hasLineBreak(s)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: "contains CR or LF", ...coded("HEADER_INJECTION") });
  // eslint-disable-next-line no-control-regex
  else if (/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(s)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: "contains a control character", ...coded("HEADER_INJECTION") });
});

/**
 * A structured mail's text or HTML body: no CR that does not end a line (RFC
 * 5322 2.3: CR and LF occur only together). nodemailer writes short ASCII
 * text as 7bit and keeps such a CR, which some relays read as a line end and
 * others do not: the stuff of SMTP smuggling ("\r.\r\n"), refused in a raw
 * message too (INVALID_MIME). Line ends may be CRLF or LF.
 */
const BodyText = z.string().superRefine((s, ctx) => {
  if (/\r(?!\n)/.test(s)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: "contains a CR that is not followed by LF", ...coded("INVALID_MIME") });
});

/**
 * Whether a header value can be written within RFC 5322's 998-octet lines
 * after `Name: `: folding breaks only at white space, so an ASCII word
 * longer than the room left would make a longer line, which relays break
 * or refuse. (A non-ASCII value becomes encoded words, which are split.)
 */
const foldsWithin998 = (nameLength: number, value: string): boolean =>
  // A folded line is the white space before a word plus the word (nodemailer folds before the white space).
  // eslint-disable-next-line no-control-regex
  !/^[\x00-\x7f]*$/.test(value) || (value.match(/[ \t]*[^ \t]+/g) ?? []).every((w) => nameLength + 2 + w.length <= 998);
const FOLD_MESSAGE = "has a word too long to fold into a 998-octet header line (RFC 5322 2.1.1)";

/**
 * Header fields the gateway writes from the mail's own fields (or that
 * shape the MIME structure): a custom header of that name would duplicate
 * or contradict them. Compared case-insensitively. (Content-Language,
 * Sender and the like are the sender's to set.)
 */
const RESERVED_HEADERS = new Set([
  "from", "to", "cc", "bcc", "resent-bcc", "reply-to", "subject", "date", "message-id", "mime-version", "return-path",
  "content-type", "content-transfer-encoding", "content-disposition", "content-id",
]);
const isReservedHeader = (name: string) => RESERVED_HEADERS.has(name.toLowerCase());

/**
 * An RFC 5321 mailbox; an internationalised domain is taken in its ASCII
 * (A-label) form, so `kunde@bücher.example` is stored and sent as
 * `kunde@xn--bcher-kva.example`.
 */
const Mailbox = z.string().transform(asciiDomainMailbox).superRefine((s, ctx) => {
  if (isMailbox(s)) return;
  ctx.addIssue({
    code: z.ZodIssueCode.custom,
    message: hasNonAsciiLocalPart(s) ? "non-ASCII local part: it needs SMTPUTF8, which is not supported" : "not a valid mailbox",
    ...coded("INVALID_ADDRESS"),
  });
});

/** A mailbox `local@domain`, or `{ name, address }`. */
export const AddressSchema = z.union([
  Mailbox,
  z.object({
    name: HeaderText(256),
    address: Mailbox,
  }).strict(),
]);
export type Address = z.infer<typeof AddressSchema>;

/** The bare mailbox of an Address. */
export function mailboxOf(a: Address): string {
  return typeof a === "string" ? a : a.address;
}

// Padding may be left out (Node decodes it); a length of 4n+1 cannot be base64 at all (its last character would be lost).
const Base64 = z.string()
  // Line breaks as MIME tools write them (`base64` wraps at 76 columns) are taken out; nothing else is.
  .transform((s) => s.replace(/\r?\n/g, ""))
  .superRefine((s, ctx) => {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: "not base64" });
    else if (s.replace(/=+$/, "").length % 4 === 1 || (s.endsWith("=") && s.length % 4 !== 0)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: "not base64: wrong length or padding" });
    }
  });

/**
 * Most distinct recipients (to, cc and bcc together) one submitted mail may
 * have. Every life-cycle event of a mail becomes one ledger entry, which
 * holds a 64-hex commitment per recipient and is at most ENTRY_MAX_BYTES
 * (64 KiB): 900 leave room for the rest of the entry (pinned by
 * test/ledger-node/limits.test.ts). Relays take at most 1,000 per
 * transaction (Postfix's default); more are sent in further transactions.
 */
export const MAX_RECIPIENTS = 900;

/** Adds TOO_MANY_RECIPIENTS when `mailboxes` hold more than MAX_RECIPIENTS distinct ones. */
const limitRecipients = (mailboxes: readonly string[], ctx: z.RefinementCtx): void => {
  const n = new Set(mailboxes).size;
  if (n <= MAX_RECIPIENTS) return;
  ctx.addIssue({
    code: z.ZodIssueCode.custom,
    message: `${n} recipients; a mail may have at most ${MAX_RECIPIENTS} (to, cc and bcc together): split it`,
    ...coded("TOO_MANY_RECIPIENTS"),
  });
};

/** SMTP envelope: reverse path and forward paths. */
export const EnvelopeSchema = z.object({
  /** "" is the null reverse-path `<>`, for bounces and auto-replies (RFC 5321 4.5.5), which must not be bounced. */
  from: z.union([z.literal(""), Mailbox]),
  to: z.array(Mailbox).max(1000).superRefine((to, ctx) => {
    if (to.length === 0) ctx.addIssue({ code: z.ZodIssueCode.custom, message: "at least one recipient", ...coded("NO_RECIPIENTS") });
  }),
}).strict();
export type Envelope = z.infer<typeof EnvelopeSchema>;

/** A mail given as fields; the gateway composes the RFC 5322 message. */
export const StructuredMailSchema = z.object({
  from: AddressSchema,
  to: z.array(AddressSchema).max(1000).default([]),
  cc: z.array(AddressSchema).max(1000).default([]),
  bcc: z.array(AddressSchema).max(1000).default([]),
  replyTo: AddressSchema.optional(),
  subject: HeaderText(998).refine((v) => foldsWithin998("Subject".length, v), FOLD_MESSAGE).default(""),
  text: BodyText.optional(),
  html: BodyText.optional(),
  headers: z.record(
    z.string()
      .refine((n) => isHeaderName(n) && n !== "__proto__", { message: "not a header field name", ...coded("HEADER_INJECTION") })
      .refine((n) => !isReservedHeader(n), "set by the gateway from the mail's fields (from, to, cc, subject, …) or its MIME structure; not a custom header"),
    HeaderText(998),
  ).default({}),
  attachments: z.array(z.object({
    filename: HeaderText(255),
    contentType: HeaderText(255).default("application/octet-stream")
      .refine((t) => /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*(;.*)?$/.test(t), "not a media type (type/subtype)")
      .refine((t) => !/^multipart\//i.test(t), "a multipart type would break the message's own MIME structure"),
    content: Base64,
  }).strict()).max(100).default([]),
}).strict().superRefine((m, ctx) => {
  limitRecipients([...m.to, ...m.cc, ...m.bcc].map(mailboxOf), ctx);
  const seen = new Set<string>();
  for (const [name, value] of Object.entries(m.headers)) {
    const issue = (message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["headers", name], message });
    if (!foldsWithin998(name.length, value)) issue(FOLD_MESSAGE);
    // nodemailer leaves out a field with an empty value, and writes one of two names differing in case only.
    if (value.trim() === "") issue("empty: the field would be left out");
    if (seen.has(name.toLowerCase())) issue("given twice (header names are case-insensitive)");
    seen.add(name.toLowerCase());
  }
});
export type StructuredMail = z.infer<typeof StructuredMailSchema>;

/**
 * A ready RFC 5322 message (base64) with its SMTP envelope. The gateway
 * sends to each envelope recipient once (a repeated one is dropped), as it
 * does a structured mail's to, cc and bcc.
 */
export const RawMailSchema = z.object({
  raw: Base64,
  envelope: EnvelopeSchema,
}).strict().superRefine((m, ctx) => limitRecipients(m.envelope.to, ctx));
export type RawMail = z.infer<typeof RawMailSchema>;

/** `mail.submit` request, v1. */
export const SubmitRequestSchema = z.object({
  kind: z.literal("mail.submit"),
  v: z.literal(1),
  /** Resubmitting with the same key never sends twice. Without one, an identical mail within 2 h (DUPLICATE_WINDOW_MS) is a duplicate. */
  idempotencyKey: z.string().min(1).max(256).optional(),
  mail: z.union([RawMailSchema, StructuredMailSchema]),
}).strict();
export type SubmitRequest = z.infer<typeof SubmitRequestSchema>;

/** `mail.submit` reply, v1: sent only after JetStream acknowledged the work item. */
export const SubmitReplySchema = z.object({
  kind: z.literal("mail.submit.reply"),
  v: z.literal(1),
  mailId: z.string(),
  messageId: z.string(),
  duplicate: z.boolean(),
}).strict();
export type SubmitReply = z.infer<typeof SubmitReplySchema>;

const MailIdSchema = z.string().refine(isMailId, "not a mail id").transform((s) => s as MailId);

/** Where the work item's message body is. */
export const BodyRefSchema = z.union([
  z.object({ inline: Base64 }).strict(),
  z.object({ object: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
]);
export type BodyRef = z.infer<typeof BodyRefSchema>;

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "not a SHA-256 hex digest");

/** Work item on MAIL_WORK, v1: everything a processing node needs. */
export const WorkItemSchema = z.object({
  kind: z.literal("mail.work"),
  v: z.literal(1),
  mailId: MailIdSchema,
  messageId: z.string(),
  submittedAt: z.string().datetime(),
  envelope: EnvelopeSchema,
  size: z.number().int().nonnegative(),
  body: BodyRefSchema,
  /** Set by an operator's release from quarantine: skip the classifier. */
  released: z.boolean().default(false),
  /**
   * With `released`: the attempts the mail used before its release (its
   * classification), so its delivery still gets FEN_MAX_ATTEMPTS attempts.
   */
  attemptsBefore: z.number().int().nonnegative().optional(),
  /** SHA-256 of the submitted mail's canonical form (see contentSha256); absent on items from before it existed. */
  contentSha256: Sha256Hex.optional(),
}).strict();
export type WorkItem = z.infer<typeof WorkItemSchema>;

/** Structured SMTP reply, kept as the relay sent it. */
export const SmtpReplySchema = z.object({
  code: z.number().int(),
  enhanced: z.string().optional(),
  response: z.string(),
  command: z.string().optional(),
}).strict();
export type SmtpReply = z.infer<typeof SmtpReplySchema>;

/**
 * A recipient the relay refused, with the reply: at RCPT TO, or (never
 * `transient`) by a 5xx to the message that settled the recipients its
 * transaction carried while others put off at RCPT TO are retried;
 * `transient` (4xx) ones are retried. A Sent or Bounced record has no
 * `transient` one: a recipient still put off (4xx) at the mail's last
 * attempt is given up, listed with its reply and `transient: false`, and
 * the record's error is RETRIES_EXHAUSTED. Past a byte budget (an attempt
 * refusing hundreds of recipients) a refusal's `smtp.response` keeps only
 * the reply's code and enhanced code.
 */
export const RecipientRefusalSchema = z.object({
  recipient: z.string(),
  transient: z.boolean(),
  smtp: SmtpReplySchema.optional(),
}).strict();
export type RecipientRefusal = z.infer<typeof RecipientRefusalSchema>;

/** Classifier verdict as recorded in events. */
export const ClassificationSchema = z.object({
  score: z.number(),
  verdict: z.enum(["spam", "ham"]),
  modelVersion: z.string(),
}).strict();
export type Classification = z.infer<typeof ClassificationSchema>;

/** Details of a transition. */
export const EventDetailSchema = z.object({
  smtp: SmtpReplySchema.optional(),
  error: z.object({ code: z.string(), message: z.string() }).strict().optional(),
  classification: ClassificationSchema.optional(),
  retryAt: z.string().datetime().optional(),
  /**
   * Processing: redelivered while DeliveryScheduled, the earlier attempt's
   * outcome is unknown. Deferred and Bounced: this attempt failed with the
   * whole message out and no reply, or an earlier attempt's outcome is
   * unknown: the relay may have the mail (a retry may deliver it twice, a
   * bounce may be of a delivered mail). Once set on a mail's Deferred
   * record, every later Deferred or Bounced one carries it.
   */
  inDoubt: z.boolean().optional(),
  reason: z.string().optional(),
  /**
   * The recipients this attempt sends to (DeliveryScheduled) or that are
   * still to be delivered (Deferred), when not all of the envelope: the
   * others were delivered or refused for good by an earlier attempt.
   */
  pending: z.array(z.string()).max(3000).optional(),
  /** PendingProcessing: SHA-256 of the submitted mail's canonical form, checked on a resubmission. */
  contentSha256: Sha256Hex.optional(),
  /** Recipients the relay refused in this attempt, each with its reply (see RecipientRefusalSchema). */
  rejected: z.array(RecipientRefusalSchema).max(3000).optional(),
}).strict();
export type EventDetail = z.infer<typeof EventDetailSchema>;

const StateSchema = z.enum(MAIL_STATES as [typeof MAIL_STATES[number], ...typeof MAIL_STATES[number][]]);

/** Life-cycle event on MAIL_EVENTS, v1 (the ledger folds these). */
export const MailEventSchema = z.object({
  kind: z.literal("mail.event"),
  v: z.literal(1),
  /** `<mailId>.<state>.<attempt>`: also the JetStream Nats-Msg-Id. */
  eventId: z.string(),
  mailId: MailIdSchema,
  state: StateSchema,
  attempt: z.number().int().nonnegative(),
  at: z.string().datetime(),
  node: z.string(),
  recipients: z.array(z.string()),
  detail: EventDetailSchema.default({}),
}).strict();
export type MailEvent = z.infer<typeof MailEventSchema>;

/** Current state of a mail in the `mail_status` bucket, v1. */
export const StatusRecordSchema = z.object({
  kind: z.literal("mail.status-record"),
  v: z.literal(1),
  mailId: MailIdSchema,
  state: StateSchema,
  attempt: z.number().int().nonnegative(),
  updatedAt: z.string().datetime(),
  submittedAt: z.string().datetime(),
  detail: EventDetailSchema.default({}),
  /**
   * Attempts that do not count against FEN_MAX_ATTEMPTS: those a node gave
   * up as it stopped (its drain deadline), and transactions a relay split
   * with 452 "too many recipients"; neither is a failure. Absent: 0.
   */
  attemptsNotCounted: z.number().int().positive().optional(),
  /**
   * DeliveryScheduled only: when the node delivering the mail made or last
   * renewed its claim (it renews every third of CLAIM_TTL_MS while the
   * delivery lasts), with random digits below the millisecond that make each
   * claim's bytes its writer's own. A node holding a redelivered copy leaves
   * the mail to its claimant while this (absent: updatedAt) is younger than
   * CLAIM_TTL_MS. Any transition drops it.
   */
  claimRenewedAt: z.string().datetime().optional(),
}).strict();
export type StatusRecord = z.infer<typeof StatusRecordSchema>;

/** `mail.status` request, v1. */
export const StatusRequestSchema = z.object({
  kind: z.literal("mail.status"),
  v: z.literal(1),
  mailId: MailIdSchema,
}).strict();
export type StatusRequest = z.infer<typeof StatusRequestSchema>;

/** A ledger receipt summary attached to status replies. */
export const LedgerReceiptRefSchema = z.object({
  index: z.number().int().nonnegative(),
  eventId: z.string(),
  treeSize: z.number().int().nonnegative(),
}).strict();

/** `mail.status` reply, v1. */
export const StatusReplySchema = z.object({
  kind: z.literal("mail.status.reply"),
  v: z.literal(1),
  mailId: MailIdSchema,
  state: StateSchema,
  attempt: z.number().int().nonnegative(),
  updatedAt: z.string(),
  /** The mail's recipients (from its first event), given once. */
  recipients: z.array(z.string()).optional(),
  /**
   * Every event of the mail, oldest first. An event's `recipients` is left
   * out when it equals the reply's `recipients` (it always does today), so
   * a mail with many recipients and many attempts stays one message.
   * Empty for an accepted mail whose PendingProcessing event is not stored
   * yet (its work item is: the node that takes it publishes the event).
   */
  history: z.array(MailEventSchema.extend({ recipients: z.array(z.string()).optional() })),
  /**
   * How many of the oldest events' per-recipient lists (`pending`, `rejected`) were left out to keep the reply
   * a few MB (a mail with hundreds of recipients refused at many attempts); the events on MAIL_EVENTS keep them.
   */
  trimmed: z.number().int().positive().optional(),
  ledger: z.array(LedgerReceiptRefSchema).optional(),
}).strict();
export type StatusReply = z.infer<typeof StatusReplySchema>;

/** `mail.classify` request, v1: "would this be flagged?", nothing is sent. */
export const ClassifyRequestSchema = z.object({
  kind: z.literal("mail.classify"),
  v: z.literal(1),
  mail: z.union([RawMailSchema, StructuredMailSchema]),
}).strict();
export type ClassifyRequest = z.infer<typeof ClassifyRequestSchema>;

/** `mail.classify` reply, v1. */
export const ClassifyReplySchema = z.object({
  kind: z.literal("mail.classify.reply"),
  v: z.literal(1),
  score: z.number(),
  verdict: z.enum(["spam", "ham"]),
  flagged: z.boolean(),
  modelVersion: z.string(),
}).strict();
export type ClassifyReply = z.infer<typeof ClassifyReplySchema>;

/** A page cursor: a stream sequence (one JavaScript numbers hold exactly). */
const pageCursor = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** An operator's reason, recorded in the mail's history: not blank. */
const operatorReason = z.string().max(1000).refine((s) => s.trim().length > 0, "must not be blank");

/**
 * `mail.queue` request, v1: an operator's `mailq`. Lists the mails in
 * MAIL_WORK (submitted and not yet settled: waiting, in delivery, or
 * deferred until a retry), oldest first, from stream sequence `after` + 1.
 */
export const QueueRequestSchema = z.object({
  kind: z.literal("mail.queue"),
  v: z.literal(1),
  limit: z.number().int().min(1).max(1000).default(100),
  /** Page cursor: the reply's `next`. 0 starts at the oldest mail. */
  after: pageCursor.default(0),
}).strict();
export type QueueRequest = z.infer<typeof QueueRequestSchema>;

/** Reply to `mail.queue`, v1. */
export const QueueReplySchema = z.object({
  kind: z.literal("mail.queue.reply"),
  v: z.literal(1),
  mails: z.array(z.object({
    mailId: MailIdSchema,
    /** MAIL_WORK sequence of the mail's work item. */
    seq: z.number().int().positive(),
    /** PendingProcessing until a node claims the mail. */
    state: StateSchema,
    attempt: z.number().int().nonnegative(),
    submittedAt: z.string().datetime(),
    /** When the mail entered `state`. */
    since: z.string().datetime(),
    recipients: z.number().int().nonnegative(),
    /** Deferred: when the next attempt is due, and why the last one failed. */
    retryAt: z.string().datetime().optional(),
    error: z.object({ code: z.string(), message: z.string() }).strict().optional(),
  }).strict()),
  /** Work items from the first one listed to the end of MAIL_WORK (the whole queue on the first page). */
  remaining: z.number().int().nonnegative(),
  /** Work items no node has taken yet, and those a node holds (in delivery or waiting for a retry). */
  waiting: z.number().int().nonnegative(),
  held: z.number().int().nonnegative(),
  /** Cursor for the next page (`after`); absent on the last page. */
  next: z.number().int().positive().optional(),
}).strict();
export type QueueReply = z.infer<typeof QueueReplySchema>;

/** Operator requests on quarantined mail, v1. */
export const QuarantineRequestSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("mail.quarantine.list"), v: z.literal(1),
    /** Most mails in the page; a page stops earlier after 8 MB of kept mails (large bodies), with `done: false`. */
    limit: z.number().int().min(1).max(1000).default(100),
    /** Page cursor: the reply's `next`. 0 starts at the oldest kept mail. */
    after: pageCursor.default(0),
  }).strict(),
  z.object({ kind: z.literal("mail.quarantine.release"), v: z.literal(1), mailId: MailIdSchema, reason: operatorReason }).strict(),
  z.object({ kind: z.literal("mail.quarantine.delete"), v: z.literal(1), mailId: MailIdSchema, reason: operatorReason }).strict(),
]);
export type QuarantineRequest = z.infer<typeof QuarantineRequestSchema>;

/** Reply to quarantine requests, v1. */
export const QuarantineReplySchema = z.object({
  kind: z.literal("mail.quarantine.reply"),
  v: z.literal(1),
  /**
   * The mails listed, or the one released or deleted. `score` is -1 when no classification was recorded.
   * `unfinished` (list): a release or delete of this mail stopped halfway (its state moved, the mail is still
   * kept); repeating that request finishes it.
   */
  mails: z.array(z.object({
    mailId: z.string(), score: z.number(), modelVersion: z.string(), at: z.string(), unfinished: z.enum(["release", "delete"]).optional(),
  }).strict()).default([]),
  /** List: false when more kept mails follow this page. */
  done: z.boolean().default(true),
  /** List: the cursor (`after`) for the next page, when not done. */
  next: z.number().int().positive().optional(),
}).strict();
export type QuarantineReply = z.infer<typeof QuarantineReplySchema>;

/** Error reply of any service, v1. Also signalled in headers. */
export const ErrorReplySchema = z.object({
  kind: z.literal("error"),
  v: z.literal(1),
  code: z.string(),
  message: z.string(),
  fields: z.array(z.object({ field: z.string(), code: z.string(), message: z.string() }).strict()).default([]),
}).strict();
export type ErrorReply = z.infer<typeof ErrorReplySchema>;

/** Maps zod issues onto field errors carrying registry codes. */
export function fieldErrors(error: z.ZodError): FieldError[] {
  const out: FieldError[] = [];
  const visit = (issues: z.ZodIssue[]) => {
    for (const issue of issues) {
      if (issue.code === "invalid_union") {
        // Report the branch that got furthest: the one with the fewest issues
        // that are not type mismatches of the discriminating shape.
        const best = [...issue.unionErrors].sort((a, b) => score(a) - score(b))[0];
        if (best) visit(best.issues);
        continue;
      }
      const code = issue.code === "custom" && isErrorCode(issue.params?.["code"]) ? issue.params["code"] : "BAD_REQUEST";
      out.push({ field: issue.path.join("."), code, message: issue.message });
    }
  };
  visit(error.issues);
  return out;
}

function score(e: z.ZodError): number {
  return e.issues.reduce((n, i) => n + (i.code === "unrecognized_keys" || i.code === "invalid_type" ? 10 : 1), 0);
}

/** Throws a FenError whose code is the first field's code, listing every field. */
export function rejectFields(fields: FieldError[], what: string): never {
  const first = fields[0];
  const code: ErrorCode = first ? first.code : "BAD_REQUEST";
  const list = fields.map((f) => `${f.field || "(root)"}: ${f.message}`).join("; ");
  throw new FenError(code, `invalid ${what}: ${list}`, { fields });
}
