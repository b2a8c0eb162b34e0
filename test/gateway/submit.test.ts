import { describe, expect, it } from "vitest";
import { checkRequestSize, maxRequestBytesFor } from "../../nodes/gateway/index.js";

const MiB = 1024 * 1024;

/** The bytes of a mail.submit request carrying `size` bytes of raw mail as base64 wrapped at `columns` with `eol` (0: not wrapped). */
function rawRequestBytes(size: number, columns: number, eol: string): number {
  const base64 = Buffer.alloc(size, 0x41).toString("base64");
  const wrapped = columns ? base64.replace(new RegExp(`.{${columns}}`, "g"), `$&${eol}`) : base64;
  return Buffer.byteLength(JSON.stringify({ kind: "mail.submit", v: 1, mail: { raw: wrapped, envelope: { from: "a@b.com", to: ["c@d.com"] } } }));
}

describe("checkRequestSize: a bound on the request before it is decoded, generous; the decoded size decides", () => {
  it.each([
    ["CRLF at 76 columns (JSON writes each CRLF as 4 bytes)", 76, "\r\n"],
    ["CRLF at 64 columns (PEM)", 64, "\r\n"],
    ["LF at 76 columns", 76, "\n"],
    ["unwrapped", 0, ""],
  ])("passes a request carrying a raw mail just under the 10 MiB limit, base64 %s", (_name, columns, eol) => {
    const length = rawRequestBytes(10_400_000, columns, eol);
    expect(() => checkRequestSize(length, 10 * MiB)).not.toThrow();
    // And one of exactly the limit: its verdict is the decoded size's.
    expect(() => checkRequestSize(rawRequestBytes(10 * MiB, columns, eol), 10 * MiB)).not.toThrow();
  });

  it("refuses a request past the bound with MESSAGE_TOO_LARGE naming the request's size, not a guessed mail size", () => {
    const length = maxRequestBytesFor(10 * MiB) + 1;
    let err: unknown;
    try {
      checkRequestSize(length, 10 * MiB);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({
      code: "MESSAGE_TOO_LARGE", fields: [{ field: "mail", code: "MESSAGE_TOO_LARGE" }],
      message: `the request is ${length} bytes, more than one carrying a message of at most ${10 * MiB} bytes (the limit) takes (${length - 1})`,
    });
  });
});
