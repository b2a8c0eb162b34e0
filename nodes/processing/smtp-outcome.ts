import { isUtf8 } from "node:buffer";
import type { RecipientRefusal, SmtpReply } from "../../protocol/index.js";
import { cutChars } from "../common/text.js";

/**
 * What a delivery attempt came to. `rejected` lists the recipients the relay
 * refused at RCPT TO, each classified on its own reply: a "sent" mail went
 * to every other recipient, a "refused" one to none (every recipient was
 * refused, so the transaction never reached DATA).
 */
export type Outcome =
  | { readonly kind: "sent"; readonly smtp: SmtpReply; readonly rejected: readonly RecipientRefusal[] }
  | { readonly kind: "refused"; readonly smtp?: SmtpReply; readonly rejected: readonly RecipientRefusal[] }
  /**
   * `inDoubt`: the whole message had gone out when the attempt failed (the
   * connection broke or timed out waiting for the reply to the final ".",
   * or the relay answered it with no refusal): the relay may have taken it,
   * so a retry may deliver it twice.
   * `stopped`: the node gave the attempt up as it stopped (its drain
   * deadline), not the relay: retried at once elsewhere, never a mail's last
   * attempt. `rejected` (here and on "permanent"): recipients the relay had
   * refused at RCPT TO before the transaction failed as a whole (e.g. 550
   * for one recipient, then 451 for the message). `failure` (here and on
   * "permanent"): what failed in our own words, without the relay's text
   * (which may quote an address), for logs: a FAILURE_TABLE row's `why`, or
   * the delivery's reason for giving the attempt up.
   */
  | { readonly kind: "transient"; readonly smtp?: SmtpReply; readonly reason: string; readonly failure?: string; readonly inDoubt?: boolean; readonly stopped?: true; readonly rejected?: readonly RecipientRefusal[] }
  | { readonly kind: "permanent"; readonly smtp?: SmtpReply; readonly reason: string; readonly failure?: string; readonly rejected?: readonly RecipientRefusal[] };

/**
 * How a failure is classified, first matching row wins. A data table (like
 * ZoneMTA's bounces.txt) with a test per row, so classification is reviewed
 * as data, not buried in branches. Rows match the SMTP reply code (and,
 * with `session`, only replies to the commands that open a session:
 * greeting, EHLO/HELO/LHLO, STARTTLS, AUTH), or, without a reply,
 * nodemailer's error code, or (`garbled`) an answer from the relay that is
 * no SMTP reply (see `smtpReplyOf`).
 */
export const FAILURE_TABLE: readonly {
  readonly match: { readonly replyCode?: readonly [number, number]; readonly session?: true; readonly errorCode?: string; readonly garbled?: true };
  readonly outcome: "transient" | "permanent";
  readonly why: string;
}[] = [
  // The relay is the configured smarthost: a session it refuses is its
  // problem (or our configuration's), the same for every mail, so the mail
  // waits for it to be fixed instead of bouncing (as Postfix defers).
  { match: { replyCode: [500, 599], session: true }, outcome: "transient", why: "5xx opening the session (greeting, EHLO, STARTTLS or AUTH): the relay refuses us, not this mail" },
  // RFC 4954: 530 5.7.0 "Authentication required" may answer any command but AUTH, EHLO, HELO, NOOP, RSET or QUIT
  // (a relay that started to require AUTH, a relay user left unset): our configuration, not this mail.
  { match: { replyCode: [530, 530] }, outcome: "transient", why: "530: the relay requires authentication (RFC 4954): our configuration, not this mail" },
  { match: { replyCode: [400, 499] }, outcome: "transient", why: "4xx: the relay asks to try again later" },
  { match: { replyCode: [500, 599] }, outcome: "permanent", why: "5xx: the relay refuses the mail for good" },
  { match: { errorCode: "ECONNECTION" }, outcome: "transient", why: "connection refused or reset" },
  { match: { errorCode: "ETIMEDOUT" }, outcome: "transient", why: "the relay did not answer in time" },
  { match: { errorCode: "ESOCKET" }, outcome: "transient", why: "socket error" },
  { match: { errorCode: "EDNS" }, outcome: "transient", why: "the relay's name did not resolve" },
  { match: { errorCode: "ETLS" }, outcome: "transient", why: "TLS handshake failed" },
  { match: { errorCode: "EAUTH" }, outcome: "transient", why: "authentication with the relay failed (configuration; retried until fixed or exhausted)" },
  // nodemailer calls any answer to MAIL, RCPT or DATA that does not start with 2 a refusal (EENVELOPE, EMESSAGE),
  // noise included: only a 5xx reply refuses a mail for good.
  { match: { garbled: true }, outcome: "transient", why: "the relay's reply is not an SMTP reply (no reply code): retried, never bounced on it" },
  { match: { errorCode: "EENVELOPE" }, outcome: "permanent", why: "the envelope was refused" },
  { match: { errorCode: "EMESSAGE" }, outcome: "permanent", why: "the message could not be sent as is" },
  { match: {}, outcome: "transient", why: "unknown failure: retried rather than lost" },
];

