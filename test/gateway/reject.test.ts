import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { DiscardPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { Codecs, DUPLICATE_WINDOW_MS, Names, mailIdFromIdempotencyKey, workSubject } from "../../protocol/index.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { createMetrics } from "../../nodes/common/metrics.js";
import { createSubmitHandler } from "../../nodes/gateway/submit.js";
import type { FenError } from "../../protocol/index.js";
import type { Actor } from "../../nodes/common/actor.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { bodyObjects, connectAndProvision, startGateway, status, structured, submit, testLog, thrownBy } from "../helpers/system.js";
import { pendingEvent } from "../../nodes/gateway/status.js";

let cluster: TestCluster;
let nc: NatsConnection;
let gateway: Actor;
beforeAll(async () => {
  cluster = await startTestCluster();
  nc = await connectAndProvision(cluster.urls);
  gateway = await startGateway(nc, { FEN_MAX_MESSAGE_BYTES: String(64 * 1024) });
});
afterAll(async () => { await gateway?.drain(); await nc?.close(); await cluster?.dispose(); });

async function stored(): Promise<{ work: number; status: number; events: number; bodies: number }> {
  const jsm = await jetstreamManager(nc);
  const n = async (s: string) => (await jsm.streams.info(s)).state.messages;
  return { work: await n(Names.workStream), status: await n(`KV_${Names.statusBucket}`), events: await n(Names.eventsStream), bodies: await n(`OBJ_${Names.bodiesBucket}`) };
}

async function rejected(req: unknown): Promise<FenError> {
  try {
    await submit(nc, req as never);
  } catch (err) {
    return err as FenError;
  }
  throw new Error("request was accepted");
}

const attach = (a: Record<string, string>) => ({ ...structured(9), mail: { ...structured(9).mail, attachments: [a] } });
const raw = (s: string, to = ["rcpt@example.net"]) => ({ kind: "mail.submit", v: 1, mail: { raw: Buffer.from(s).toString("base64"), envelope: { from: "a@example.org", to } } });

describe("rejected submissions: stable code, offending field, nothing stored", () => {
  it.each([
    ["bad address", { ...structured(1), mail: { ...structured(1).mail, to: ["not-an-address"] } }, "INVALID_ADDRESS", "mail.to.0"],
    ["bad envelope address", raw("From: a@example.org\r\n\r\nhi", ["x@@y"]), "INVALID_ADDRESS", "mail.envelope.to.0"],
    ["CRLF in subject", { ...structured(2), mail: { ...structured(2).mail, subject: "hi\r\nBcc: victim@example.com" } }, "HEADER_INJECTION", "mail.subject"],
    ["CRLF in a header value", { ...structured(3), mail: { ...structured(3).mail, headers: { "X-Tag": "a\nb" } } }, "HEADER_INJECTION", "mail.headers.X-Tag"],
    ["oversize body", structured(4, { text: "x".repeat(70 * 1024) }), "MESSAGE_TOO_LARGE", "mail"],
    ["oversize raw", raw(`From: a@example.org\r\n\r\n${"y".repeat(70 * 1024)}`), "MESSAGE_TOO_LARGE", "mail"],
    ["broken MIME: unclosed multipart", raw("From: a@example.org\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\npart\r\n"), "INVALID_MIME", "mail.raw"],
    ["broken MIME: no boundary", raw("From: a@example.org\r\nContent-Type: multipart/mixed\r\n\r\nbody"), "INVALID_MIME", "mail.raw"],
    ["broken MIME: garbage header", raw("this is not a header\r\n\r\nbody"), "INVALID_MIME", "mail.raw"],
    ["broken MIME: bad base64", raw("From: a@example.org\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!"), "INVALID_MIME", "mail.raw"],
    ["no recipients", { ...structured(5), mail: { ...structured(5).mail, to: [] } }, "NO_RECIPIENTS", "mail.to"],
    ["raw with no envelope recipient", raw("From: a@example.org\r\n\r\nhi", []), "NO_RECIPIENTS", "mail.envelope.to"],
    ["NUL in the subject", { ...structured(6), mail: { ...structured(6).mail, subject: "a\u0000b" } }, "HEADER_INJECTION", "mail.subject"],
    ["ESC in an attachment's name", attach({ filename: "x\u001b[31m.txt", content: "aGk=" }), "HEADER_INJECTION", "mail.attachments.0.filename"],
    ["a custom Content-Type header", { ...structured(7), mail: { ...structured(7).mail, headers: { "Content-Type": "multipart/mixed; boundary=xyz" } } }, "BAD_REQUEST", "mail.headers.Content-Type"],
    ["a custom Bcc header", { ...structured(8), mail: { ...structured(8).mail, headers: { bcc: "victim@example.com" } } }, "BAD_REQUEST", "mail.headers.bcc"],
    ["a multipart attachment type", attach({ filename: "x", contentType: "multipart/mixed; boundary=zz", content: "aGk=" }), "BAD_REQUEST", "mail.attachments.0.contentType"],
    ["base64 with bad padding", attach({ filename: "x", content: "abcde=" }), "BAD_REQUEST", "mail.attachments.0.content"],
    ["base64 of an impossible length", attach({ filename: "x", content: "abcde" }), "BAD_REQUEST", "mail.attachments.0.content"],
    ["raw with a bare CR (SMTP smuggling)", raw("From: a@example.org\r\n\r\nhi\r.\r\nMAIL FROM:<x@y.z>\r\n"), "INVALID_MIME", "mail.raw"],
    ["a bare CR in the text (SMTP smuggling; nodemailer keeps it in 7bit)", { ...structured(21), mail: { from: "a@b.com", to: ["c@d.com"], text: "a\r.\rMAIL FROM:<x@y.com>\r..." } }, "INVALID_MIME", "mail.text"],
    ["a bare CR in the html", { ...structured(22), mail: { ...structured(22).mail, html: "<p>a\r.\rb</p>" } }, "INVALID_MIME", "mail.html"],
    ["raw with an empty Message-ID", raw("From: a@example.org\r\nMessage-ID:\r\n\r\nhi"), "INVALID_MIME", "mail.raw"],
    ["raw with two Message-ID fields (readers take either)", raw("From: a@example.org\r\nMessage-ID: <one@example.org>\r\nSubject: s\r\nMessage-Id: <two@example.org>\r\n\r\nhi"), "INVALID_MIME", "mail.raw"],
    ["raw with two From fields", raw("From: a@example.org\r\nFrom: ceo@example.org\r\n\r\nhi"), "INVALID_MIME", "mail.raw"],
    ["raw with a part of two Content-Types", raw("From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\nhi\r\n--b--\r\n"), "INVALID_MIME", "mail.raw"],
    ["a subject word too long to fold into 998-octet lines", { ...structured(14), mail: { ...structured(14).mail, subject: "x".repeat(990) } }, "BAD_REQUEST", "mail.subject"],
    ["a subject word too long to fold once the white space before it is counted", { ...structured(20), mail: { ...structured(20).mail, subject: `${" ".repeat(9)}${"y".repeat(989)}` } }, "BAD_REQUEST", "mail.subject"],
    ["a header value word too long to fold", { ...structured(15), mail: { ...structured(15).mail, headers: { "X-Long-Name": "y".repeat(986) } } }, "BAD_REQUEST", "mail.headers.X-Long-Name"],
    ["raw with a Message-ID of 40,000 octets (a folded comment; the Message-ID is copied into the work item)", raw(`From: a@example.org\r\nMessage-ID: <long@example.org> (${Array.from({ length: 40 }, () => "m".repeat(990)).join("\r\n ")})\r\n\r\nhi`), "INVALID_MIME", "mail.raw"],
    ["raw with control characters in its Message-ID", raw("From: a@example.org\r\nMessage-ID: <a\u0001b@example.org>\r\n\r\nhi"), "INVALID_MIME", "mail.raw"],
    ["raw that starts with an empty line (its From and Subject would be body)", raw("\r\nFrom: a@example.org\r\nSubject: s\r\n\r\nhi"), "INVALID_MIME", "mail.raw"],
    ["raw with a 999-octet line", raw(`From: a@example.org\r\n\r\nok\r\n${"z".repeat(999)}\r\n`), "INVALID_MIME", "mail.raw"],
    ["an empty custom header value (it would be left out)", { ...structured(16), mail: { ...structured(16).mail, headers: { "X-Empty": " " } } }, "BAD_REQUEST", "mail.headers.X-Empty"],
    ["one custom header name twice, in two cases", { ...structured(17), mail: { ...structured(17).mail, headers: { "X-Dup": "a", "x-dup": "b" } } }, "BAD_REQUEST", "mail.headers.x-dup"],
    ["a custom Resent-Bcc header", { ...structured(18), mail: { ...structured(18).mail, headers: { "Resent-Bcc": "hidden@example.net" } } }, "BAD_REQUEST", "mail.headers.Resent-Bcc"],
    ["a custom header named __proto__", JSON.parse(JSON.stringify(structured(19)).replace('"headers":{}', '"headers":{"__proto__":"x"}')) as object, "HEADER_INJECTION", "mail.headers.__proto__"],
    ["unknown version", { kind: "mail.submit", v: 9, mail: {} }, "UNSUPPORTED_VERSION", undefined],
    ["not a submit", { hello: "world" }, "BAD_REQUEST", "kind"],
    // Both once crashed the gateway: the error text quoted the key, and NATS throws on CR/LF in a header.
    ["quoted in the error: LF in a custom header's name", { ...structured(12), mail: { ...structured(12).mail, headers: { "X-Evil\nBcc": "v@example.com" } } }, "HEADER_INJECTION", undefined],
    ["quoted in the error: an unknown key with LF in it", { ...structured(13), "x\ny": 1 }, "BAD_REQUEST", undefined],
  ])("%s → %s", async (_name, req, code, field) => {
    const before = await stored();
    const err = await rejected(req);
    expect(err.code).toBe(code);
    if (field !== undefined) expect(err.fields.map((f) => f.field)).toContain(field);
    expect(await stored()).toEqual(before);
  });

  it("accepts a well-formed raw multipart message", async () => {
    const ok = raw("From: a@example.org\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1--\r\n");
    const r = await submit(nc, ok);
    expect(r.duplicate).toBe(false);
    expect((await stored()).work).toBe(1);
  });
});

describe("raw messages as stored for delivery", () => {
  /** The bytes the gateway stored for delivery (the work item's inline body). */
  async function storedBytes(mailId: string): Promise<string> {
    const m = await (await jetstreamManager(nc)).direct.getMessage(Names.workStream, { seq: 1, next_by_subj: workSubject(mailId) });
    const item = Codecs.workItem.decode(m!.data);
    return "inline" in item.body ? Buffer.from(item.body.inline, "base64").toString("latin1") : "";
  }
  it("keeps a raw message's own Message-ID, and the reply names it (the one recipients see)", async () => {
    const r = await submit(nc, raw("From: a@example.org\r\nMessage-ID:\r\n  <own-1@example.org>\r\n\r\nhi"));
    expect(r.messageId).toBe("<own-1@example.org>");
    const bytes = await storedBytes(r.mailId);
    expect(bytes.match(/^message-id:/gim)).toHaveLength(1);
  });
  it("adds a Message-ID to a raw message with LF line ends whose body has a blank CRLF line", async () => {
    const r = await submit(nc, raw("From: a@example.org\nSubject: x\n\nMessage-ID: <inbody@x>\r\n\r\nx"));
    expect(r.messageId).toMatch(/^<.+@.+>$/);
    expect((await storedBytes(r.mailId)).startsWith(`Message-ID: ${r.messageId}\r\n`)).toBe(true);
  });
  it("accepts a raw message whose longest line is 998 octets, with LF or CRLF line ends", async () => {
    for (const eol of ["\r\n", "\n"]) {
      const r = await submit(nc, raw(`From: a@example.org${eol}Subject: ${eol.length}${eol}${eol}${"w".repeat(998)}${eol}${"v".repeat(998)}`));
      expect(r.duplicate).toBe(false);
    }
  });

  it("accepts a raw message of exactly the size limit although the gateway adds its Message-ID", async () => {
    const head = "From: a@example.org\r\n\r\n";
    const lines = "z".repeat(98) + "\r\n";
    const fill = 64 * 1024 - head.length;
    const r = await submit(nc, raw(`${head}${lines.repeat(Math.floor(fill / 100))}${"z".repeat(fill % 100)}`));
    expect((await storedBytes(r.mailId)).length).toBeGreaterThan(64 * 1024);
  });
  it("takes unpadded base64, an unusual Message-ID as the sender wrote it, and Content-Language / Sender headers", async () => {
    const r = await submit(nc, raw("From: a@example.org\r\nMessage-ID: <odd-1@example.org> (comment)\r\n\r\nhi"));
    expect(r.messageId).toBe("<odd-1@example.org> (comment)");
    const unpadded = Buffer.from("From: a@example.org\r\n\r\nhi!!").toString("base64").replace(/=+$/, "");
    expect((await submit(nc, { ...raw(""), mail: { ...raw("").mail, raw: unpadded } })).duplicate).toBe(false);
    const s = structured(11);
    expect((await submit(nc, { ...s, mail: { ...s.mail, headers: { "Content-Language": "de", Sender: "assistant@example.org" } } })).duplicate).toBe(false);
  });
  it("takes base64 wrapped in lines, as MIME tools write it, for a raw message", async () => {
    const text = `From: a@example.org\r\nSubject: wrapped\r\n\r\n${"0123456789".repeat(30)}\r\n`;
    const wrapped = Buffer.from(text).toString("base64").replace(/.{76}/g, "$&\r\n");
    const r = await submit(nc, { ...raw(""), mail: { ...raw("").mail, raw: wrapped } });
    expect(await storedBytes(r.mailId)).toBe(`Message-ID: ${r.messageId}\r\n${text}`);
  });
  it("de-duplicates a raw mail's envelope recipients, as a structured mail's: one RCPT TO and one outcome each", async () => {
    const text = "From: a@example.org\r\nSubject: twice\r\n\r\nhi\r\n";
    const r = await submit(nc, raw(text, ["c@example.net", "d@example.net", "c@example.net"]));
    const m = await (await jetstreamManager(nc)).direct.getMessage(Names.workStream, { seq: 1, next_by_subj: workSubject(r.mailId) });
    expect(Codecs.workItem.decode(m!.data).envelope.to).toEqual(["c@example.net", "d@example.net"]);
    expect((await status(nc, r.mailId)).recipients).toEqual(["c@example.net", "d@example.net"]);
    // The same mail to the same recipients: hashed after de-duplication, so a duplicate.
    expect(await submit(nc, raw(text, ["c@example.net", "d@example.net"]))).toMatchObject({ mailId: r.mailId, duplicate: true });
  });
  it("removes Bcc fields (folded ones too) from a raw message, as sendmail does", async () => {
    const r = await submit(nc, raw("From: a@example.org\r\nBcc: hidden@example.net,\r\n  other@example.net\r\nSubject: s\r\nbcc: x@example.net\r\nResent-Bcc: y@example.net\r\n\r\nBcc: in the body stays\r\n", ["rcpt@example.net", "hidden@example.net"]));
    const bytes = await storedBytes(r.mailId);
    expect(bytes).toBe(`Message-ID: ${r.messageId}\r\nFrom: a@example.org\r\nSubject: s\r\n\r\nBcc: in the body stays\r\n`);
    // LF header lines ended by a CRLF blank line: the body's Bcc line stays too.
    const lf = await submit(nc, raw("From: a@example.org\nBcc: hidden@example.net\n\r\nBcc: body\n\nmore\n", ["rcpt@example.net", "hidden@example.net"]));
    expect(await storedBytes(lf.mailId)).toBe(`Message-ID: ${lf.messageId}\r\nFrom: a@example.org\n\r\nBcc: body\n\nmore\n`);
  });
});

describe("a mail no processing node has claimed yet", () => {
  it("has no status entry, reports PendingProcessing from its event, and a resubmit is a duplicate", async () => {
    const before = await stored();
    const req = structured("unclaimed", { key: "unclaimed-1" });
    const first = await submit(nc, req);
    expect(first.duplicate).toBe(false);
    // One work item and one event; the status entry is written by the first claim, not here.
    expect(await stored()).toMatchObject({ work: before.work + 1, events: before.events + 1, status: before.status });
    const st = await status(nc, first.mailId);
    expect(st).toMatchObject({ state: "PendingProcessing", attempt: 0 });
    expect(st.history.map((e) => e.state)).toEqual(["PendingProcessing"]);
    // Recognised by its event at any age (the work item's Nats-Msg-Id only within the duplicate window).
    const jsm = await jetstreamManager(nc);
    expect((await pendingEvent(jsm, first.mailId))?.detail.contentSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await pendingEvent(jsm, mailIdFromIdempotencyKey("never-submitted"))).toBeUndefined();
    expect(await submit(nc, req)).toMatchObject({ mailId: first.mailId, duplicate: true });
    expect((await stored()).work).toBe(before.work + 1);
  });

  it("the same idempotency key for a different mail is IDEMPOTENCY_CONFLICT, and nothing is stored", async () => {
    const first = await submit(nc, structured("reused", { key: "reused-1", text: "the first mail" }));
    const before = await stored();
    const err = await rejected(structured("reused", { key: "reused-1", text: "another mail" }));
    expect(err.code).toBe("IDEMPOTENCY_CONFLICT");
    expect(err.fields.map((f) => f.field)).toEqual(["idempotencyKey"]);
    expect(err.message).toContain(first.mailId);
    expect(await stored()).toEqual(before);
    // The same mail again is still a plain duplicate.
    expect(await submit(nc, structured("reused", { key: "reused-1", text: "the first mail" }))).toMatchObject({ mailId: first.mailId, duplicate: true });
  });

  it("an unknown mail id is NOT_FOUND", async () => {
    await expect(status(nc, mailIdFromIdempotencyKey("never-submitted"))).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});

describe("identical mails without an idempotency key", () => {
  it("are one mail for DUPLICATE_WINDOW_MS (a retry, also across a window boundary), then a new one (an alert sent again the next day)", async () => {
    let now = Math.floor(Date.now() / DUPLICATE_WINDOW_MS) * DUPLICATE_WINDOW_MS + DUPLICATE_WINDOW_MS - 60_000; // a minute before a boundary
    const clock = { now: () => now };
    const js = jetstream(nc);
    const submitAt = createSubmitHandler({
      js, jsm: await jetstreamManager(nc), bodies: await new Objm(js).open(Names.bodiesBucket),
      state: createMailStateStore({ js, kv: await new Kvm(js).open(Names.statusBucket), clock, node: "gw-clock" }),
      clock, log: testLog, metrics: createMetrics({ defaults: false }),
    }, { maxMessageBytes: 64 * 1024, messageIdDomain: "fastemailnet.local", submitTimeoutMs: 10_000 });
    const alert = new TextEncoder().encode(JSON.stringify(structured("disk full on db-1", { to: ["oncall@example.net"] })));
    const first = await submitAt(alert);
    now += 2 * 60_000; // a retry, just across the window boundary
    expect(await submitAt(alert)).toMatchObject({ mailId: first.mailId, duplicate: true });
    now += DUPLICATE_WINDOW_MS - 3 * 60_000; // still less than the window after the first
    expect(await submitAt(alert)).toMatchObject({ mailId: first.mailId, duplicate: true });
    now += 24 * 3600_000; // the next day
    const again = await submitAt(alert);
    expect(again.duplicate).toBe(false);
    expect(again.mailId).not.toBe(first.mailId);
    expect(await submitAt(alert)).toMatchObject({ mailId: again.mailId, duplicate: true });
    // With a key, a resubmission is a duplicate at any age.
    const keyed = new TextEncoder().encode(JSON.stringify(structured("keyed alert", { key: "alert-42" })));
    const k = await submitAt(keyed);
    now += 30 * 24 * 3600_000;
    expect(await submitAt(keyed)).toMatchObject({ mailId: k.mailId, duplicate: true });
  });
});

describe("a flood of large submissions", () => {
  it("past the bytes in flight, requests are answered BUSY at once and nothing of them is stored", async () => {
    const js = jetstream(nc);
    const submitAt = createSubmitHandler({
      js, jsm: await jetstreamManager(nc), bodies: await new Objm(js).open(Names.bodiesBucket),
      state: createMailStateStore({ js, kv: await new Kvm(js).open(Names.statusBucket), clock: { now: () => Date.now() }, node: "gw-flood" }),
      clock: { now: () => Date.now() }, log: testLog, metrics: createMetrics({ defaults: false }),
    }, { maxMessageBytes: 4 * 1024 * 1024, messageIdDomain: "fastemailnet.local", submitTimeoutMs: 10_000, maxBytesInFlight: 8 * 1024 * 1024 });
    // Six ~3 MB requests at once: the first two fit in 8 MB, the other four are BUSY.
    const text = "y".repeat(3 * 1024 * 1024);
    const outcomes = await Promise.all(Array.from({ length: 6 }, (_, i) => {
      const key = `flood-${i}`;
      return submitAt(new TextEncoder().encode(JSON.stringify(structured(key, { key, text })))).then(() => "ok", (e: { code?: string }) => e.code ?? String(e));
    }));
    expect(outcomes).toEqual(["ok", "ok", "BUSY", "BUSY", "BUSY", "BUSY"]);
    for (let i = 2; i < 6; i++) expect(await bodyObjects(nc, mailIdFromIdempotencyKey(`flood-${i}`))).toEqual([]);
    // A retry once the others are stored is taken.
    const retry = structured("flood-2", { key: "flood-2", text });
    expect((await submitAt(new TextEncoder().encode(JSON.stringify(retry)))).duplicate).toBe(false);
  });
});

/** A submit handler of its own on the test connection (no service around it), as a gateway builds it. */
async function ownSubmitHandler(node: string, maxMessageBytes = 2 * 1024 * 1024): Promise<(data: Uint8Array) => Promise<unknown>> {
  const js = jetstream(nc);
  return createSubmitHandler({
    js, jsm: await jetstreamManager(nc), bodies: await new Objm(js).open(Names.bodiesBucket),
    state: createMailStateStore({ js, kv: await new Kvm(js).open(Names.statusBucket), clock: { now: () => Date.now() }, node }),
    clock: { now: () => Date.now() }, log: testLog, metrics: createMetrics({ defaults: false }),
  }, { maxMessageBytes, messageIdDomain: "fastemailnet.local", submitTimeoutMs: 10_000 });
}

describe("a raw mail near the 10 MiB limit, its base64 wrapped at 76 columns with CRLF (as MIME tools write it)", () => {
  /** A request carrying a raw mail of exactly `size` bytes (lines of 100), its base64 wrapped. */
  const wrappedRequest = (key: string, size: number) => {
    const head = `From: a@example.org\r\nSubject: ${key}\r\n\r\n`;
    const fill = size - head.length;
    const text = `${head}${`${"w".repeat(98)}\r\n`.repeat(Math.floor(fill / 100))}${"w".repeat(fill % 100)}`;
    const wrapped = Buffer.from(text).toString("base64").replace(/.{76}/g, "$&\r\n");
    return new TextEncoder().encode(JSON.stringify({ kind: "mail.submit", v: 1, idempotencyKey: key, mail: { raw: wrapped, envelope: { from: "a@example.org", to: ["rcpt@example.net"] } } }));
  };

  it("is taken under the limit (JSON writes each CRLF as 4 bytes: ~1.40 request bytes per mail byte)", async () => {
    const submitAt = await ownSubmitHandler("gw-wrapped", 10 * 1024 * 1024);
    expect(await submitAt(wrappedRequest("wrapped-under", 10_400_000))).toMatchObject({ duplicate: false });
  });

  it("is refused over the limit with MESSAGE_TOO_LARGE naming its decoded size", async () => {
    const submitAt = await ownSubmitHandler("gw-wrapped-over", 10 * 1024 * 1024);
    const err = await thrownBy(() => submitAt(wrappedRequest("wrapped-over", 10_500_000)));
    expect(err).toMatchObject({ code: "MESSAGE_TOO_LARGE", message: `message is 10500000 bytes, the limit is ${10 * 1024 * 1024}` });
  });
});

describe("a submission the work stream refuses", () => {
  it("is STORE_UNAVAILABLE and leaves no body object behind", async () => {
    const jsm = await jetstreamManager(nc);
    const submitAt = await ownSubmitHandler("gw-refused");
    // A real refusal that may pass: the stream is full and takes no new message for a while (discard "new",
    // max_msgs at what it holds: lowering it removes nothing). A filler makes it hold one when the earlier
    // tests left it empty (run alone, with -t).
    const before = (await jsm.streams.info(Names.workStream)).config;
    const filler = (await jsm.streams.info(Names.workStream)).state.messages === 0
      ? await jetstream(nc).publish(workSubject(mailIdFromIdempotencyKey("refused-filler")), "filler")
      : undefined;
    const held = (await jsm.streams.info(Names.workStream)).state.messages;
    await jsm.streams.update(Names.workStream, { ...before, discard: DiscardPolicy.New, max_msgs: held });
    try {
      const big = structured("refused", { key: "refused-1", text: "x".repeat(700 * 1024) });
      const err = await thrownBy(() => submitAt(new TextEncoder().encode(JSON.stringify(big))));
      expect(err).toMatchObject({ code: "STORE_UNAVAILABLE" });
      expect(await bodyObjects(nc, mailIdFromIdempotencyKey("refused-1"))).toEqual([]);
    } finally {
      await jsm.streams.update(Names.workStream, before);
      if (filler) await jsm.streams.deleteMessage(Names.workStream, filler.seq);
    }
  });

  it("over the stream's max_msg_size is MESSAGE_TOO_LARGE (permanent: a retry is refused again), and leaves no body object behind", async () => {
    const jsm = await jetstreamManager(nc);
    const submitAt = await ownSubmitHandler("gw-too-large");
    // JetStream refuses (10054) every work item larger than the stream's max_msg_size.
    const before = (await jsm.streams.info(Names.workStream)).config;
    await jsm.streams.update(Names.workStream, { ...before, max_msg_size: 64 });
    try {
      const big = structured("too-large", { key: "too-large-1", text: "x".repeat(700 * 1024) });
      const err = await thrownBy(() => submitAt(new TextEncoder().encode(JSON.stringify(big))));
      expect(err).toMatchObject({ code: "MESSAGE_TOO_LARGE", transient: false, fields: [{ field: "mail", code: "MESSAGE_TOO_LARGE" }] });
      expect(await bodyObjects(nc, mailIdFromIdempotencyKey("too-large-1"))).toEqual([]);
    } finally {
      await jsm.streams.update(Names.workStream, before);
    }
  });
});

describe("a submission whose store lookups fail", () => {
  it("is STORE_UNAVAILABLE (retry with the key), not INTERNAL, and stores nothing", async () => {
    const jsm = await jetstreamManager(nc);
    const submitAt = await ownSubmitHandler("gw-lookup");
    // A real failure of the lookup of an earlier submission: MAIL_EVENTS answers no Direct Get for a while (a
    // probe flooding the gateway with large submissions got INTERNAL "timeout" from the same lookup).
    const before = (await jsm.streams.info(Names.eventsStream)).config;
    await jsm.streams.update(Names.eventsStream, { ...before, allow_direct: false });
    try {
      for (const req of [structured("lookup-fails", { key: "lookup-fails-1" }), structured("lookup-fails-keyless")]) {
        const err = await thrownBy(() => submitAt(new TextEncoder().encode(JSON.stringify(req))));
        expect(err).toMatchObject({ code: "STORE_UNAVAILABLE", message: expect.stringMatching(/^reading an earlier submission of this mail failed \(.+\); nothing was stored; retry \(with the same idempotency key, if the request has one\)$/) });
      }
    } finally {
      await jsm.streams.update(Names.eventsStream, before);
    }
    expect(await jsm.streams.getMessage(Names.workStream, { last_by_subj: workSubject(mailIdFromIdempotencyKey("lookup-fails-1")) })).toBeNull();
  });
});

