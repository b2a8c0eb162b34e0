import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { nanos } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { simpleParser } from "mailparser";
import { Codecs, Names, eventSubject } from "../../protocol/index.js";
import type { MailEvent, MailId } from "../../protocol/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { createMailStateStore, eventIdOf } from "../../nodes/common/mail-state.js";
import type { Actor } from "../../nodes/common/actor.js";
import { freePort } from "../../nodes/local/nats-cluster.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { RcptResponder, Responder, SmtpSink } from "../../nodes/local/smtp-sink.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { fastemailnet } from "../helpers/cli.js";
import { rawRelay } from "../helpers/raw-relay.js";
import { bodyObjects, connectAndProvision, startGateway, startProcessing, status, structured, submit, until, workSettled } from "../helpers/system.js";

let cluster: TestCluster;
let nc: NatsConnection;
let gateway: Actor;
const actors: Actor[] = [];
const sinks: SmtpSink[] = [];

beforeAll(async () => {
  cluster = await startTestCluster();
  nc = await connectAndProvision(cluster.urls);
  gateway = await startGateway(nc);
});
// Each test's processing node shares the one work queue: never let a node
// from a finished (or failed) test take the next test's mail.
afterEach(async () => {
  for (const a of actors.splice(0)) if (a.status().state === "running") await a.drain();
});
afterAll(async () => {
  for (const a of [...actors, gateway]) await a?.drain();
  for (const s of sinks) await s.close();
  await nc?.close();
  await cluster?.dispose();
});

/** A processing node and sink pair dedicated to one test (unique recipient domain routes nothing; the sink is per test). */
async function pipeline(respond?: Parameters<typeof startSmtpSink>[0] extends infer O ? O extends { respond?: infer R } ? R : never : never) {
  const sink = await startSmtpSink(respond ? { respond } : {});
  sinks.push(sink);
  const node = await startProcessing(nc, sink.port);
  actors.push(node);
  return { sink, node };
}

