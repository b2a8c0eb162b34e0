import { afterAll, describe, expect, it } from "vitest";
import { createDelivery } from "../../nodes/processing/index.js";
import type { RelayOptions } from "../../nodes/processing/index.js";
import { freePort } from "../../nodes/local/nats-cluster.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { SmtpSink } from "../../nodes/local/smtp-sink.js";

// The delivery opens its own no-delay sockets for nodemailer (connectNoDelay):
// these tests show every way of reaching a real relay still works through it.

const sinks: SmtpSink[] = [];
afterAll(async () => {
  for (const s of sinks) await s.close();
});

const relay = (port: number, extra: Partial<RelayOptions> = {}): RelayOptions => ({
  host: "127.0.0.1", port, secure: false, requireTls: false, tlsRejectUnauthorized: false, poolSize: 1, timeoutMs: 5000, ...extra,
});
const envelope = { from: "a@example.org", to: ["b@example.net"] };
const mail = (i: number) => Buffer.from(`From: a@example.org\r\nTo: b@example.net\r\nMessage-ID: <d${i}@example.org>\r\nSubject: ${i}\r\n\r\nbody ${i}\r\n`);

describe("SMTP delivery over the no-delay socket", () => {
  it("sends mail after mail over one pooled connection", async () => {
    const sink = await startSmtpSink();
    sinks.push(sink);
    const d = createDelivery(relay(sink.port));
    try {
      for (let i = 0; i < 20; i++) expect((await d.send(envelope, mail(i))).kind).toBe("sent");
    } finally {
      d.close();
    }
    expect(sink.messages.map((m) => m.messageId)).toEqual(Array.from({ length: 20 }, (_, i) => `<d${i}@example.org>`));
    expect(sink.messages[0]!.to).toEqual(["b@example.net"]);
  });

  it.each([
    { how: "upgrades with STARTTLS, and requireTls holds", sink: { starttls: true }, client: { requireTls: true } },
    { how: "speaks implicit TLS (port 465 style)", sink: { implicitTls: true }, client: { secure: true } },
  ])("$how on that socket", async ({ sink: sinkOpts, client }) => {
    const sink = await startSmtpSink(sinkOpts);
    sinks.push(sink);
    const d = createDelivery(relay(sink.port, client));
    try {
      expect((await d.send(envelope, mail(100))).kind).toBe("sent");
    } finally {
      d.close();
    }
    expect(sink.messages[0]!.secure).toBe(true);
  });

  it("a relay that is not listening is a transient failure, classified as refused", async () => {
    const d = createDelivery(relay(await freePort()));
    try {
      const outcome = await d.send(envelope, mail(300));
      expect(outcome.kind).toBe("transient");
      expect(outcome.kind === "transient" && outcome.reason).toMatch(/^connection refused or reset: Connection error: connect ECONNREFUSED/);
    } finally {
      d.close();
    }
  });
});
