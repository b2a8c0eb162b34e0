import { describe, expect, it } from "vitest";
import { checkMime } from "../../nodes/gateway/index.js";
import type { FenError } from "../../protocol/index.js";

/** The FenError `f` throws. */
function thrown(f: () => unknown): FenError {
  try {
    f();
  } catch (err) {
    return err as FenError;
  }
  throw new Error("nothing was thrown");
}

const mime = (s: string) => () => checkMime(Buffer.from(s, "latin1"));

describe("checkMime: the header section", () => {
  it.each([
    ["CRLF", "\r\nFrom: a@example.org\r\nSubject: s\r\n\r\nhi\r\n"],
    ["LF", "\nFrom: a@example.org\nSubject: s\n\nhi\n"],
  ])("refuses a message that starts with an empty line (%s): its header section is empty, From and Subject would be body", (_eol, text) => {
    const err = thrown(mime(text));
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