const ENHANCED = /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b/;

/** An SMTP reply starts with its three-digit code, then a space, a hyphen (more lines follow) or the line's end (RFC 5321 4.2). */
const REPLY_CODE = /^([1-5]\d\d)(?:[ -]|$)/;

/** nodemailer's `command` for replies that open a session rather than carry a mail ("CONN" is the greeting). */
const SESSION_COMMAND = /^(CONN|EHLO|HELO|LHLO|STARTTLS|AUTH\b)/;

/**
 * Characters of a relay's reply kept for the mail. RFC 5321 lines are at
 * most 512 octets, but a relay can send a reply of any length (many lines,
 * or one huge one), and the reply is stored in every event and status
 * record of the mail (test/ledger-node/limits.test.ts pins the bound).
 */
export const SMTP_REPLY_CHARS = 1000;

/**
 * A relay's text (a reply, or nodemailer's error message quoting one) as
 * the relay wrote it. nodemailer reads the relay's bytes one character per
 * byte (Latin-1), so a reply written in UTF-8 (as most relays write
 * non-ASCII text, and smtp-server always does) reached us as mojibake,
 * with C1 controls the ledger turns into spaces. Text whose bytes are valid
 * UTF-8 is read as UTF-8; any other (Latin-1 text, noise) stays as
 * nodemailer read it. Text holding a character above U+00FF did not come
 * from that decoding and is left alone.
 */
export function relayText(text: string): string {
  // eslint-disable-next-line no-control-regex
  if (!/[\u0080-\u00ff]/.test(text) || /[^\u0000-\u00ff]/.test(text)) return text;
  const bytes = Buffer.from(text, "latin1");
  return isUtf8(bytes) ? bytes.toString("utf8") : text;
}

/**
 * The structured SMTP reply of a nodemailer result or error, when there is
 * one: a relay's answer that does not start with a reply code (noise, or
 * nodemailer's `responseCode` 5 for a bare "5") is none. The text is the
 * relay's (see {@link relayText}), cut to SMTP_REPLY_CHARS.
 */
export function smtpReplyOf(x: { responseCode?: number; response?: string; command?: string }): SmtpReply | undefined {
  const response = x.response === undefined ? undefined : cutChars(relayText(x.response).trim(), SMTP_REPLY_CHARS);
  const code = Number(REPLY_CODE.exec(response?.split("\n", 1)[0] ?? "")?.[1] ?? NaN);
  if (!response || !Number.isInteger(code)) return undefined;
  const enhanced = ENHANCED.exec(response)?.[1];
  return { code, response, ...(enhanced ? { enhanced } : {}), ...(x.command ? { command: x.command } : {}) };
}

/** `text` cut to at most `max` bytes of UTF-8, at a character's start (never into U+FFFD). */
export function cutBytes(text: string, max: number): string {
  if (Buffer.byteLength(text, "utf8") <= max) return text;
  const bytes = Buffer.from(text, "utf8");
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}

/** Bytes (UTF-8) of a relay's reply kept per refused recipient. */
export const REFUSAL_REPLY_BYTES = 200;

/**
 * Bytes (as JSON) the refusals of one attempt may take in its event and
 * status record (see {@link refusalsWithin}). An event also holds the
 * mail's recipients (up to MAX_RECIPIENTS addresses of up to 254
 * characters) and, when some are still to be tried, those again
 * (`pending`): with this budget the largest event stays under
 * EVENT_MAX_BYTES, as test/ledger-node/limits.test.ts pins. An event over
 * it could never be stored, and the attempt would be sent again for ever.
 */
export const REFUSALS_MAX_BYTES = 400 * 1024;

/** The reply as its code and enhanced code alone ("450 4.2.1"): what a refusal keeps past the budget. */
const codeOnly = (smtp: SmtpReply): SmtpReply => ({ ...smtp, response: smtp.enhanced ? `${smtp.code} ${smtp.enhanced}` : String(smtp.code) });

const jsonBytes = (x: unknown): number => Buffer.byteLength(JSON.stringify(x), "utf8") + 1;

