import { describe, expect, it } from "vitest";
import { ENTRY_MAX_BYTES, encodeEntry } from "../../ledger/index.js";
import { entryOfEvent } from "../../nodes/ledger/entry-of-event.js";
import { REFUSAL_REPLY_CHARS } from "../../nodes/processing/smtp-outcome.js";
import { Codecs, EVENT_MAX_BYTES, MAX_RECIPIENTS, isMailbox, mailIdFromIdempotencyKey } from "../../protocol/index.js";
import type { MailEvent } from "../../protocol/index.js";

/** The largest event a mail with `n` recipients can produce, as far as its ledger entry goes. */
function largestEvent(n: number): MailEvent {
  const mailId = mailIdFromIdempotencyKey("limits");
  return {
    kind: "mail.event", v: 1, eventId: `${mailId}.Bounced.2147483647`, mailId, state: "Bounced", attempt: 0x7fff_ffff,
    at: new Date(0).toISOString(), node: "n".repeat(200),
    recipients: Array.from({ length: n }, (_, i) => `${"r".repeat(60)}${i}@example.net`),
    detail: {
      smtp: { code: 550, enhanced: "5.7.1", response: `550 5.7.1 ${"x".repeat(5000)}`, command: "c".repeat(200) },
      error: { code: "E".repeat(128), message: "m" },
      classification: { score: -1.234567890123e-300, verdict: "spam", modelVersion: "m".repeat(128) },
      inDoubt: true,
    },
  };
}

describe("MAX_RECIPIENTS and the ledger's entry limit", () => {
  const key = new Uint8Array(32).fill(7);
  it(`every event of a mail with ${MAX_RECIPIENTS} recipients fits one ledger entry (${ENTRY_MAX_BYTES} bytes)`, () => {
    const bytes = encodeEntry(entryOfEvent(largestEvent(MAX_RECIPIENTS), key));
    expect(bytes.length).toBeLessThanOrEqual(ENTRY_MAX_BYTES);
    console.log(`largest entry with ${MAX_RECIPIENTS} recipients: ${bytes.length} of ${ENTRY_MAX_BYTES} bytes`);
  });
  it("the old limit (1,000 per field, 3,000 in all) did not: such events were dropped by the ledger node", () => {
    expect(() => encodeEntry(entryOfEvent(largestEvent(1000), key))).toThrow(/exceeds|at most/);
  });
});

describe("MAX_RECIPIENTS and the events stream's message limit", () => {
  it(`the largest event of a mail with ${MAX_RECIPIENTS} recipients of 254 characters, all pending and refused, fits MAIL_EVENTS and mail_status`, () => {
    const domain = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(57)}.net`;
    const recipients = Array.from({ length: MAX_RECIPIENTS }, (_, i) => `${String(i).padStart(4, "0")}${"l".repeat(60)}@${domain}`);
    expect(recipients.every((r) => r.length === 254 && isMailbox(r))).toBe(true);
    const smtp = { code: 450, enhanced: "4.2.1", response: "4".repeat(REFUSAL_REPLY_CHARS), command: "RCPT TO" };
    const detail = {
      smtp: { code: 250, response: `250 ${"o".repeat(1000)}` }, retryAt: new Date(0).toISOString(),
      error: { code: "SMTP_TRANSIENT", message: "m".repeat(500) },
      pending: recipients, rejected: recipients.map((recipient) => ({ recipient, transient: true, smtp })),
    };
    const ev = { ...largestEvent(MAX_RECIPIENTS), state: "Deferred" as const, recipients, detail };
    const bytes = Codecs.mailEvent.encode(ev).length;
    const record = Codecs.statusRecord.encode({
      kind: "mail.status-record", v: 1, mailId: ev.mailId, state: "Deferred", attempt: 1, updatedAt: ev.at, submittedAt: ev.at, detail,
    }).length;
    console.log(`largest event: ${bytes} bytes, status record ${record}, limit ${EVENT_MAX_BYTES}`);
    // Headers (Nats-Msg-Id) and the protocol line take a few hundred bytes more.
    expect(Math.max(bytes, record)).toBeLessThan(EVENT_MAX_BYTES - 4096);
  });
});
