import { afterAll, describe, expect, it } from "vitest";
import { createDelivery } from "../../nodes/processing/index.js";
import type { RelayOptions } from "../../nodes/processing/index.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import { rawRelay } from "../helpers/raw-relay.js";

// A relay misbehaving as operators meet it, each case against a real server speaking SMTP by hand.

const relay = (port: number, extra: Partial<RelayOptions> = {}): RelayOptions => ({
  host: "127.0.0.1", port, secure: false, requireTls: false, tlsRejectUnauthorized: false, poolSize: 1, timeoutMs: 2000, transactionTimeoutMs: 10_000, ...extra,
});
const envelope = { from: "a@example.org", to: ["b@example.net"] };
const mail = (i: number) => Buffer.from(`From: a@example.org\r\nTo: b@example.net\r\nMessage-ID: <f${i}@example.org>\r\nSubject: ${i}\r\n\r\nbody ${i}\r\n`);

const relays: { close: () => void }[] = [];
afterAll(() => { for (const r of relays) r.close(); });
const scripted = async (script: Parameters<typeof rawRelay>[0]) => { const r = await rawRelay(script); relays.push(r); return r; };

describe("replies that are not SMTP replies", () => {
  it("noise in answer to the final \".\" is retried in doubt (the relay may have the mail), never bounced", async () => {
    for (const [i, noise] of ["yes, got it", "5", "354 what now"].entries()) {
      const r = await scripted({ afterDot: (sock) => sock.write(`${noise}\r\n`) });
      const d = createDelivery(relay(r.port));
      try {
        const o = await d.send(envelope, mail(10 + i));
        expect(o, noise).toMatchObject({ kind: "transient", inDoubt: true });
        // Not a reply code: "5" is no SMTP reply; 354 is one, but no answer to the end of a message.
        if (noise !== "354 what now") expect(o.kind === "transient" && o.smtp, noise).toBeUndefined();
      } finally {
        d.close();
      }
      expect(r.received()).toBe(1);
    }
  });

  it("noise in answer to MAIL FROM is retried, not taken for a refusal of the envelope", async () => {
    const r = await scripted({ onMail: (sock) => { sock.write("ok whatever\r\n"); return false; } });
    const d = createDelivery(relay(r.port));
    try {
      const o = await d.send(envelope, mail(20));
      expect(o).toMatchObject({ kind: "transient", reason: expect.stringMatching(/^the relay's reply is not an SMTP reply/) });
      expect(o.kind === "transient" && o.inDoubt).toBeFalsy();
    } finally {
      d.close();
    }
  });
});

describe("the connection to the relay", () => {
  it("a relay host name that does not resolve is said so (not \"connection refused\"), and retried", async () => {
    const d = createDelivery({ ...relay(25), host: "no-such-relay.invalid" });
    try {
      expect(await d.send(envelope, mail(30))).toMatchObject({ kind: "transient", reason: expect.stringMatching(/^the relay's name did not resolve: .*no-such-relay\.invalid/) });
    } finally {
      d.close();
    }
  });

  it("STARTTLS with a certificate that fails verification: a TLS failure, retried, and nothing goes in clear", async () => {
    const sink = await startSmtpSink({ starttls: true }); // smtp-server's own certificate: not one a client can verify
    const d = createDelivery(relay(sink.port, { tlsRejectUnauthorized: true }));
    try {
      expect(await d.send(envelope, mail(31))).toMatchObject({ kind: "transient", reason: expect.stringMatching(/^TLS handshake failed: /) });
      expect(sink.dataCount()).toBe(0);
    } finally {
      d.close();
      await sink.close();
    }
  });
});
