import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  BodyObjects, Codecs, ErrorCodes, FenError, eventSubject, isMailId, mailIdFromContent, mailIdFromIdempotencyKey, workSubject, isMailbox,
  canTransition, MAIL_STATES,
} from "../../protocol/index.js";

describe("error registry", () => {
  it("ERRORS.md documents exactly the registry, with the same retry class and text", () => {
    const md = readFileSync(new URL("../../protocol/ERRORS.md", import.meta.url), "utf8");
    const rows = [...md.matchAll(/^\| `([A-Z_]+)` \| (\w+) \| (.+) \|$/gm)].map((m) => [m[1], m[2], m[3]]);
    const table = Object.entries(ErrorCodes).map(([code, s]) => [code, s.retry, s.doc]);
    expect(rows).toEqual(table);
  });
});

describe("subjects", () => {
  it("builds subjects from validated tokens only", () => {
    const id = mailIdFromIdempotencyKey("k1");
    expect(isMailId(id)).toBe(true);
    expect(workSubject(id)).toBe(`fen.work.${id}`);
    expect(eventSubject(id, "Sent")).toBe(`fen.events.${id}.Sent`);
    expect(() => workSubject("a.b")).toThrow(FenError);
    expect(() => workSubject("example.com")).toThrow(/not a mail id/);
    expect(() => eventSubject(id, "Nope" as never)).toThrow(FenError);
  });
  it("derives the same mail id from the same idempotency key", () => {
    expect(mailIdFromIdempotencyKey("x")).toBe(mailIdFromIdempotencyKey("x"));
    expect(mailIdFromIdempotencyKey("x")).not.toBe(mailIdFromIdempotencyKey("y"));
  });
  it("derives a keyless mail's id in its own namespace: no idempotency key gives it", () => {
    const h = "ab".repeat(32);
    expect(isMailId(mailIdFromContent(h, 7))).toBe(true);
    expect(mailIdFromContent(h, 7)).not.toBe(mailIdFromContent(h, 8));
    for (const key of [`content:${h}:7`, `${h}:7`, `content:${h}`]) expect(mailIdFromIdempotencyKey(key)).not.toBe(mailIdFromContent(h, 7));
  });
});

describe("body object names", () => {
  it("name a mail's body <mailId>.<16 hex digits>, and give back the mail of such a name only", () => {
    const id = mailIdFromIdempotencyKey("k-body");
    const name = BodyObjects.name(id, Uint8Array.from([0, 1, 2, 3, 0xfc, 0xfd, 0xfe, 0xff]));
    expect(name).toBe(`${id}.00010203fcfdfeff`);
    expect(BodyObjects.mailIdOf(name)).toBe(id);
    for (const other of [`${id}.00010203fcfdfef`, `${id}.00010203FCFDFEFF`, `${id}.00010203fcfdfeff.x`, `x${id}.00010203fcfdfeff`, id, "manual-upload.bin", ""]) {
      expect(BodyObjects.mailIdOf(other), other).toBeUndefined();
    }
    expect(() => BodyObjects.name("not-a-mail" as never, new Uint8Array(8))).toThrow(FenError);
    expect(() => BodyObjects.name(id, new Uint8Array(4))).toThrow(FenError);
  });
});

describe("addresses", () => {
  it.each([
    ["a@example.com", true], ["first.last+tag@sub.example.org", true], ["a@b", false], ["@example.com", false],
    ["a..b@example.com", false], ["a@exa_mple.com", false], ["a b@example.com", false], ["a@example.com\r\nBcc: x@y.z", false],
    [`${"x".repeat(65)}@example.com`, false],
  ])("%s → %s", (addr, ok) => expect(isMailbox(addr)).toBe(ok));
});

