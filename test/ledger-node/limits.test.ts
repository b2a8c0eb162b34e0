import { describe, expect, it } from "vitest";
import { ENTRY_MAX_BYTES, encodeEntry } from "../../ledger/index.js";
import { entryOfEvent } from "../../nodes/ledger/entry-of-event.js";
import { REFUSALS_MAX_BYTES, REFUSAL_REPLY_BYTES, recipientRefusals, refusalsWithin } from "../../nodes/processing/smtp-outcome.js";
import { Codecs, EVENT_MAX_BYTES, MAX_RECIPIENTS, isMailbox, mailIdFromIdempotencyKey } from "../../protocol/index.js";
import type { MailEvent, RecipientRefusal } from "../../protocol/index.js";

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
  const domain = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(57)}.net`;
  const recipients = Array.from({ length: MAX_RECIPIENTS }, (_, i) => `${String(i).padStart(4, "0")}${"l".repeat(60)}@${domain}`);
  /** The largest Deferred event and status record whose refusals are `rejected` (every recipient also pending), in bytes. */
  const sizes = (rejected: readonly RecipientRefusal[]) => {
    const detail = {
      smtp: { code: 250, response: `250 ${"o".repeat(1000)}` }, retryAt: new Date(0).toISOString(),
      error: { code: "SMTP_TRANSIENT", message: "m".repeat(500) },
      pending: recipients, rejected: [...rejected],
    };
    const ev = { ...largestEvent(MAX_RECIPIENTS), state: "Deferred" as const, recipients, detail };
    const record = Codecs.statusRecord.encode({
      kind: "mail.status-record", v: 1, mailId: ev.mailId, state: "Deferred", attempt: 1, updatedAt: ev.at, submittedAt: ev.at, detail,
    }).length;
    return { event: Codecs.mailEvent.encode(ev).length, record };
  };
  /** Every recipient refused at RCPT TO with `text` (as nodemailer reports it; relayText reads UTF-8 replies as such). */
  const refusedWith = (text: string) => recipientRefusals(recipients.map((recipient) => ({
    recipient, responseCode: 450, response: `450 4.2.1 ${text}`, command: "RCPT TO",
  })));

  it(`the largest event of a mail with ${MAX_RECIPIENTS} recipients of 254 characters, all pending and refused, fits MAIL_EVENTS and mail_status`, () => {
    expect(recipients.every((r) => r.length === 254 && isMailbox(r))).toBe(true);
    // Replies of up to REFUSAL_REPLY_BYTES each: ASCII, 2-byte (Cyrillic) and 3-byte (CJK) UTF-8, and control
    // characters (6 bytes each once JSON-escaped).
    for (const text of ["4".repeat(2000), "Ж".repeat(2000), "界".repeat(2000), "\u0001".repeat(2000)]) {
      const { event, record } = sizes(refusalsWithin(refusedWith(text)));
      console.log(`largest event with replies of ${JSON.stringify(text.slice(0, 1))}: ${event} bytes, status record ${record}, limit ${EVENT_MAX_BYTES}`);
      // Headers (Nats-Msg-Id) and the protocol line take a few hundred bytes more.
      expect(Math.max(event, record)).toBeLessThan(EVENT_MAX_BYTES - 4096);
    }
  });

  it("each refusal keeps REFUSAL_REPLY_BYTES of its reply, cut at a character; past REFUSALS_MAX_BYTES the rest keep their code only, and none is left out", () => {
    const refusals = refusedWith("界".repeat(2000));
    expect(refusals.every((x) => Buffer.byteLength(x.smtp!.response) <= REFUSAL_REPLY_BYTES && !x.smtp!.response.includes("\ufffd"))).toBe(true);
    expect(refusals[0]!.smtp!.response).toBe(`450 4.2.1 ${"界".repeat(Math.floor((REFUSAL_REPLY_BYTES - 10) / 3))}`);
    const kept = refusalsWithin(refusals);
    expect(kept.map((x) => [x.recipient, x.transient, x.smtp?.code])).toEqual(refusals.map((x) => [x.recipient, x.transient, 450]));
    expect(Buffer.byteLength(JSON.stringify(kept))).toBeLessThanOrEqual(REFUSALS_MAX_BYTES);
    const full = kept.filter((x) => x.smtp!.response.length > "450 4.2.1".length);
    expect(full.length).toBeGreaterThan(0);
    expect(kept.slice(0, full.length)).toEqual(refusals.slice(0, full.length));
    expect(kept.slice(full.length).map((x) => x.smtp)).toEqual(refusals.slice(full.length).map(() => ({ code: 450, enhanced: "4.2.1", response: "450 4.2.1", command: "RCPT TO" })));
    // A list within the budget is kept as it is.
    expect(refusalsWithin(refusals.slice(0, 10))).toEqual(refusals.slice(0, 10));
  });
});
