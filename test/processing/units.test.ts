import { describe, expect, it } from "vitest";
import { FAILURE_TABLE, SMTP_REPLY_CHARS, backoffDelay, classifyAlone, classifyFailure, classifyOrFail, createBatchingClassifier, isTooManyRecipients, recipientRefusals, smtpReplyOf } from "../../nodes/processing/index.js";
import type { MailClassifier } from "../../nodes/processing/index.js";
import { ClassifierError } from "../../nodes/classifier/index.js";

describe("backoff (injected random)", () => {
  const policy = { baseMs: 1000, maxMs: 60_000 };
  it("doubles per attempt with equal jitter, within [exp/2, exp]", () => {
    expect(backoffDelay(policy, 1, () => 0)).toBe(500);
    expect(backoffDelay(policy, 1, () => 0.999999)).toBe(1000);
    expect(backoffDelay(policy, 3, () => 0.5)).toBe(3000);
    expect(backoffDelay(policy, 10, () => 1)).toBe(60_000);
    expect(backoffDelay(policy, 1000, () => 0)).toBe(30_000);
  });
});

describe("SMTP failure table: one case per row", () => {
  const cases: [string, unknown, "transient" | "permanent"][] = [
    ["5xx opening the session (greeting, EHLO, STARTTLS or AUTH): the relay refuses us, not this mail", { responseCode: 554, response: "554 5.7.1 no service", command: "CONN" }, "transient"],
    ["530: the relay requires authentication (RFC 4954): our configuration, not this mail", { code: "EENVELOPE", responseCode: 530, response: "530 5.7.0 Authentication required", command: "MAIL FROM" }, "transient"],
    ["4xx: the relay asks to try again later", { responseCode: 451, response: "451 4.3.0 busy", command: "DATA" }, "transient"],
    ["5xx: the relay refuses the mail for good", { responseCode: 550, response: "550 5.1.1 no such user", command: "RCPT TO" }, "permanent"],
    ["connection refused or reset", { code: "ECONNECTION", message: "connect ECONNREFUSED" }, "transient"],
    ["the relay did not answer in time", { code: "ETIMEDOUT" }, "transient"],
    ["socket error", { code: "ESOCKET" }, "transient"],
    ["the relay's name did not resolve", { code: "EDNS" }, "transient"],
    ["TLS handshake failed", { code: "ETLS" }, "transient"],
    ["authentication with the relay failed (configuration; retried until fixed or exhausted)", { code: "EAUTH" }, "transient"],
    ["the relay's reply is not an SMTP reply (no reply code): retried, never bounced on it", { code: "EMESSAGE", response: "yes, got it", command: "DATA" }, "transient"],
    ["the envelope was refused", { code: "EENVELOPE" }, "permanent"],
    ["the message could not be sent as is", { code: "EMESSAGE" }, "permanent"],
    ["unknown failure: retried rather than lost", { code: "EWHATEVER" }, "transient"],
  ];
  it("covers every row of the table exactly once", () => {
    expect(cases.map((c) => c[0])).toEqual(FAILURE_TABLE.map((r) => r.why));
  });
  it.each(cases)("%s", (why, err, kind) => {
    const o = classifyFailure(err);
    expect(o.kind).toBe(kind);
    if (o.kind === "transient" || o.kind === "permanent") {
      expect(o.reason.startsWith(why)).toBe(true);
      expect(o.failure).toBe(why); // what a log line says: the row, not the relay's text
    }
  });
  it("a refusal of every recipient is classified per recipient, not by the last reply", () => {
    const rcpt = (recipient: string, response: string) => Object.assign(new Error(response), { recipient, response, responseCode: Number(response.slice(0, 3)), command: "RCPT TO" });
    const err = Object.assign(new Error("Can't send mail - all recipients were rejected"), {
      code: "EENVELOPE", responseCode: 550, response: "550 5.1.1 no such user", command: "RCPT TO",
      rejectedErrors: [rcpt("busy@x.example", "450 4.2.1 busy"), rcpt("gone@x.example", "550 5.1.1 no such user"), Object.assign(new Error("reset"), { recipient: "r@x.example" })],
    });
    const o = classifyFailure(err);
    expect(o.kind).toBe("refused");
    expect(o.kind === "refused" && o.rejected.map((x) => [x.recipient, x.transient, x.smtp?.code])).toEqual([
      ["busy@x.example", true, 450], ["gone@x.example", false, 550], ["r@x.example", true, undefined],
    ]);
  });
  it("a 5xx to EHLO, STARTTLS or AUTH is the session's, not the mail's; a 5xx to MAIL, RCPT or DATA is the mail's", () => {
    for (const command of ["EHLO", "HELO", "STARTTLS", "AUTH PLAIN", "AUTH LOGIN"]) {
      expect(classifyFailure({ responseCode: 535, response: "535 5.7.8 no", command }).kind, command).toBe("transient");
    }
    for (const command of ["MAIL FROM", "RCPT TO", "DATA", "message"]) {
      expect(classifyFailure({ responseCode: 554, response: "554 5.7.1 no", command }).kind, command).toBe("permanent");
    }
  });
  it("552 at RCPT TO is 452 \"too many recipients\" (RFC 5321 4.5.3.1.10), 530 is ours to fix: both transient", () => {
    const rcpt = (recipient: string, response: string) => ({ recipient, response, responseCode: Number(response.slice(0, 3)), command: "RCPT TO" });
    expect(recipientRefusals([
      rcpt("a@x.example", "552 5.5.3 Too many recipients"), rcpt("b@x.example", "552 too many recipients"),
      rcpt("c@x.example", "530 5.7.0 Authentication required"), rcpt("d@x.example", "552 5.2.2 Mailbox full"),
      rcpt("e@x.example", "550 5.1.1 no such user"),
    ]).map((x) => [x.recipient, x.transient])).toEqual([
      ["a@x.example", true], ["b@x.example", true], ["c@x.example", true], ["d@x.example", false], ["e@x.example", false],
    ]);
    // A split (another transaction at once, not counted as an attempt) is for the recipient limit only, not a full mailbox.
    const reply = (response: string) => smtpReplyOf({ response });
    expect(["452 4.5.3 Too many recipients", "452 too many", "552 5.5.3 Too many", "552 too many recipients"].map((r) => isTooManyRecipients(reply(r)))).toEqual([true, true, true, true]);
    expect(["452 4.2.2 Mailbox full", "552 5.2.2 Mailbox full", "450 4.5.3 x", "550 5.5.3 x", "552 Requested mail action aborted: exceeded storage allocation", "552 Mailbox full"]
      .map((r) => isTooManyRecipients(reply(r)))).toEqual([false, false, false, false, false, false]);
    // A 552 that is not the recipient limit stays a refusal for good.
    expect(recipientRefusals([rcpt("f@x.example", "552 Requested mail action aborted: exceeded storage allocation")]).map((x) => x.transient)).toEqual([false]);
  });
  it("keeps at most SMTP_REPLY_CHARS of a reply", () => {
    expect(smtpReplyOf({ response: `250 ${"y".repeat(1_100_000)}` })?.response).toHaveLength(SMTP_REPLY_CHARS);
  });
  it("reads a reply nodemailer decoded as Latin-1 as the UTF-8 the relay sent, and keeps Latin-1 that is not UTF-8 as it is", () => {
    const asNodemailerReadsIt = (s: string) => Buffer.from(s, "utf8").toString("latin1");
    expect(smtpReplyOf({ response: asNodemailerReadsIt("550 5.1.1 Адресат не найден") })?.response).toBe("550 5.1.1 Адресат не найден");
    expect(smtpReplyOf({ response: "550 5.1.1 Empf\u00e4nger unbekannt" })?.response).toBe("550 5.1.1 Empf\u00e4nger unbekannt");
    // Cut to SMTP_REPLY_CHARS without leaving half of a surrogate pair (the ledger's canonical JSON refuses a lone one).
    const cut = smtpReplyOf({ response: asNodemailerReadsIt(`550 ${"x".repeat(SMTP_REPLY_CHARS - 5)}📭📭`) })!.response;
    expect(cut).toBe(`550 ${"x".repeat(SMTP_REPLY_CHARS - 5)}`);
  });
  it("keeps the SMTP reply structured", () => {
    expect(smtpReplyOf({ responseCode: 550, response: "550 5.1.1 <x@y.z>: unknown", command: "RCPT TO" }))
      .toEqual({ code: 550, enhanced: "5.1.1", response: "550 5.1.1 <x@y.z>: unknown", command: "RCPT TO" });
    expect(smtpReplyOf({ response: "250 OK" })).toEqual({ code: 250, response: "250 OK" });
    expect(smtpReplyOf({ response: "250-first\n250 2.0.0 queued" })).toEqual({ code: 250, response: "250-first\n250 2.0.0 queued" });
  });
  it("an answer that does not start with a three-digit reply code is no SMTP reply", () => {
    for (const response of ["yes, got it", "5", "2500 ok", "25 ok", ""]) {
      expect(smtpReplyOf({ response, responseCode: Number(/^\d+/.exec(response)?.[0]) || undefined }), response).toBeUndefined();
    }
  });
});

