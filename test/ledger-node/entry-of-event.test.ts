import { describe, expect, it } from "vitest";
import { decodeEntry, encodeEntry } from "../../ledger/index.js";
import { entryOfEvent } from "../../nodes/ledger/entry-of-event.js";
import { mailIdFromIdempotencyKey } from "../../protocol/index.js";
import type { MailEvent } from "../../protocol/index.js";

describe("entryOfEvent", () => {
  const key = new Uint8Array(32).fill(3);
  const mailId = mailIdFromIdempotencyKey("entry-of-event");
  const deferred = (inDoubt: boolean | undefined): MailEvent => ({
    kind: "mail.event", v: 1, eventId: `${mailId}.Deferred.1`, mailId, state: "Deferred", attempt: 1, at: "2026-11-29T10:00:00.000Z", node: "n",
    recipients: ["b@example.net"],
    detail: { error: { code: "SMTP_TRANSIENT", message: "connection closed" }, ...(inDoubt === undefined ? {} : { inDoubt }) },
  });

  it("keeps an attempt's doubt (the mail may have been delivered twice) in the signed entry", () => {
    const entry = entryOfEvent(deferred(true), key);
    expect(entry.detail).toEqual({ errorCode: "SMTP_TRANSIENT", inDoubt: true });
    expect(decodeEntry(encodeEntry(entry)).detail.inDoubt).toBe(true);
  });

  it("records no doubt field when there is none", () => {
    expect(entryOfEvent(deferred(false), key).detail).toEqual({ errorCode: "SMTP_TRANSIENT" });
    expect(entryOfEvent(deferred(undefined), key).detail).toEqual({ errorCode: "SMTP_TRANSIENT" });
  });
});