describe("codecs", () => {
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  it("lists every bad field with its registry code", () => {
    const bad = { kind: "mail.submit", v: 1, mail: { from: "nope", to: ["ok@example.com", "bad@"], subject: "x\r\nBcc: evil@example.com" } };
    try {
      Codecs.submitRequest.decode(enc(bad));
      expect.unreachable();
    } catch (err) {
      const e = err as FenError;
      expect(e.code).toBe("INVALID_ADDRESS");
      expect(e.fields.map((f) => [f.field, f.code])).toEqual([
        ["mail.from", "INVALID_ADDRESS"], ["mail.to.1", "INVALID_ADDRESS"], ["mail.subject", "HEADER_INJECTION"],
      ]);
    }
  });
  it("tells an input written by a newer version (higher v, or only unknown fields) from a malformed one", () => {
    const ev = { kind: "mail.event", v: 1, eventId: "e", mailId: "a".repeat(26), state: "Sent", attempt: 1, at: new Date(0).toISOString(), node: "n", recipients: [], detail: {} };
    expect(Codecs.mailEvent.decode(enc(ev)).state).toBe("Sent");
    expect(Codecs.mailEvent.fromNewerVersion(enc({ ...ev, v: 2, shape: "anything" }))).toBe(true);
    expect(Codecs.mailEvent.fromNewerVersion(enc({ ...ev, traceId: "t", detail: { smtp: { code: 250, response: "250 ok", latencyMs: 3 } } }))).toBe(true);
    // Malformed at this version: a known field wrong, also next to an unknown one; another kind; not JSON.
    expect(Codecs.mailEvent.fromNewerVersion(enc({ ...ev, attempt: -1 }))).toBe(false);
    expect(Codecs.mailEvent.fromNewerVersion(enc({ ...ev, attempt: "one", traceId: "t" }))).toBe(false);
    expect(Codecs.mailEvent.fromNewerVersion(enc({ ...ev, kind: "mail.work", v: 2 }))).toBe(false);
    expect(Codecs.mailEvent.fromNewerVersion(new TextEncoder().encode("{not json"))).toBe(false);
  });
  it("takes an internationalised domain in its ASCII form; a non-ASCII local part is refused, saying why", () => {
    const req = Codecs.submitRequest.decode(enc({
      kind: "mail.submit", v: 1,
      mail: { raw: "", envelope: { from: "info@bücher.example", to: ["kunde@münchen.example", "plain@example.com"] } },
    }));
    expect("raw" in req.mail && req.mail.envelope).toEqual({ from: "info@xn--bcher-kva.example", to: ["kunde@xn--mnchen-3ya.example", "plain@example.com"] });
    const s = Codecs.submitRequest.decode(enc({ kind: "mail.submit", v: 1, mail: { from: { name: "Jörg", address: "j@bücher.example" }, to: ["a@example.com"] } }));
    expect("from" in s.mail && s.mail.from).toEqual({ name: "Jörg", address: "j@xn--bcher-kva.example" });
    try {
      Codecs.submitRequest.decode(enc({ kind: "mail.submit", v: 1, mail: { from: "a@example.com", to: ["jörg@example.com"] } }));
      expect.unreachable();
    } catch (err) {
      expect((err as FenError).fields).toEqual([{ field: "mail.to.0", code: "INVALID_ADDRESS", message: expect.stringContaining("SMTPUTF8") }]);
    }
  });
  it("rejects an unknown version with UNSUPPORTED_VERSION on the field v, for every kind a codec takes", () => {
    expect(() => Codecs.submitRequest.decode(enc({ kind: "mail.submit", v: 2, mail: {} })))
      .toThrow(expect.objectContaining({ code: "UNSUPPORTED_VERSION", fields: [expect.objectContaining({ field: "v" })] }));
    for (const kind of ["mail.quarantine.list", "mail.quarantine.release", "mail.quarantine.delete"]) {
      expect(() => Codecs.quarantineRequest.decode(enc({ kind, v: 2 }))).toThrow(expect.objectContaining({ code: "UNSUPPORTED_VERSION", message: `${kind} v2 is not supported (speaks v1)` }));
    }
  });
  it("a version that is not a number is a bad field, not an unsupported version", () => {
    expect(() => Codecs.classifyRequest.decode(enc({ kind: "mail.classify", v: "1", mail: {} })))
      .toThrow(expect.objectContaining({ code: "BAD_REQUEST", fields: expect.arrayContaining([expect.objectContaining({ field: "v" })]) }));
  });
  it("rejects non-JSON with BAD_REQUEST", () => {
    expect(() => Codecs.submitRequest.decode(new Uint8Array([0xff, 0x00])))
      .toThrow(expect.objectContaining({ code: "BAD_REQUEST" }));
  });
});

describe("life cycle", () => {
  it("allows the happy path and forbids sending from a terminal state", () => {
    const path = ["PendingProcessing", "Processing", "Validated", "DeliveryScheduled", "Sent"] as const;
    for (let i = 1; i < path.length; i++) expect(canTransition(path[i - 1]!, path[i]!)).toBe(true);
    for (const s of MAIL_STATES) expect(canTransition("Sent", s)).toBe(false);
  });
});

describe("vocabularies kept in two places", () => {
  it("the pure ledger's states are exactly the protocol's life-cycle states", async () => {
    const { MailState } = await import("../../ledger/index.js");
    expect(Object.values(MailState)).toEqual([...MAIL_STATES]);
  });
});