describe("a classifier that fails", () => {
  // What TensorFlow.js failing on a batch throws (nodes/classifier: transient CLASSIFIER_INFERENCE_FAILED).
  const broken: MailClassifier = { version: "broken", classifyRaw: () => Promise.reject(new ClassifierError("CLASSIFIER_INFERENCE_FAILED", "wasm backend lost")) };
  const failed = expect.objectContaining({ code: "CLASSIFIER_FAILED", transient: true, message: expect.stringContaining("wasm backend lost") });
  it("is CLASSIFIER_FAILED (transient, as ERRORS.md says) for mail.classify and for every mail of a batch, not INTERNAL", async () => {
    await expect(classifyOrFail(broken, [new Uint8Array(1)])).rejects.toEqual(failed);
    const classify = createBatchingClassifier(broken, 2, 1);
    const results = await Promise.allSettled([classify(new Uint8Array(1)), classify(new Uint8Array(2))]);
    expect(results).toEqual([{ status: "rejected", reason: failed }, { status: "rejected", reason: failed }]);
  });
  it("on one mail alone (a canary scores) fails that mail as CLASSIFIER_UNSCORABLE (permanent) and scores the rest of its batch", async () => {
    let calls = 0;
    const picky: MailClassifier = {
      version: "picky",
      classifyRaw: async (raws) => {
        calls++;
        // What a fault of the feature extraction on one mail throws: not a ClassifierError that calls itself transient.
        if (raws.some((r) => r[0] === 0xff)) throw new RangeError("cannot read this one");
        return raws.map((r) => ({ score: r[0]! / 10 }));
      },
    };
    const classify = createBatchingClassifier(picky, 3, 1);
    const results = await Promise.allSettled([classify(Uint8Array.of(1)), classify(Uint8Array.of(0xff)), classify(Uint8Array.of(2))]);
    expect(results).toEqual([
      { status: "fulfilled", value: { score: 0.1 } },
      { status: "rejected", reason: expect.objectContaining({ code: "CLASSIFIER_UNSCORABLE", transient: false, message: expect.stringContaining("cannot read this one") }) },
      { status: "fulfilled", value: { score: 0.2 } },
    ]);
    // The batch, then each mail alone, and for the one that failed the canary and that mail once more.
    expect(calls).toBe(6);
  });
  it("that calls its failure on one mail transient (inference failed) is not the mail's fault: CLASSIFIER_FAILED, retried", async () => {
    let failures = 1;
    const flaky: MailClassifier = {
      version: "flaky",
      classifyRaw: async (raws) => {
        if (raws.length === 1 && raws[0]![0] === 7 && failures-- > 0) throw new ClassifierError("CLASSIFIER_INFERENCE_FAILED", "out of memory for a moment");
        return raws.map(() => ({ score: 0.5 }));
      },
    };
    await expect(classifyAlone(flaky, Uint8Array.of(7))).rejects.toMatchObject({ code: "CLASSIFIER_FAILED", transient: true });
    // A classifier answering a batch with too few scores: each mail is asked about alone, none is scored 0 by default.
    const short: MailClassifier = { version: "short", classifyRaw: async (raws) => raws.length > 1 ? [{ score: 0.9 }] : [{ score: 0.3 }] };
    const classify = createBatchingClassifier(short, 2, 1);
    expect(await Promise.all([classify(Uint8Array.of(1)), classify(Uint8Array.of(2))])).toEqual([{ score: 0.3 }, { score: 0.3 }]);
  });
});
