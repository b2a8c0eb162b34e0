import { describe, expect, it } from "vitest";
import { Codecs, mailIdFromIdempotencyKey } from "../../protocol/index.js";
import type { MailEvent } from "../../protocol/index.js";
import { decodeStored } from "../../nodes/common/js-errors.js";

/**
 * A stored record that a request's answer reads and cannot decode is no
 * fault of the request: mail.status answered BAD_REQUEST ("a fault in the
 * request") for an event written by a newer version during a rolling
 * upgrade, and the CLI blamed the user.
 */
describe("decodeStored", () => {
  const event: MailEvent = {
    kind: "mail.event", v: 1, eventId: "e", mailId: mailIdFromIdempotencyKey("decode-stored"), state: "Sent", attempt: 1,
    at: new Date(0).toISOString(), node: "n", recipients: ["r@example.net"], detail: {},
  } as unknown as MailEvent;
  const encoded = () => Codecs.mailEvent.encode(Codecs.mailEvent.parse({ ...event, eventId: `${event.mailId}.Sent.1` }));

  it("decodes what decodes", () => {
    expect(decodeStored(Codecs.mailEvent, encoded(), "event 1").state).toBe("Sent");
  });

  it("a newer version's record (a higher v, or a field this version does not know): STORE_UNAVAILABLE, retry", () => {
    const json = JSON.parse(Buffer.from(encoded()).toString());
    for (const newer of [{ ...json, v: 2 }, { ...json, detail: { ...json.detail, fromTheFuture: 1 } }]) {
      expect(() => decodeStored(Codecs.mailEvent, Buffer.from(JSON.stringify(newer)), "event 7 of MAIL_EVENTS"))
        .toThrow(expect.objectContaining({ code: "STORE_UNAVAILABLE", message: expect.stringMatching(/^event 7 of MAIL_EVENTS was written by a newer version/) }));
    }
  });

  it("anything else: INTERNAL naming the record, never BAD_REQUEST", () => {
    for (const junk of ["not json", JSON.stringify({ ...JSON.parse(Buffer.from(encoded()).toString()), attempt: "one" })]) {
      expect(() => decodeStored(Codecs.mailEvent, Buffer.from(junk), "event 8 of MAIL_EVENTS"))
        .toThrow(expect.objectContaining({ code: "INTERNAL", message: expect.stringMatching(/^event 8 of MAIL_EVENTS does not decode/) }));
    }
  });
});
