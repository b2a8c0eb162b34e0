import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkMime, composeStructured, structuredRecipients } from "../../nodes/gateway/index.js";
import { rawEnvelope } from "../../nodes/gateway/compose.js";
import { Codecs } from "../../protocol/index.js";
import type { StructuredMail } from "../../protocol/index.js";
import { thrownBy } from "../helpers/system.js";

const request = (mail: object) => new TextEncoder().encode(JSON.stringify({ kind: "mail.submit", v: 1, mail }));
/** The structured mail the gateway decodes from `mail`. */
const structuredOf = (mail: object) => Codecs.submitRequest.decode(request(mail)).mail as StructuredMail;


const smuggling = "a\r.\rMAIL FROM:<x@y.com>\r...";

describe("a structured mail's text and html", () => {
  it.each([
    ["text", { text: smuggling }, "mail.text"],
    ["html", { html: `<p>${smuggling}</p>` }, "mail.html"],
    ["text, a CR at its end", { text: "hello\r" }, "mail.text"],
  ])("refuses a CR not followed by LF in %s (SMTP smuggling material): INVALID_MIME naming the field", async (_name, body, field) => {
    const err = await thrownBy(() => structuredOf({ from: "a@b.com", to: ["c@d.com"], ...body }));
    expect(err).toMatchObject({ code: "INVALID_MIME", fields: [{ field, code: "INVALID_MIME" }] });
  });

  it("takes CRLF and LF line ends", () => {
    expect(structuredOf({ from: "a@b.com", to: ["c@d.com"], text: "a\r\nb\nc\r\n", html: "<p>a</p>\r\n<p>b</p>\n" }).text).toBe("a\r\nb\nc\r\n");
  });
});

describe("the message composed from a structured mail passes the raw path's checkMime (defence in depth)", () => {
  it("refuses a bare CR that reached the composer, naming the field mail: nodemailer keeps it in 7bit text", async () => {
    const mail: StructuredMail = { ...structuredOf({ from: "a@b.com", to: ["c@d.com"], text: "ok" }), text: smuggling };
    const composed = await composeStructured(mail, "<m@example.org>", new Date(0));
    expect(composed.toString("latin1")).toContain(smuggling);
    const err = await thrownBy(() => checkMime(composed, "mail"));
    expect(err).toMatchObject({ code: "INVALID_MIME", fields: [{ field: "mail", code: "INVALID_MIME" }] });
    expect(err.message).toMatch(/^the message composed from the mail's fields is broken MIME: .*CR/);
  });

  it("takes what nodemailer composes from any mail the schema takes", async () => {
    const piece = fc.oneof(
      fc.constantFrom("\r\n", "\n", ".", "\r\n.\r\n", "\n.\n", "--", "From ", "=", " ", "\t", "\u0000", "é", "😀", "x".repeat(1200), "<b>"),
      fc.string({ unit: "binary", maxLength: 40 }),
    );
    // A bare CR is refused by the schema (above); taken out so the runs are of mails it takes.
    const body = fc.array(piece, { maxLength: 25 }).map((a) => a.join("").replace(/\r(?!\n)/g, ""));
    const headerText = fc.string({ unit: "grapheme", minLength: 1, maxLength: 60 });
    const mail = fc.record({
      from: fc.oneof(fc.constant("sender@example.org"), headerText.map((name) => ({ name, address: "sender@example.org" }))),
      to: fc.array(fc.constantFrom("a@example.net", "b@example.net", "c@bücher.example"), { minLength: 1, maxLength: 3 }),
      subject: fc.string({ unit: "grapheme", maxLength: 200 }),
      text: fc.option(body, { nil: undefined }),
      html: fc.option(body, { nil: undefined }),
      headers: fc.dictionary(fc.constantFrom("X-Tag", "X-Campaign", "Sender", "In-Reply-To", "Content-Language"), headerText, { maxKeys: 3 }),
      attachments: fc.array(fc.record({
        filename: headerText,
        contentType: fc.constantFrom("text/plain", "text/html; charset=utf-8", "message/rfc822", "application/pdf"),
        content: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString("base64")),
      }), { maxLength: 2 }),
    });
    await fc.assert(
      fc.asyncProperty(mail, async (m) => {
        let decoded: StructuredMail;
        try {
          decoded = structuredOf(m);
        } catch {
          fc.pre(false);
          return;
        }
        checkMime(await composeStructured(decoded, "<m@example.org>", new Date(0)), "mail");
      }),
      { numRuns: 300 },
    );
  });
});

describe("envelope recipients, de-duplicated on both paths (one RCPT TO each)", () => {
  it("a raw mail's, as a structured mail's, first occurrence first", () => {
    const raw = Codecs.submitRequest.decode(request({
      raw: Buffer.from("From: a@b.com\r\n\r\nx").toString("base64"),
      envelope: { from: "a@b.com", to: ["c@d.com", "e@f.com", "c@d.com", "e@f.com", "g@h.com"] },
    })).mail;
    expect("raw" in raw && rawEnvelope(raw.envelope)).toEqual({ from: "a@b.com", to: ["c@d.com", "e@f.com", "g@h.com"] });
    expect(structuredRecipients(structuredOf({ from: "a@b.com", to: ["c@d.com", "e@f.com"], cc: ["c@d.com"], bcc: ["g@h.com", "e@f.com"] })))
      .toEqual(["c@d.com", "e@f.com", "g@h.com"]);
  });
});
