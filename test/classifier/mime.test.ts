import { describe, expect, it } from "vitest";
import { decodeBytes, decodeHeaderValue, parseMime, parseParams } from "../../nodes/classifier/mime.js";

const crlf = (s: string): Buffer => Buffer.from(s.replace(/\n/g, "\r\n"), "latin1");

describe("parseMime", () => {
  // A hang guard, not a speed goal: body lines read as a part's headers (after "--bx", which starts with the
  // boundary) each searched the rest of the mail for a colon; 512k such lines took 4.1 s, 8 MiB about 2 min.
  it("reads a part of 2M colon-less header lines (6 MB) in one pass", () => {
    const lines = "a\r\n".repeat(2_000_000);
    const v = parseMime(Buffer.from(`Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--bx\r\n${lines}--b--\r\n`, "latin1"));
    expect(v.subject).toBe("s");
    expect(v.text).toContain("hello");
  }, 30_000);

  it("reads a plain mail: subject and body, no transport headers", () => {
    const v = parseMime(Buffer.from("Received: from x\nSubject: Hello there\nFrom: a@b.c\n\nBody text\n"));
    expect(v.subject).toBe("Hello there");
    expect(v.text).toBe("Body text\n");
    expect(v.html).toBe("");
    expect(v.textParts).toBe(1);
    expect(v.attachments).toEqual([]);
  });

  it("walks multipart/alternative and mixed, decoding base64 and quoted-printable, CRLF or LF", () => {
    const raw = crlf(
      [
        'Subject: =?utf-8?B?SMOpbGxv?= =?utf-8?Q?_w=C3=B6rld?=',
        'Content-Type: multipart/mixed; boundary="outer"',
        "",
        "preamble",
        "--outer",
        'Content-Type: multipart/alternative; boundary="inner"',
        "",
        "--inner",
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "Caf=E9 cr=\n=E8me",
        "--inner",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        "",
        Buffer.from("<p>Café <b>crème</b></p>").toString("base64"),
        "--inner--",
        "--outer",
        'Content-Type: application/pdf; name="offer.pdf"',
        "Content-Disposition: attachment",
        "Content-Transfer-Encoding: base64",
        "",
        "AAAAAAAA",
        "--outer--",
        "epilogue",
      ].join("\n"),
    );
    const v = parseMime(raw);
    expect(v.subject).toBe("Héllo wörld");
    expect(v.text).toBe("Café crème");
    expect(v.html).toBe("<p>Café <b>crème</b></p>");
    expect(v.attachments).toEqual([{ contentType: "application/pdf", filename: "offer.pdf", size: 6 }]);
    expect([v.textParts, v.htmlParts]).toEqual([1, 1]);
  });

  it("decodes Windows-1252 for Latin-1 labels (Node's decoder does not)", () => {
    expect(decodeBytes(Buffer.from([0x49, 0x92, 0x6d]), "iso-8859-1")).toBe("I’m");
    expect(decodeBytes(Buffer.from([0x80]), "")).toBe("€");
    expect(decodeBytes(Buffer.from("Grüße"), "")).toBe("Grüße");
  });

  it("decodes 7-bit ISO-2022-JP bodies and subjects", () => {
    const jp = Buffer.from([0x1b, 0x24, 0x42, 0x46, 0x7c, 0x4b, 0x5c, 0x1b, 0x28, 0x42]).toString("latin1");
    const v = parseMime(Buffer.from(`Subject: =?iso-2022-jp?B?${Buffer.from(jp, "latin1").toString("base64")}?=\nContent-Type: text/plain; charset=iso-2022-jp\n\n${jp}\n`, "latin1"));
    expect(v.subject).toBe("日本");
    expect(v.text.trim()).toBe("日本");
  });

  it("joins format=flowed soft line breaks", () => {
    const v = parseMime(Buffer.from("Content-Type: text/plain; format=flowed; delsp=yes\n\nsplit wo \nrd here\n"));
    expect(v.text).toBe("split word here\n");
  });

  it("joins quoted flowed paragraphs by depth, and keeps the signature separator", () => {
    const v = parseMime(Buffer.from("Content-Type: text/plain; format=flowed\n\n> a \n> b\n>> c \n>> d\n-- \nsig\n"));
    expect(v.text).toBe("> a b\n>> c d\n-- \nsig\n");
  });

  // A 3 MB paragraph took 309 s (each line copied the paragraph so far); linear now, so this finishes in well
  // under a second. The limit is the test's timeout: a hang guard, not a speed goal.
  it("unflows a mail of one 3 MB soft-broken paragraph (delsp=yes)", { timeout: 30_000 }, () => {
    const line = "Dies ist ein langer Absatz mit weichen Umbruechen \r\n";
    const body = line.repeat(Math.ceil(3_000_000 / line.length));
    const v = parseMime(Buffer.from(`Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\n${body}`));
    expect(v.text.startsWith("Dies ist ein langer Absatz mit weichen UmbruechenDies ist")).toBe(true);
  });

  it("reads embedded message/rfc822 bodies as text", () => {
    const v = parseMime(
      Buffer.from('Subject: fwd\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner body\n--b--\n'),
    );
    expect(v.subject).toBe("fwd");
    expect(v.text).toContain("inner body");
  });

  it("never throws on hostile input and bounds nesting", () => {
    let nested = "Content-Type: multipart/mixed; boundary=b0\n\n";
    for (let i = 1; i < 40; i++) nested += `--b${i - 1}\nContent-Type: multipart/mixed; boundary=b${i}\n\n`;
    nested += "--b39\n\ndeep text\n";
    expect(() => parseMime(Buffer.from(nested))).not.toThrow();
    expect(parseMime(Buffer.from(nested)).text).toBe("");
    for (const junk of ["", "\n\n\n", "Content-Type: multipart/mixed\n\n--", "Subject: =?x?Q?=ZZ?=\n\n", "\x00\xff\xfe"]) {
      expect(() => parseMime(Buffer.from(junk, "latin1"))).not.toThrow();
    }
  });

  it("parses RFC 2045 / 2231 parameters", () => {
    const p = parseParams(`attachment; filename*0*=utf-8''%C3%A9t; filename*1="e.txt"; size=3`);
    expect(p.main).toBe("attachment");
    expect(p.params.get("filename")).toBe("ét" + "e.txt");
    expect(parseParams('text/plain; charset="us-ascii"').params.get("charset")).toBe("us-ascii");
  });

  it("decodes encoded words and raw UTF-8 in headers", () => {
    expect(decodeHeaderValue("=?ISO-8859-1?Q?Andr=E9?= Pirard")).toBe("André Pirard");
    expect(decodeHeaderValue(Buffer.from("Prüfung").toString("latin1"))).toBe("Prüfung");
  });
});