describe("end to end on a real 3-node cluster", () => {
  it("delivers a submitted mail, with the whole state history", async () => {
    const { sink, node } = await pipeline();
    const reply = await submit(nc, structured("happy", { key: "happy-1" }));
    expect(reply.duplicate).toBe(false);
    const st = await until("Sent", async () => { const s = await status(nc, reply.mailId); return s.state === "Sent" && s; });
    expect(st.history.map((e) => e.state)).toEqual(["PendingProcessing", "Processing", "Validated", "DeliveryScheduled", "Sent"]);
    expect(st.history.at(-1)?.detail.smtp?.code).toBe(250);
    expect(sink.messages).toHaveLength(1);
    expect(sink.messages[0]?.messageId).toBe(reply.messageId);
    expect(sink.messages[0]?.raw.toString()).toContain("body happy");
    await node.drain();
  });

  it("delivers once when the same idempotency key is submitted twice", async () => {
    const { sink, node } = await pipeline();
    const a = await submit(nc, structured("idem-a", { key: "same-key" }));
    // The same mail again (a different mail under the key is IDEMPOTENCY_CONFLICT: test/gateway).
    const b = await submit(nc, structured("idem-a", { key: "same-key" }));
    expect(b).toMatchObject({ mailId: a.mailId, duplicate: true });
    await until("Sent", async () => (await status(nc, a.mailId)).state === "Sent");
    const c = await submit(nc, structured("idem-a", { key: "same-key" }));
    await expect(submit(nc, structured("idem-c", { key: "same-key" }))).rejects.toMatchObject({ code: "IDEMPOTENCY_CONFLICT" });
    expect(c).toMatchObject({ mailId: a.mailId, duplicate: true });
    await node.drain();
    expect(sink.messages.filter((m) => m.messageId === a.messageId)).toHaveLength(1);
    expect(sink.messages).toHaveLength(1);
  });

  it("retries after a 4xx and delivers exactly once", async () => {
    const { sink, node } = await pipeline((n) => (n === 1 ? { code: 451, message: "4.3.0 try again later" } : undefined));
    const r = await submit(nc, structured("retry", { key: "retry-1" }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(st.history.map((e) => e.state)).toEqual([
      "PendingProcessing", "Processing", "Validated", "DeliveryScheduled", "Deferred",
      "Processing", "Validated", "DeliveryScheduled", "Sent",
    ]);
    const deferred = st.history.find((e) => e.state === "Deferred");
    expect(deferred?.detail.smtp).toMatchObject({ code: 451, enhanced: "4.3.0" });
    // `status` quotes the relay's reply once (the error message carries it).
    const line = (await fastemailnet(cluster.urls, "status", r.mailId)).stdout.split("\n").find((l) => /Deferred/.test(l));
    expect(line?.match(/451 4\.3\.0/g)).toHaveLength(1);
    expect(st.attempt).toBe(2);
    expect(sink.dataCount()).toBe(2);
    expect(sink.messages).toHaveLength(1);
    await node.drain();
  });

  it("a retry that comes after MAIL_EVENTS' duplicate window does not repeat the Deferred event", async () => {
    // The window is 2 h and retries wait up to FEN_RETRY_MAX_MS (1 h by default, 24 h allowed): shortened here.
    const jsm = await jetstreamManager(nc);
    const before = (await jsm.streams.info(Names.eventsStream)).config;
    await jsm.streams.update(Names.eventsStream, { ...before, duplicate_window: nanos(500) });
    try {
      const sink = await startSmtpSink({ respond: (n) => (n === 1 ? { code: 451, message: "4.3.0 try again later" } : undefined) });
      sinks.push(sink);
      const node = await startProcessing(nc, sink.port, { FEN_RETRY_BASE_MS: "2000", FEN_RETRY_MAX_MS: "2000" });
      actors.push(node);
      const r = await submit(nc, structured("late-retry", { key: "late-retry-1" }));
      const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
      expect(st.history.map((e) => e.state)).toEqual([
        "PendingProcessing", "Processing", "Validated", "DeliveryScheduled", "Deferred",
        "Processing", "Validated", "DeliveryScheduled", "Sent",
      ]);
      await node.drain();
    } finally {
      await jsm.streams.update(Names.eventsStream, before);
    }
  });

  it("a relay that was down longer than the pool has connections gets every mail once it is back", async () => {
    // Each refused connect used to keep its pool slot: with 2 slots the node never delivered again.
    const port = await freePort();
    const node = await startProcessing(nc, port, { FEN_SMTP_POOL_SIZE: "2", FEN_SMTP_TRANSACTION_TIMEOUT_MS: "60000", FEN_RETRY_BASE_MS: "300", FEN_RETRY_MAX_MS: "600" });
    actors.push(node);
    const mails = await Promise.all([0, 1, 2].map((i) => submit(nc, structured(`relay-down-${i}`, { key: `relay-down-${i}` }))));
    await until("every mail deferred twice", async () => {
      for (const m of mails) if ((await status(nc, m.mailId)).history.filter((e) => e.state === "Deferred").length < 2) return false;
      return true;
    });
    const sink = await startSmtpSink({ port });
    sinks.push(sink);
    for (const m of mails) await until(`${m.mailId} Sent`, async () => (await status(nc, m.mailId)).state === "Sent");
    expect(sink.messages.map((x) => x.messageId).sort()).toEqual(mails.map((m) => m.messageId).sort());
    await node.drain();
  });

  it("upgrades to STARTTLS when the relay offers it (and can require it)", async () => {
    const sink = await startSmtpSink({ starttls: true });
    sinks.push(sink);
    const node = await startProcessing(nc, sink.port, { FEN_SMTP_REQUIRE_TLS: "true", FEN_SMTP_TLS_REJECT_UNAUTHORIZED: "false" });
    actors.push(node);
    const r = await submit(nc, structured("tls", { key: "tls-1" }));
    await until("Sent", async () => (await status(nc, r.mailId)).state === "Sent");
    expect(sink.messages.find((m) => m.messageId === r.messageId)?.secure).toBe(true);
  });

  it("carries a body larger than the inline limit through the object store, intact", async () => {
    const { sink, node } = await pipeline();
    const big = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
    const req = structured("big", { key: "big-1" });
    const r = await submit(nc, { ...req, mail: { ...req.mail, attachments: [{ filename: "big.bin", contentType: "application/octet-stream", content: big.toString("base64") }] } });
    await until("Sent", async () => (await status(nc, r.mailId)).state === "Sent");
    const got = sink.messages.find((m) => m.messageId === r.messageId);
    const parsed = await simpleParser(got!.raw);
    expect(Buffer.compare(parsed.attachments[0]!.content, big)).toBe(0);
    // The body object is removed once the mail is Sent.
    await until("body object deleted", async () => (await bodyObjects(nc, r.mailId)).length === 0);
    await node.drain();
  });

  it("delivers to an internationalised domain by its ASCII (A-label) name", async () => {
    const { sink, node } = await pipeline();
    const r = await submit(nc, structured("idn", { key: "idn-1", to: ["kunde@münchen.example"] }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(st.recipients).toEqual(["kunde@xn--mnchen-3ya.example"]);
    const got = sink.messages.find((m) => m.messageId === r.messageId);
    expect(got?.raw.toString("latin1")).toMatch(/^To: kunde@xn--mnchen-3ya\.example\r$/m);
    // smtp-server reports RCPT TO domains decoded back to Unicode (punycode.toUnicode).
    expect(got?.to).toEqual(["kunde@münchen.example"]);
    await node.drain();
  });

  it("bounces on a 5xx, keeps the reply and does not retry", async () => {
    const { sink, node } = await pipeline(() => ({ code: 550, message: "5.1.1 mailbox unavailable" }));
    const r = await submit(nc, structured("bounce", { key: "bounce-1" }));
    const st = await until("Bounced", async () => { const s = await status(nc, r.mailId); return s.state === "Bounced" && s; });
    const bounced = st.history.at(-1);
    expect(bounced?.detail.smtp).toMatchObject({ code: 550, enhanced: "5.1.1", command: "DATA" });
    expect(bounced?.detail.error?.code).toBe("SMTP_PERMANENT");
    await node.drain();
    expect(sink.dataCount()).toBe(1);
    const jsm = await jetstreamManager(nc);
    const ci = await jsm.consumers.info(Names.workStream, Names.workConsumer);
    expect(ci.num_ack_pending + ci.num_pending).toBe(0);
  });

  it("a connection lost after the final \".\" defers the mail in doubt; the retry delivers it, so the relay has it twice, flagged", async () => {
    const relay = await rawRelay({ afterDot: (sock, n) => (n === 1 ? sock.destroy() : sock.write("250 2.0.0 queued\r\n")) });
    onTestFinished(() => relay.close());
    const node = await startProcessing(nc, relay.port);
    actors.push(node);
    const r = await submit(nc, structured("lost-reply", { key: "lost-reply-1" }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    const deferred = st.history.find((e) => e.state === "Deferred");
    expect(deferred?.detail).toMatchObject({ inDoubt: true, error: { code: "SMTP_TRANSIENT", message: expect.stringMatching(/Connection closed unexpectedly/) } });
    expect(relay.received()).toBe(2);
    // What an operator reads: the reason, the retry time and the doubt.
    const shown = await fastemailnet(cluster.urls, "status", r.mailId);
    expect(shown.stdout).toMatch(/Deferred +#1 .*SMTP_TRANSIENT: connection refused or reset: Connection closed unexpectedly; retry at \S+; in doubt \(may have reached the relay\)/);
    await node.drain();
  });

  it("a drain gives up a transaction the relay never finishes at FEN_DRAIN_TIMEOUT_MS: Deferred in doubt (never Bounced), and the next node delivers it", async () => {
    // The relay takes the whole message and never answers the final ".".
    const silent = await rawRelay({ afterDot: () => undefined });
    onTestFinished(() => silent.close());
    // One attempt allowed: a drain's give-up must not be the mail's last attempt (it is not the relay's failure).
    const node = await startProcessing(nc, silent.port, { FEN_DRAIN_TIMEOUT_MS: "1000", FEN_MAX_ATTEMPTS: "1" });
    actors.push(node);
    const r = await submit(nc, structured("drain-stuck", { key: "drain-stuck-1" }));
    await until("the relay has the message", () => silent.received() === 1);
    const t0 = Date.now();
    await node.drain();
    const drainMs = Date.now() - t0;
    const st = await status(nc, r.mailId);
    expect(st.state).toBe("Deferred");
    expect(st.history.at(-1)?.detail).toMatchObject({
      inDoubt: true, error: { code: "SMTP_TRANSIENT", message: expect.stringMatching(/the node stopped \(FEN_DRAIN_TIMEOUT_MS 1000\) before this attempt finished/) },
    });
    // The item went back to the work queue: another node delivers it.
    const { sink } = await pipeline();
    await until("Sent", async () => (await status(nc, r.mailId)).state === "Sent");
    expect(sink.messages).toHaveLength(1);
    expect(drainMs).toBeLessThan(15_000); // the transaction deadline (10 min) did not hold the drain
  });

  it("an attempt given up at a drain does not count against FEN_MAX_ATTEMPTS", async () => {
    const silent = await rawRelay({ afterDot: () => undefined });
    onTestFinished(() => silent.close());
    const node = await startProcessing(nc, silent.port, { FEN_DRAIN_TIMEOUT_MS: "500", FEN_MAX_ATTEMPTS: "2" });
    actors.push(node);
    const r = await submit(nc, structured("drain-count", { key: "drain-count-1" }));
    await until("the relay has the message", () => silent.received() === 1);
    await node.drain();
    // Two attempts allowed and one given up at the drain: a 451 next is the first counted attempt, so a retry follows.
    const sink = await startSmtpSink({ respond: (n) => (n === 1 ? { code: 451, message: "4.3.0 try again later" } : undefined) });
    sinks.push(sink);
    actors.push(await startProcessing(nc, sink.port, { FEN_MAX_ATTEMPTS: "2" }));
    const st = await until("Sent or Bounced", async () => { const s = await status(nc, r.mailId); return (s.state === "Sent" || s.state === "Bounced") && s; });
    expect(st.state).toBe("Sent");
    expect(st.history.filter((e) => e.state === "Deferred").map((e) => e.detail.smtp?.code ?? "stopped")).toEqual(["stopped", 451]);
    expect(sink.messages).toHaveLength(1);
  });

  it("sends a raw mail with the null reverse-path (envelope from \"\": MAIL FROM:<>), as a bounce or auto-reply goes", async () => {
    const { sink } = await pipeline();
    const raw = Buffer.from("From: MAILER-DAEMON@example.org\r\nSubject: Undelivered Mail\r\n\r\nbounce\r\n").toString("base64");
    const r = await submit(nc, { kind: "mail.submit", v: 1, mail: { raw, envelope: { from: "", to: ["sender@example.net"] } } });
    await until("Sent", async () => (await status(nc, r.mailId)).state === "Sent");
    expect(sink.messages.map((m) => [m.messageId, m.from])).toEqual([[r.messageId, ""]]);
  });

  it("a mail left DeliveryScheduled whose Sent event was stored (a node died between the event and the status swap) is recorded Sent, not sent again", async () => {
    // No node runs: the mail waits in MAIL_WORK while this test plays the node that died.
    const r = await submit(nc, structured("died-after-sent-event", { key: "died-after-sent-event-1" }));
    const js = jetstream(nc);
    const store = createMailStateStore({ js, kv: await new Kvm(js).open(Names.statusBucket), clock: systemClock, node: "victim" });
    const begun = await store.begin(r.mailId as MailId, new Date().toISOString(), ["rcpt@example.net"]);
    await store.advance(begun, [{ state: "Processing" }, { state: "Validated" }, { state: "DeliveryScheduled" }], ["rcpt@example.net"], 1);
    const sent: MailEvent = {
      kind: "mail.event", v: 1, eventId: eventIdOf(r.mailId, "Sent", 1), mailId: r.mailId as MailId, state: "Sent", attempt: 1,
      at: new Date().toISOString(), node: "victim", recipients: ["rcpt@example.net"], detail: { smtp: { code: 250, response: "250 ok" } },
    };
    await js.publish(eventSubject(r.mailId, "Sent"), Codecs.mailEvent.encode(sent), { msgID: sent.eventId });
    const { sink } = await pipeline();
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(st.history.map((e) => `${e.state}#${e.attempt}`)).toEqual(["PendingProcessing#0", "Processing#1", "Validated#1", "DeliveryScheduled#1", "Sent#1"]);
    expect(st.history.at(-1)?.detail.smtp?.code).toBe(250);
    // The work item is settled: nothing left for a node, nothing at the relay.
    await until("work item acked", async () => (await (await jetstreamManager(nc)).consumers.info(Names.workStream, Names.workConsumer)).num_ack_pending === 0);
    expect(sink.messages).toHaveLength(0);
  });

  it("drops a bounced mail's body object too (only a quarantined mail keeps one)", async () => {
    const { node } = await pipeline(() => ({ code: 550, message: "5.1.1 mailbox unavailable" }));
    const r = await submit(nc, structured("big-bounce", { key: "big-bounce-1", text: "x".repeat(700 * 1024) }));
    expect(await bodyObjects(nc, r.mailId)).toHaveLength(1);
    await until("Bounced", async () => (await status(nc, r.mailId)).state === "Bounced");
    await until("body object deleted", async () => (await bodyObjects(nc, r.mailId)).length === 0);
    await node.drain();
  });
});

/**
 * A relay can refuse some recipients of a transaction (RCPT TO) and take the
 * rest. Each recipient must end up delivered once or recorded as refused:
 * none dropped silently, none sent twice.
 */
describe("per-recipient replies", () => {
  async function relay(rcpt: RcptResponder, respond?: Responder) {
    const sink = await startSmtpSink({ rcpt, ...(respond ? { respond } : {}) });
    sinks.push(sink);
    actors.push(await startProcessing(nc, sink.port));
    return sink;
  }
  /** Which recipients each accepted transaction carried, per mail. */
  const deliveries = (sink: SmtpSink, messageId: string) => sink.messages.filter((m) => m.messageId === messageId).map((m) => m.to);

  it("a recipient refused for good (550) is recorded in Sent; the others get the mail once", async () => {
    const sink = await relay((a) => (a.startsWith("gone@") ? { code: 550, message: "5.1.1 no such user" } : undefined));
    const r = await submit(nc, structured("rcpt-550", { key: "rcpt-550", to: ["ok@example.net", "gone@example.net"] }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(deliveries(sink, r.messageId)).toEqual([["ok@example.net"]]);
    expect(st.history.at(-1)?.detail.rejected).toEqual([
      { recipient: "gone@example.net", transient: false, smtp: expect.objectContaining({ code: 550, enhanced: "5.1.1", command: "RCPT TO" }) },
    ]);
  });

  it("a recipient refused for now (450) is retried alone; the accepted one is not sent again", async () => {
    let busy = 0;
    const sink = await relay((a) => (a.startsWith("busy@") && ++busy === 1 ? { code: 450, message: "4.2.1 mailbox busy" } : undefined));
    const r = await submit(nc, structured("rcpt-450", { key: "rcpt-450", to: ["ok@example.net", "busy@example.net"] }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(deliveries(sink, r.messageId)).toEqual([["ok@example.net"], ["busy@example.net"]]);
    const deferred = st.history.find((e) => e.state === "Deferred");
    expect(deferred?.detail).toMatchObject({ pending: ["busy@example.net"], smtp: { code: 250 }, error: { code: "SMTP_TRANSIENT" } });
    expect(st.history.at(-1)?.detail.rejected).toBeUndefined();
  });

  it("a relay's recipient limit (452 too many recipients) gets the rest in further transactions, each recipient once", async () => {
    const sink = await relay((_a, i) => (i >= 2 ? { code: 452, message: "4.5.3 too many recipients" } : undefined));
    const to = ["a", "b", "c", "d", "e"].map((x) => `${x}@example.net`);
    const r = await submit(nc, structured("rcpt-452", { key: "rcpt-452", to }));
    await until("Sent", async () => (await status(nc, r.mailId)).state === "Sent");
    const got = deliveries(sink, r.messageId);
    expect(got.map((t) => t.length)).toEqual([2, 2, 1]);
    expect(got.flat().sort()).toEqual(to);
  });

  it("a relay's recipient limit answered with RFC 821's 552 is taken as 452 (RFC 5321 4.5.3.1.10): nobody is dropped", async () => {
    const sink = await relay((_a, i) => (i >= 2 ? { code: 552, message: "Too many recipients" } : undefined));
    const to = ["a", "b", "c", "d", "e"].map((x) => `${x}@example.net`);
    const r = await submit(nc, structured("rcpt-552", { key: "rcpt-552", to }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(deliveries(sink, r.messageId).map((t) => t.length)).toEqual([2, 2, 1]);
    expect(deliveries(sink, r.messageId).flat().sort()).toEqual(to);
    expect(st.history.at(-1)?.detail.rejected).toBeUndefined();
  });

  it("a relay taking one recipient per transaction (452 for the rest) gets all of them, however few attempts are allowed", async () => {
    const sink = await startSmtpSink({ rcpt: (_a, i) => (i >= 1 ? { code: 452, message: "4.5.3 too many recipients" } : undefined) });
    sinks.push(sink);
    actors.push(await startProcessing(nc, sink.port, { FEN_MAX_ATTEMPTS: "2" }));
    const to = ["a", "b", "c", "d", "e"].map((x) => `${x}@example.net`);
    const r = await submit(nc, structured("rcpt-452-one", { key: "rcpt-452-one", to }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(deliveries(sink, r.messageId).map((t) => t.length)).toEqual([1, 1, 1, 1, 1]);
    expect(deliveries(sink, r.messageId).flat().sort()).toEqual(to);
    expect(st.history.at(-1)?.detail.rejected).toBeUndefined();
  });

  it("every recipient refused, one for good and one for now: the transient one is retried, the other recorded", async () => {
    let busy = 0;
    const sink = await relay((a) => (a.startsWith("gone@") ? { code: 550, message: "5.1.1 no such user" }
      : a.startsWith("busy@") && ++busy === 1 ? { code: 450, message: "4.2.1 mailbox busy" } : undefined));
    // The transient refusal first, the permanent one last: nodemailer reports the last reply for the whole
    // envelope, and classifying by it alone would bounce busy@ too.
    const r = await submit(nc, structured("rcpt-mixed", { key: "rcpt-mixed", to: ["busy@example.net", "gone@example.net"] }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(deliveries(sink, r.messageId)).toEqual([["busy@example.net"]]);
    const deferred = st.history.find((e) => e.state === "Deferred");
    expect(deferred?.detail.pending).toEqual(["busy@example.net"]);
    expect(deferred?.detail.rejected?.map((x) => [x.recipient, x.transient])).toEqual([["busy@example.net", true], ["gone@example.net", false]]);
  });

  it("a recipient refused for good, then 451 for the message: the refusal is recorded and the retry goes to the others only", async () => {
    const rcpts: string[] = [];
    const sink = await relay((a) => { rcpts.push(a); return a.startsWith("gone@") ? { code: 550, message: "5.1.1 no such user" } : undefined; },
      (n) => (n === 1 ? { code: 451, message: "4.3.0 try again later" } : undefined));
    const r = await submit(nc, structured("rcpt-550-451", { key: "rcpt-550-451", to: ["ok@example.net", "gone@example.net"] }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(deliveries(sink, r.messageId)).toEqual([["ok@example.net"]]);
    const deferred = st.history.find((e) => e.state === "Deferred");
    expect(deferred?.detail).toMatchObject({ pending: ["ok@example.net"], smtp: { code: 451 }, error: { code: "SMTP_TRANSIENT" } });
    expect(deferred?.detail.rejected?.map((x) => [x.recipient, x.transient, x.smtp?.code])).toEqual([["gone@example.net", false, 550]]);
    // The address refused for good was not tried again.
    expect(rcpts.filter((a) => a.startsWith("gone@"))).toHaveLength(1);
  });

  it("a recipient put off (450), then 554 for the message: the refusal settles the accepted recipient only, the put-off one is retried", async () => {
    let busy = 0;
    const sink = await relay((a) => (a.startsWith("busy@") && ++busy === 1 ? { code: 450, message: "4.2.1 mailbox busy" } : undefined),
      (n) => (n === 1 ? { code: 554, message: "5.7.1 message refused" } : undefined));
    const r = await submit(nc, structured("rcpt-450-554", { key: "rcpt-450-554", to: ["ok@example.net", "busy@example.net"] }));
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(deliveries(sink, r.messageId)).toEqual([["busy@example.net"]]);
    const deferred = st.history.find((e) => e.state === "Deferred");
    expect(deferred?.detail).toMatchObject({ pending: ["busy@example.net"], smtp: { code: 554 }, error: { code: "SMTP_TRANSIENT" } });
    expect(deferred?.detail.rejected?.map((x) => [x.recipient, x.transient, x.smtp?.code])).toEqual([["busy@example.net", true, 450], ["ok@example.net", false, 554]]);
    expect(st.history.filter((e) => e.state === "Bounced")).toEqual([]);
  });

  /** A relay that puts off busy@ (450) at every RCPT TO, a node delivering to it, and a mail to ok@ and busy@. */
  const busyRecipient = async (key: string, maxAttempts: string) => {
    const sink = await startSmtpSink({ rcpt: (a) => (a.startsWith("busy@") ? { code: 450, message: "4.2.1 mailbox busy" } : undefined) });
    sinks.push(sink);
    actors.push(await startProcessing(nc, sink.port, { FEN_MAX_ATTEMPTS: maxAttempts }));
    return { sink, r: await submit(nc, structured(key, { key, to: ["ok@example.net", "busy@example.net"] })) };
  };

  it("a recipient put off on every attempt after the others were delivered: Bounced, saying only the remaining one was refused", async () => {
    const { sink, r } = await busyRecipient("rcpt-busy-always", "2");
    const st = await until("Bounced", async () => { const s = await status(nc, r.mailId); return s.state === "Bounced" && s; });
    expect(deliveries(sink, r.messageId)).toEqual([["ok@example.net"]]);
    expect(st.history.at(-1)?.detail.error).toMatchObject({ code: "RETRIES_EXHAUSTED", message: expect.stringMatching(/^every remaining recipient refused \(1 of 2;/) });
    // Given up, not "retried": the mail's last record lists no refusal as transient.
    expect(st.history.at(-1)?.detail.rejected).toEqual([{ recipient: "busy@example.net", transient: false, smtp: expect.objectContaining({ code: 450 }) }]);
  });

  it("a recipient put off (450) at the last attempt while another took the mail: Sent, that recipient given up (not transient, RETRIES_EXHAUSTED), not left in limbo", async () => {
    const { sink, r } = await busyRecipient("rcpt-450-last", "1");
    const st = await until("Sent", async () => { const s = await status(nc, r.mailId); return s.state === "Sent" && s; });
    expect(deliveries(sink, r.messageId)).toEqual([["ok@example.net"]]);
    expect(st.history.at(-1)?.detail).toMatchObject({
      smtp: { code: 250 },
      rejected: [{ recipient: "busy@example.net", transient: false, smtp: expect.objectContaining({ code: 450, enhanced: "4.2.1" }) }],
      error: { code: "RETRIES_EXHAUSTED", message: expect.stringMatching(/^1 of 2 recipients still refused for now at the last attempt \(busy@example\.net: 450 4\.2\.1 mailbox busy\)/) },
    });
    // Nothing retries it: the work item is settled.
    await workSettled(nc);
    expect(sink.messages.filter((m) => m.messageId === r.messageId)).toHaveLength(1);
  });

  it("every recipient refused for good: Bounced, each refusal recorded, no retry", async () => {
    const sink = await relay(() => ({ code: 550, message: "5.1.1 no such user" }));
    const r = await submit(nc, structured("rcpt-all", { key: "rcpt-all", to: ["y@example.net", "z@example.net"] }));
    const st = await until("Bounced", async () => { const s = await status(nc, r.mailId); return s.state === "Bounced" && s; });
    expect(st.attempt).toBe(1);
    expect(st.history.at(-1)?.detail.rejected?.map((x) => x.recipient)).toEqual(["y@example.net", "z@example.net"]);
    expect(sink.dataCount()).toBe(0);
  });
});
