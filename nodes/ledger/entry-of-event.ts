import type { MailEvent } from "../../protocol/index.js";
import { commitRecipients } from "../../ledger/index.js";
import type { EntryDetail, LedgerEntry } from "../../ledger/index.js";
import { cutChars } from "../common/text.js";

// Printable text without C0/C1 controls or DEL, as the entry format demands.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

function text(s: string | undefined, max: number): string | undefined {
  if (s === undefined) return undefined;
  const cut = cutChars(s.replace(CONTROL, " ").trim(), max);
  return cut.length > 0 ? cut : undefined;
}

function detailOf(ev: MailEvent): EntryDetail {
  const d = ev.detail;
  const out: { -readonly [K in keyof EntryDetail]: EntryDetail[K] } = {};
  if (d.smtp && Number.isInteger(d.smtp.code) && d.smtp.code >= 200 && d.smtp.code <= 599) {
    const enhanced = d.smtp.enhanced && /^[245]\.\d{1,3}\.\d{1,3}$/.test(d.smtp.enhanced) ? d.smtp.enhanced : undefined;
    const message = text(d.smtp.response, 1024);
    const command = text(d.smtp.command, 64);
    out.smtp = {
      code: d.smtp.code,
      ...(enhanced ? { enhanced } : {}),
      ...(message ? { message } : {}),
      ...(command ? { command } : {}),
    };
  }
  if (d.error && /^[A-Za-z0-9_.:-]{1,128}$/.test(d.error.code)) out.errorCode = d.error.code;
  if (d.classification) {
    const verdict = text(d.classification.verdict, 64);
    const modelVersion = text(d.classification.modelVersion, 128);
    if (verdict && modelVersion && Number.isFinite(d.classification.score)) {
      out.classification = { verdict, score: d.classification.score, modelVersion };
    }
  }
  if (d.inDoubt === true) out.inDoubt = true;
  return out;
}

/**
 * The ledger entry of a life-cycle event: recipients replaced by keyed
 * commitments, the time normalised to `toISOString()` form, and the detail
 * reduced to what the entry format records (SMTP reply, error code,
 * classification, in doubt), cleaned of control characters and cut to the format's
 * lengths. Deterministic: the same event and key always give the same entry.
 */
export function entryOfEvent(ev: MailEvent, commitmentKey: Uint8Array): LedgerEntry {
  return {
    mailId: ev.mailId,
    state: ev.state,
    attempt: ev.attempt,
    at: new Date(ev.at).toISOString(),
    eventId: ev.eventId,
    recipients: commitRecipients(commitmentKey, ev.recipients),
    detail: detailOf(ev),
  };
}
