import net from "node:net";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { createMetrics } from "../../nodes/common/metrics.js";
import { systemClock } from "../../nodes/common/clock.js";
import { ProcessingKeys, loadConfig } from "../../nodes/config/index.js";
import { createDelivery, createProcessingNode, passThroughClassifier, relayOptions } from "../../nodes/processing/index.js";
import type { RelayOptions } from "../../nodes/processing/index.js";
import { freePort } from "../../nodes/local/nats-cluster.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import { rawRelay } from "../helpers/raw-relay.js";
import { startGateway, status, structured, submit, until } from "../helpers/system.js";
import { useProvisionedCluster } from "../helpers/suite.js";

// A relay misbehaving as operators meet it, each case against a real server speaking SMTP by hand.

const relay = (port: number, extra: Partial<RelayOptions> = {}): RelayOptions => ({
  host: "127.0.0.1", port, secure: false, requireTls: false, tlsRejectUnauthorized: false, poolSize: 1, timeoutMs: 2000, transactionTimeoutMs: 10_000, ...extra,
});
const envelope = { from: "a@example.org", to: ["b@example.net"] };
const mail = (i: number) => Buffer.from(`From: a@example.org\r\nTo: b@example.net\r\nMessage-ID: <f${i}@example.org>\r\nSubject: ${i}\r\n\r\nbody ${i}\r\n`);

const relays: { close: () => void }[] = [];
afterAll(() => { for (const r of relays) r.close(); });

/**
 * A relay for many pooled connections. It serves at most `limit` sessions at once and turns away each connection
 * beyond them (`refuse`): with a 421 reply as its greeting (Postfix's smtpd_client_connection_count_limit), by
 * closing it before any greeting, or by resetting it. On the connections `stall` picks (1 is the first) it never
 * answers the final ".". Counts each Message-ID it took.
 */
