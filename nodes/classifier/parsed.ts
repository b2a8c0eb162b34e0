/**
 * Maps a `mailparser` result onto the classifier's {@link MailView}.
 *
 * `classifyRaw` reads raw bytes with the classifier's own MIME reader
 * (`mime.ts`), which is what the model is trained and evaluated on. Callers
 * that already hold a `ParsedMail` can use `classifyParsed`; parse with
 * {@link MAILPARSER_OPTIONS} so mailparser does not invent a text part from
 * the HTML, otherwise the scores drift a little from `classifyRaw`.
 *
 * @module
 */
import type { ParsedMail } from "mailparser";
import type { AttachmentInfo, MailView } from "./mime.js";

/** `simpleParser` options that make `classifyParsed` agree with `classifyRaw`. */
export const MAILPARSER_OPTIONS = Object.freeze({
  skipHtmlToText: true,
  skipTextToHtml: true,
  skipTextLinks: true,
  skipImageLinks: true,
});

/** Reduces a `ParsedMail` to the parts the classifier reads. */
export function viewFromParsedMail(mail: ParsedMail): MailView {
  const html = typeof mail.html === "string" ? mail.html : "";
  const text = mail.text ?? "";
  const attachments: AttachmentInfo[] = (mail.attachments ?? []).map((a) => ({
    contentType: (a.contentType ?? "application/octet-stream").toLowerCase(),
    filename: a.filename ?? "",
    size: a.size ?? 0,
  }));
  return {
    subject: mail.subject ?? "",
    text,
    html,
    attachments,
    textParts: text ? 1 : 0,
    htmlParts: html ? 1 : 0,
  };
}