/**
 * The refusals of an attempt as its event records them: every refusal, in
 * order, each whole while the list stays within REFUSALS_MAX_BYTES, and past
 * that with its reply cut to the code and enhanced code. Only the replies'
 * text is cut: the recipients still to be tried are recorded apart
 * (`pending`), from the refusals as the relay gave them. (A refusal left
 * out altogether would need addresses no mailbox has: MAX_RECIPIENTS
 * refusals with their codes only take about 320 KB.)
 */
export function refusalsWithin(refusals: readonly RecipientRefusal[], budget = REFUSALS_MAX_BYTES): RecipientRefusal[] {
  const compact = refusals.map((x) => (x.smtp ? { ...x, smtp: codeOnly(x.smtp) } : x));
  const compactBytes = compact.map(jsonBytes);
  let rest = compactBytes.reduce((a, b) => a + b, 0);
  let used = 0;
  const out: RecipientRefusal[] = [];
  refusals.forEach((x, i) => {
    rest -= compactBytes[i]!;
    const whole = jsonBytes(x);
    const pick = used + whole + rest <= budget ? { x, bytes: whole } : { x: compact[i]!, bytes: compactBytes[i]! };
    if (used + pick.bytes > budget) return;
    used += pick.bytes;
    out.push(pick.x);
  });
  return out;
}

type NodemailerError = { responseCode?: number; response?: string; command?: string; code?: string; message?: string; recipient?: string };

/**
 * A refusal at RCPT TO that asks for the recipient in another transaction:
 * the relay's limit on recipients per transaction. RFC 5321 4.5.3.1.10: 452
 * (552 in RFC 821, which a client SHOULD treat as 452 "in this case"), with
 * enhanced code X.5.3 ("too many recipients", RFC 3463) when it has one. A
 * 452 4.2.2 (mailbox full) is not; nor is a 552 without an enhanced code
 * unless its text says so ("552 exceeded storage allocation" is RFC 5321's
 * own text for a full mailbox).
 */
export function isTooManyRecipients(smtp: SmtpReply | undefined): boolean {
  if (smtp === undefined || (smtp.code !== 452 && smtp.code !== 552)) return false;
  if (smtp.enhanced !== undefined) return /^[45]\.5\.3$/.test(smtp.enhanced);
  return smtp.code === 452 || /too many recipients|recipients? limit|too many rcpt/i.test(smtp.response);
}

/**
 * The per-recipient refusals of a nodemailer result or error
 * (`rejectedErrors`, one error per refused RCPT TO), each classified by
 * its own reply: 4xx (or no reply) transient, 5xx permanent, but for 552
 * "too many recipients" ({@link isTooManyRecipients}) and 530
 * "authentication required", which are transient.
 */
export function recipientRefusals(rejectedErrors: readonly unknown[] | undefined): RecipientRefusal[] {
  return (rejectedErrors ?? []).map((x) => {
    const e = (x ?? {}) as NodemailerError;
    const reply = smtpReplyOf(e);
    const transient = !(reply && reply.code >= 500) || isTooManyRecipients(reply) || reply.code === 530;
    // Cut (by bytes: a reply in UTF-8 takes up to 3 per character) so that an event refusing every one of
    // MAX_RECIPIENTS stays within EVENT_MAX_BYTES; the list as a whole is bounded by refusalsWithin.
    const smtp = reply && { ...reply, response: cutBytes(reply.response, REFUSAL_REPLY_BYTES) };
    return { recipient: String(e.recipient ?? ""), transient, ...(smtp ? { smtp } : {}) };
  });
}

/** Classifies a nodemailer error by the table above (a refusal of every recipient by each recipient's reply). */
export function classifyFailure(err: unknown): Outcome {
  const e = (err ?? {}) as NodemailerError & { rejectedErrors?: unknown[] };
  const smtp = smtpReplyOf(e);
  if (e.code === "EENVELOPE" && e.rejectedErrors?.length) {
    return { kind: "refused", ...(smtp ? { smtp } : {}), rejected: recipientRefusals(e.rejectedErrors) };
  }
  for (const row of FAILURE_TABLE) {
    const { replyCode, session, errorCode, garbled } = row.match;
    const hit = replyCode
      ? smtp !== undefined && smtp.code >= replyCode[0] && smtp.code <= replyCode[1] && (!session || SESSION_COMMAND.test(e.command ?? ""))
      : errorCode
        ? smtp === undefined && e.code === errorCode
        : garbled
          ? smtp === undefined && typeof e.response === "string" && e.response.trim() !== ""
          : true;
    if (hit) {
      const reason = cutChars(`${row.why}${e.message ? `: ${relayText(e.message)}` : ""}`, 500);
      return { kind: row.outcome, reason, failure: row.why, ...(smtp ? { smtp } : {}) };
    }
  }
  return { kind: "transient", reason: "unclassified", failure: "unclassified" };
}
