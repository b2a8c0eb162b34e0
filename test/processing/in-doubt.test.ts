import { expect, it, onTestFinished } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { CLAIM_TTL_MS, Names, mailIdFromIdempotencyKey } from "../../protocol/index.js";
import type { MailId } from "../../protocol/index.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import { rawRelay } from "../helpers/raw-relay.js";
import { usePipeline } from "../helpers/suite.js";
import { startGateway, startProcessing, status, structured, submit, until, workSettled } from "../helpers/system.js";

/**
 * An attempt whose outcome is unknown (the whole message out and no reply,
 * or a node that died after its claim) may have reached the relay. Whatever
 * later attempts come to, the mail's record must keep saying so: a Bounced
 * mail "in doubt" may have been delivered, a plain Bounced one was not.
 * Each test starts its own relay and processing node and drains the node,
 * so no node takes another test's mail.
 */
const p = usePipeline({ start: async (nc) => [await startGateway(nc)] });

/**
 * Claims `key`'s mail as dead nodes would, once per attempt in `attempts`: each claim's clock runs CLAIM_TTL_MS
 * behind, so its claim looks dead at once, and none records an outcome (as a node killed mid-delivery).
 */
async function claimedByDeadNodes(key: string, attempts: readonly number[]) {
  const reply = await submit(p.nc, structured(key, { key }));
  const mailId = mailIdFromIdempotencyKey(key) as MailId;
  expect(reply.mailId).toBe(mailId);
  const js = jetstream(p.nc);
  const kv = await new Kvm(js).open(Names.statusBucket);
  const past = { now: () => Date.now() - CLAIM_TTL_MS - 5_000 };
  let cur = await createMailStateStore({ js, kv, clock: past, node: "dead-0" }).begin(mailId, new Date().toISOString(), ["rcpt@example.net"]);
  for (const attempt of attempts) {
    const dead = createMailStateStore({ js, kv, clock: past, node: `dead-${attempt}` });
    // A takeover's resend (attempt > 1 here) says inDoubt on its Processing event and its claim, as a node does.
    const doubt = attempt > 1 ? { detail: { inDoubt: true } } : {};
    cur = await dead.advance(cur, [{ state: "Processing", ...doubt }, { state: "Validated" }, { state: "DeliveryScheduled", ...doubt }], ["rcpt@example.net"], attempt);
  }
  return reply;
}

it("a mail in doubt at one attempt, then refused for now until its attempts are spent: Bounced RETRIES_EXHAUSTED still in doubt", async () => {
  // Attempt 1: the connection drops after the final "." (in doubt). Attempts 2 and 3: 451 to the message.
  const relay = await rawRelay({ afterDot: (sock, n) => (n === 1 ? sock.destroy() : sock.write("451 4.3.0 try again later\r\n")) });
  onTestFinished(() => relay.close());
  const node = await startProcessing(p.nc, relay.port, { FEN_MAX_ATTEMPTS: "3" });
  try {
    const r = await submit(p.nc, structured("doubt-then-451", { key: "doubt-then-451" }));
    const st = await until("Bounced", async () => { const s = await status(p.nc, r.mailId); return s.state === "Bounced" && s; });
    expect(relay.received()).toBe(3);
    expect(st.history.filter((e) => e.state === "Deferred" || e.state === "Bounced").map((e) => [e.state, e.attempt, e.detail.smtp?.code, e.detail.inDoubt])).toEqual([
      ["Deferred", 1, undefined, true], ["Deferred", 2, 451, true], ["Bounced", 3, 451, true],
    ]);
    expect(st.history.at(-1)?.detail.error?.code).toBe("RETRIES_EXHAUSTED");
  } finally {
    await node.drain();
  }
}, 60_000);

it("a mail a dead node left in doubt, whose resend the relay refuses for good: Bounced SMTP_PERMANENT still in doubt", async () => {
  const r = await claimedByDeadNodes("dead-then-550", [1]);
  const sink = await startSmtpSink({ respond: () => ({ code: 550, message: "5.7.1 refused" }) });
  onTestFinished(() => sink.close());
  const node = await startProcessing(p.nc, sink.port, { FEN_MAX_ATTEMPTS: "2" });
  try {
    const st = await until("Bounced", async () => { const s = await status(p.nc, r.mailId); return s.state === "Bounced" && s; }, 60_000);
    expect(sink.dataCount()).toBe(1);
    expect(st.history.map((e) => [e.state, e.attempt, e.detail.inDoubt])).toEqual([
      ["PendingProcessing", 0, undefined], ["Processing", 1, undefined], ["Validated", 1, undefined], ["DeliveryScheduled", 1, undefined],
      ["Processing", 2, true], ["Validated", 2, undefined], ["DeliveryScheduled", 2, true], ["Bounced", 2, true],
    ]);
    expect(st.history.at(-1)?.detail).toMatchObject({ smtp: { code: 550 }, error: { code: "SMTP_PERMANENT" } });
    await workSettled(p.nc);
  } finally {
    await node.drain();
  }
}, 90_000);

it("a mail whose node died after its claim at the last attempt is sent once more, in doubt (that node may never have reached the relay)", async () => {
  const r = await claimedByDeadNodes("dead-once-at-last", [1]);
  const sink = await startSmtpSink();
  onTestFinished(() => sink.close());
  const node = await startProcessing(p.nc, sink.port, { FEN_MAX_ATTEMPTS: "1" });
  try {
    const st = await until("Sent or Bounced", async () => { const s = await status(p.nc, r.mailId); return (s.state === "Bounced" || s.state === "Sent") && s; }, 60_000);
    expect(st.history.slice(-4).map((e) => [e.state, e.attempt, e.detail.inDoubt])).toEqual([
      ["Processing", 2, true], ["Validated", 2, undefined], ["DeliveryScheduled", 2, true], ["Sent", 2, undefined],
    ]);
    expect(sink.dataCount()).toBe(1);
    await workSettled(p.nc);
  } finally {
    await node.drain();
  }
}, 90_000);

it("a mail whose nodes keep dying after their claims is not sent again without bound: after a resend past FEN_MAX_ATTEMPTS also dies, Bounced RETRIES_EXHAUSTED in doubt, nothing sent", async () => {
  // Attempt 1's node died mid-delivery; the node that took it over (attempt 2, past the one allowed) died too.
  const r = await claimedByDeadNodes("dead-twice", [1, 2]);
  const sink = await startSmtpSink();
  onTestFinished(() => sink.close());
  const node = await startProcessing(p.nc, sink.port, { FEN_MAX_ATTEMPTS: "1" });
  try {
    const st = await until("Bounced or Sent", async () => { const s = await status(p.nc, r.mailId); return (s.state === "Bounced" || s.state === "Sent") && s; }, 60_000);
    expect(st.state).toBe("Bounced");
    expect(st.history.slice(-2).map((e) => [e.state, e.attempt, e.detail.inDoubt])).toEqual([["DeliveryScheduled", 2, true], ["Bounced", 2, true]]);
    expect(st.history.at(-1)?.detail.error).toMatchObject({ code: "RETRIES_EXHAUSTED", message: expect.stringMatching(/^attempt 2, past the last of 1 \(FEN_MAX_ATTEMPTS\), ended with its node/) });
    await workSettled(p.nc);
    expect(sink.dataCount()).toBe(0);
  } finally {
    await node.drain();
  }
}, 90_000);