async function pooledRelay({ limit = Infinity, refuse = "421", stall = () => false }: {
  limit?: number; refuse?: "421" | "close" | "reset"; stall?: (connection: number) => boolean;
}) {
  let connections = 0;
  let open = 0;
  let refused = 0;
  const got = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("error", () => undefined);
    sock.on("close", () => { sockets.delete(sock); open--; });
    const stalls = stall(++connections);
    if (++open > limit) {
      refused++;
      if (refuse === "421") sock.end("421 4.7.0 too many connections from your host\r\n");
      else if (refuse === "close") sock.end();
      else sock.resetAndDestroy();
      return;
    }
    sock.write("220 limited.example ESMTP\r\n");
    let buf = "";
    let inData = false;
    sock.on("data", (chunk: Buffer) => {
      buf += chunk.toString("latin1");
      for (;;) {
        if (inData) {
          const end = buf.indexOf("\r\n.\r\n");
          if (end < 0) return;
          const id = /^Message-ID: (\S+)/m.exec(buf.slice(0, end))?.[1] ?? "?";
          got.set(id, (got.get(id) ?? 0) + 1);
          buf = buf.slice(end + 5);
          inData = false;
          if (!stalls) sock.write("250 2.0.0 queued\r\n");
          continue;
        }
        const eol = buf.indexOf("\r\n");
        if (eol < 0) return;
        const verb = buf.slice(0, 4).toUpperCase();
        buf = buf.slice(eol + 2);
        if (verb === "EHLO") sock.write("250-limited.example\r\n250 8BITMIME\r\n");
        else if (verb === "DATA") { inData = true; sock.write("354 go on\r\n"); }
        else if (verb === "QUIT") sock.end("221 bye\r\n");
        else sock.write("250 ok\r\n");
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const r = {
    port: (server.address() as AddressInfo).port, got, refused: () => refused,
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
  relays.push(r);
  return r;
}

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

describe("FEN_SMTP_REQUIRE_TLS", () => {
  it("a relay that does not offer STARTTLS: a refusal of the session, retried, and nothing goes in clear", async () => {
    const sink = await startSmtpSink(); // smtp-server without STARTTLS: answers it 500
    const d = createDelivery(relay(sink.port, { requireTls: true }));
    try {
      expect(await d.send(envelope, mail(40))).toMatchObject({ kind: "transient", smtp: { code: 500, command: "STARTTLS" } });
      expect(sink.dataCount()).toBe(0);
    } finally {
      d.close();
      await sink.close();
    }
  });
});

describe("a relay that limits concurrent sessions", () => {
  it.each(["421", "close", "reset"] as const)("turning away sessions beyond 4 (%s): every mail goes through the sessions it serves, none fails, each once", async (refuse) => {
    const r = await pooledRelay({ limit: 4, refuse });
    const lines: string[] = [];
    const log = pino(new Writable({ write: (chunk: Buffer, _enc, done) => { lines.push(chunk.toString()); done(); } }));
    const d = createDelivery(relay(r.port, { poolSize: 16 }), { log });
    try {
      for (const wave of [0, 1]) {
        const outcomes = await Promise.all(Array.from({ length: 60 }, (_, i) => d.send(envelope, mail(1000 * (wave + 1) + i))));
        expect(outcomes.filter((o) => o.kind !== "sent"), `wave ${wave}`).toEqual([]);
      }
    } finally {
      d.close();
    }
    expect(r.got.size).toBe(120);
    expect([...r.got.values()].every((n) => n === 1)).toBe(true);
    expect(r.refused()).toBeGreaterThan(0);
    // The operator learns of it: the pool keeps to at most the 4 sessions the relay served.
    const kept = lines.map((l) => JSON.parse(l) as { level: number; sessions?: number }).filter((l) => l.level === 40 && l.sessions !== undefined);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.every((l) => l.sessions! >= 1 && l.sessions! <= 4)).toBe(true);
  });
});

describe("through a processing node", () => {
  const c = useProvisionedCluster();
  /** A processing node delivering to `port`, its log lines kept. */
  const node = async (port: number, env: Record<string, string>) => {
    const lines: Record<string, unknown>[] = [];
    const log = pino(new Writable({ write: (chunk: Buffer, _enc, done) => { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done(); } }));
    const config = loadConfig(ProcessingKeys, { FEN_SMTP_PORT: String(port), FEN_RETRY_BASE_MS: "100", FEN_RETRY_MAX_MS: "200", ...env });
    const n = createProcessingNode({
      nc: c.nc, log, clock: systemClock, random: () => 0.5, node: `relay-faults-${port}`, metrics: createMetrics({ defaults: false }),
      delivery: createDelivery(relayOptions(config), { log }), classifier: passThroughClassifier,
    }, config);
    await n.start();
    return { n, lines };
  };

  it("a relay that stays down: Bounced RETRIES_EXHAUSTED after exactly FEN_MAX_ATTEMPTS, and the log says why each attempt failed", async () => {
    const gateway = await startGateway(c.nc);
    const { n, lines } = await node(await freePort(), { FEN_MAX_ATTEMPTS: "3" });
    try {
      const r = await submit(c.nc, structured("down", { key: "relay-faults-down" }));
      const st = await until("Bounced", async () => { const s = await status(c.nc, r.mailId); return s.state === "Bounced" && s; });
      expect(st.attempt).toBe(3);
      expect(st.history.filter((e) => e.state === "DeliveryScheduled")).toHaveLength(3);
      expect(st.history.at(-1)?.detail.error).toMatchObject({ code: "RETRIES_EXHAUSTED", message: expect.stringMatching(/^connection refused or reset: .*ECONNREFUSED/) });
      const said = lines.filter((l) => l["mailId"] === r.mailId && (l["msg"] === "deferred" || l["msg"] === "bounced"));
      expect(said.map((l) => [l["msg"], l["attempt"], l["failure"]])).toEqual([
        ["deferred", 1, "connection refused or reset"], ["deferred", 2, "connection refused or reset"], ["bounced", 3, "connection refused or reset"],
      ]);
    } finally {
      await n.drain();
      await gateway.drain();
    }
  });

  it("noise in answer to the final \".\": Deferred in doubt, then Sent; the relay has it twice, flagged", async () => {
    const gateway = await startGateway(c.nc);
    const r0 = await scripted({ afterDot: (sock, n) => sock.write(n === 1 ? "queued, thanks\r\n" : "250 2.0.0 queued\r\n") });
    const { n, lines } = await node(r0.port, {});
    try {
      const r = await submit(c.nc, structured("noise", { key: "relay-faults-noise" }));
      const st = await until("Sent or Bounced", async () => { const s = await status(c.nc, r.mailId); return (s.state === "Sent" || s.state === "Bounced") && s; });
      expect(st.state).toBe("Sent");
      expect(st.history.filter((e) => e.state === "Deferred").map((e) => e.detail)).toMatchObject([{ inDoubt: true, error: { code: "SMTP_TRANSIENT" } }]);
      expect(r0.received()).toBe(2);
      expect(lines.find((l) => l["mailId"] === r.mailId && l["msg"] === "deferred")).toMatchObject({ inDoubt: true });
    } finally {
      await n.drain();
      await gateway.drain();
    }
  });
});

describe("one pooled connection stalls", () => {
  it("the relay never answers the final \".\" on one connection: the other mails keep flowing; that one is in doubt at the socket timeout", async () => {
    const r = await pooledRelay({ stall: (n) => n === 1 });
    const d = createDelivery(relay(r.port, { poolSize: 4, timeoutMs: 1500 }));
    const t0 = Date.now();
    try {
      const outcomes = await Promise.all(Array.from({ length: 40 }, (_, i) => d.send(envelope, mail(3000 + i)).then((o) => ({ o, ms: Date.now() - t0 }))));
      const stuck = outcomes.filter(({ o }) => o.kind !== "sent");
      expect(stuck.map(({ o }) => o)).toMatchObject([{ kind: "transient", inDoubt: true, reason: expect.stringMatching(/^the relay did not answer in time/) }]);
      // Every other mail was through before the stalled one was given up.
      expect(Math.max(...outcomes.filter(({ o }) => o.kind === "sent").map(({ ms }) => ms))).toBeLessThan(stuck[0]!.ms);
    } finally {
      d.close();
    }
    expect(r.got.size).toBe(40);
  });
});
