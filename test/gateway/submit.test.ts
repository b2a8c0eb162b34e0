import { describe, expect, it } from "vitest";
import { checkRequestSize, checkServerPayload, maxMessageBytesWithin, maxRequestBytesFor, requestBoundFor } from "../../nodes/gateway/index.js";
import { SERVER_LIMITS } from "../../nodes/local/nats-cluster.js";

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

  it("passes a structured mail just under the limit whose JSON escapes every character (ensure_ascii): CJK and Cyrillic text", () => {
    // Before, the bound allowed 1.45 request bytes per mail byte, and refused a CJK mail of 10,478,952 composed bytes.
    for (const ch of ["\\u4e2d", "\\u0416"]) {
      expect(ch).toHaveLength(6); // as the request carries it: `\uXXXX`
      const utf8 = Buffer.byteLength(JSON.parse(`"${ch}"`) as string);
      const chars = Math.floor((10 * MiB - 4096) / (utf8 * 4 / 3 * 78 / 76)); // composed as base64: about the limit
      const request = JSON.stringify({ kind: "mail.submit", v: 1, mail: { from: "a@b.com", to: ["c@d.com"], subject: "s", text: "" } }).length + chars * ch.length;
      expect(request, ch).toBeGreaterThan(maxRequestBytesFor(10 * MiB)); // over the old bound
      expect(() => checkRequestSize(request, 10 * MiB), ch).not.toThrow();
    }
  });

  it("refuses a request past the bound with MESSAGE_TOO_LARGE naming the request's size, not a guessed mail size", () => {
    const length = requestBoundFor(10 * MiB) + 1;
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

describe("checkServerPayload: the gateway refuses a message limit whose requests its NATS server cannot carry", () => {
  const max = SERVER_LIMITS.maxPayload;
  it("takes the default 10 MiB and the largest limit that fits the servers' 16 MiB max_payload; refuses one byte more", () => {
    const most = maxMessageBytesWithin(max);
    expect(maxRequestBytesFor(most)).toBeLessThanOrEqual(max);
    expect(maxRequestBytesFor(most + 1)).toBeGreaterThan(max);
    expect(() => checkServerPayload(10 * MiB, max)).not.toThrow();
    expect(() => checkServerPayload(most, max)).not.toThrow();
    expect(() => checkServerPayload(most + 1, max)).toThrow(expect.objectContaining({ code: "CONFIG_INVALID" }));
  });

  it("25 MiB against 16 MiB (values-production.yaml had it) is CONFIG_INVALID naming FEN_MAX_MESSAGE_BYTES, max_payload and what fits", () => {
    expect(() => checkServerPayload(25 * MiB, max)).toThrow(expect.objectContaining({
      code: "CONFIG_INVALID", fields: [expect.objectContaining({ field: "FEN_MAX_MESSAGE_BYTES" })],
      message: `FEN_MAX_MESSAGE_BYTES (${25 * MiB}) needs requests of up to ${maxRequestBytesFor(25 * MiB)} bytes, more than the NATS server's max_payload (${max}) carries: `
        + `set it to at most ${maxMessageBytesWithin(max)}, or raise the servers' max_payload`,
    }));
    // NATS's default max_payload (1 MiB) carries a limit of at most ~660 KiB.
    expect(() => checkServerPayload(10 * MiB, MiB)).toThrow(/max_payload \(1048576\)/);
  });

  it("a server limit not known (no INFO yet) is not checked", () => {
    expect(() => checkServerPayload(64 * MiB, undefined)).not.toThrow();
  });
});
