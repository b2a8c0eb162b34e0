import MailComposer from "nodemailer/lib/mail-composer/index.js";
import type Mail from "nodemailer/lib/mailer/index.js";
import { mailboxOf } from "../../protocol/index.js";
import type { Address, Envelope, StructuredMail } from "../../protocol/index.js";
import { withoutBcc } from "./mime.js";

const toNodemailer = (a: Address): Mail.Address | string =>
  typeof a === "string" ? a : { name: a.name, address: a.address };

/**
 * Composes the RFC 5322 message of a structured mail with nodemailer's
 * MailComposer. Bcc recipients go into the envelope only. The Message-ID is
 * the one the gateway assigned, so every retry reuses it.
 */
export async function composeStructured(mail: StructuredMail, messageId: string, date: Date): Promise<Buffer> {
  const composer = new MailComposer({
    from: toNodemailer(mail.from),
    to: mail.to.map(toNodemailer),
    cc: mail.cc.map(toNodemailer),
    ...(mail.replyTo ? { replyTo: toNodemailer(mail.replyTo) } : {}),
    subject: mail.subject,
    ...(mail.text !== undefined ? { text: mail.text } : {}),
    ...(mail.html !== undefined ? { html: mail.html } : {}),
    headers: mail.headers,
    attachments: mail.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, content: Buffer.from(a.content, "base64") })),
    messageId,
    date,
  });
  return composer.compile().build();
}

/**
 * A lower bound of the size {@link composeStructured} will produce: the
 * text, the HTML and the decoded attachments, which any transfer encoding
 * only makes longer. Checked before composing, so a mail far over the limit
 * is refused without building it (10 MB of text took seconds to compose).
 */
export function composedSizeAtLeast(mail: StructuredMail): number {
  const attachments = mail.attachments.reduce((n, a) => n + Math.floor((a.content.replace(/[^A-Za-z0-9+/]/g, "").length * 3) / 4), 0);
  return Buffer.byteLength(mail.text ?? "", "utf8") + Buffer.byteLength(mail.html ?? "", "utf8") + attachments;
}

/** The envelope recipients of a structured mail: to, cc and bcc, de-duplicated. */
export function structuredRecipients(mail: StructuredMail): string[] {
  return [...new Set([...mail.to, ...mail.cc, ...mail.bcc].map(mailboxOf))];
}

/**
 * The envelope of a raw mail as it is hashed, stored and sent: its
 * recipients de-duplicated as a structured mail's are (first occurrence
 * first), so each gets one RCPT TO and one row of per-recipient outcomes.
 */
export function rawEnvelope(envelope: Envelope): Envelope {
  return { from: envelope.from, to: [...new Set(envelope.to)] };
}

/**
 * A raw message as it is stored and sent: its own Message-ID kept (`own`,
 * from `checkMime`), or the assigned one prepended; Bcc fields removed.
 */
export function prepareRaw(raw: Buffer, own: string | undefined, assigned: string): Buffer {
  const bytes = withoutBcc(raw);
  return own ? bytes : Buffer.concat([Buffer.from(`Message-ID: ${assigned}\r\n`), bytes]);
}

/** A Message-ID for messages composed only to be looked at (mail.classify), never sent. */
export function messageIdForPreview(): string {
  return "<preview@fastemailnet.invalid>";
}
