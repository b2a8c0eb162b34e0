import { describe, expect, it } from "vitest";
import { checkMime } from "../../nodes/gateway/index.js";
import { thrownBy } from "../helpers/system.js";


const mime = (s: string) => () => checkMime(Buffer.from(s, "latin1"));

describe("checkMime: the header section", () => {
  it.each([
    ["CRLF", "\r\nFrom: a@example.org\r\nSubject: s\r\n\r\nhi\r\n"],
    ["LF", "\nFrom: a@example.org\nSubject: s\n\nhi\n"],
  ])("refuses a message that starts with an empty line (%s): its header section is empty, From and Subject would be body", async (_eol, text) => {
    const err = await thrownBy(mime(text));
    expect(err).toMatchObject({ code: "INVALID_MIME", fields: [{ field: "mail.raw", code: "INVALID_MIME" }] });
    expect(err.message).toMatch(/no header section/);
  });

  it("takes a part that starts with an empty line: its header section is empty, the defaults apply (RFC 2046 5.1.1)", () => {
    expect(checkMime(Buffer.from("From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nhi\r\n--b--\r\n")))
      .toEqual({ messageId: undefined });
  });

  it("takes a message that is a header section only", () => {
    expect(checkMime(Buffer.from("From: a@example.org\r\nMessage-ID: <h@example.org>\r\n"))).toEqual({ messageId: "<h@example.org>" });
  });
});

describe("checkMime: a raw message's own Message-ID (kept as the mail's, copied into the work item)", () => {
  const withId = (id: string) => mime(`From: a@example.org\r\nMessage-ID: ${id}\r\nSubject: s\r\n\r\nhi\r\n`);
  /** A comment of `n` octets once unfolded (a fold "CRLF SP" unfolds to one SP), folded into lines of 900. */
  const longComment = (n: number) => `(${Array.from({ length: n - 2 }, (_, i) => (i % 900 === 899 ? "\r\n " : "c")).join("")})`;

  it.each([
    ["the reviewer's: 170 folded lines of control characters", `<x@y>\r\n${Array.from({ length: 170 }, () => ` ${"\u0001".repeat(990)}`).join("\r\n")}`, /octets long/],
    ["one octet over 998, unfolded", `<a@example.org> ${longComment(999 - "<a@example.org> ".length)}`, /999 octets long; at most 998/],
    ["a control character", "<a\u0001b@example.org>", /control character/],
    ["a TAB-free DEL", "<a\u007fb@example.org>", /control character/],
    ["empty", "", /empty/],
  ])("refuses %s: INVALID_MIME on mail.raw", async (_name, id, why) => {
    const err = await thrownBy(withId(id));
    expect(err).toMatchObject({ code: "INVALID_MIME", fields: [{ field: "mail.raw", code: "INVALID_MIME" }] });
    expect(err.message).toMatch(why);
  });

  it.each([
    ["a plain msg-id", "<20240101.abc$1@mail.example.org>", "<20240101.abc$1@mail.example.org>"],
    // Not msg-ids (RFC 5322 3.6.4), but the sender's to keep, as a relay keeps them.
    ["UTF-8 (RFC 6532), read as latin1 octets", Buffer.from("<abc@bücher.example>").toString("latin1"), Buffer.from("<abc@bücher.example>").toString("latin1")],
    ["no angle brackets", "a@example.org", "a@example.org"],
    ["no @", "<abcdef>", "<abcdef>"],
    ["an empty right side", "<abc@>", "<abc@>"],
    ["white space inside the brackets", "<a b@example.org>", "<a b@example.org>"],
    ["a domain literal on the right", "<x@[192.0.2.1]>", "<x@[192.0.2.1]>"],
    ["a comment after it", "<odd@example.org> (comment)", "<odd@example.org> (comment)"],
    ["a comment before it", "(by us) <odd@example.org>", "(by us) <odd@example.org>"],
    ["folded before it", "\r\n  <folded@example.org>", "<folded@example.org>"],
    ["exactly 998 octets, unfolded", `<a@example.org> ${longComment(998 - "<a@example.org> ".length)}`, undefined],
  ])("keeps %s", (_name, id, kept) => {
    const { messageId } = withId(id)();
    if (kept !== undefined) expect(messageId).toBe(kept);
    expect(messageId?.length).toBeLessThanOrEqual(998);
  });
});
