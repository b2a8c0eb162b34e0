import { describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { Codecs, ServiceSubjects } from "../../protocol/index.js";
import { callService } from "../../nodes/common/rpc.js";
import { createMetrics } from "../../nodes/common/metrics.js";
import type { Metrics } from "../../nodes/common/metrics.js";
import { systemClock } from "../../nodes/common/clock.js";
import { GatewayKeys, ProcessingKeys, loadConfig } from "../../nodes/config/index.js";
import { createGateway } from "../../nodes/gateway/index.js";
import { createDelivery, createProcessingNode, relayOptions } from "../../nodes/processing/index.js";
import type { MailClassifier } from "../../nodes/processing/index.js";
import { status, structured, submit, testLog, until } from "../helpers/system.js";
import { usePipeline } from "../helpers/suite.js";

const gwm = createMetrics({ defaults: false, role: "gateway" });
const pm = createMetrics({ defaults: false, role: "processing" });
const spamRule: MailClassifier = { version: "rule", classifyRaw: async (raws) => raws.map((r) => ({ score: /^Subject:.*SPAM/m.test(Buffer.from(r).toString("latin1")) ? 0.99 : 0.01 })) };
const tries = new Map<string, number>();
const p = usePipeline({
  sink: {
    rcpt: (a) => {
      if (a.endsWith("@bounce.example")) return { code: 550, message: "5.1.1 no such user" };
      if (a.endsWith("@never.example")) return { code: 451, message: "4.4.3 later" };
      if (a.endsWith("@once.example")) { const n = (tries.get(a) ?? 0) + 1; tries.set(a, n); if (n === 1) return { code: 451, message: "4.4.3 later" }; }
      return undefined;
    },
  },
  start: async (nc: NatsConnection, port: number) => {
    const g = createGateway({ nc, log: testLog, clock: systemClock, node: "gw-m", metrics: gwm }, loadConfig(GatewayKeys, {}));
    await g.start();
    const config = loadConfig(ProcessingKeys, { FEN_SMTP_PORT: String(port), FEN_RETRY_BASE_MS: "100", FEN_RETRY_MAX_MS: "300", FEN_MAX_ATTEMPTS: "2" });
    const n = createProcessingNode({ nc, log: testLog, clock: systemClock, random: () => 0.5, node: "p-m", metrics: pm, delivery: createDelivery(relayOptions(config)), classifier: spamRule }, config);
    await n.start();
    return [g, n];
  },
});
const val = async (m: Metrics, name: string) => (await m.registry.metrics()).split("\n").filter((l) => l.startsWith(name)).join("; ");

/**
 * The counters an operator's dashboard adds up, against what happened to a
 * known set of mails (states read back from mail.status): every mail that
 * ends Sent, Bounced, Quarantined or Rejected is counted once, in its
 * counter, whichever way it got there (a relay's reply, the classifier, an
 * operator's release or delete).
 */
describe("/metrics counters match what happened", () => {
  it("submitted, delivered, deferred, bounced, quarantined, rejected, refused recipients", async () => {
    const ids: Record<string, string> = {};
    const send = async (k: string, to: string, subject = k) => (ids[k] = (await submit(p.nc, structured(k, { key: k, to: [to], subject }))).mailId);
    await send("ok1", "a@ok.example"); await send("ok2", "b@ok.example");
    await send("b1", "x@bounce.example");
    await send("d1", "y@once.example");
    await send("n1", "z@never.example");
    await send("q1", "q@ok.example", "SPAM q1"); await send("q2", "r@ok.example", "SPAM q2");
    await submit(p.nc, structured("ok1", { key: "ok1", to: ["a@ok.example"], subject: "ok1" })); // duplicate
    const want: Record<string, string> = { ok1: "Sent", ok2: "Sent", b1: "Bounced", d1: "Sent", n1: "Bounced", q1: "Quarantined", q2: "Quarantined" };
    for (const [k, st] of Object.entries(want)) await until(`${k} ${st}`, async () => (await status(p.nc, ids[k]!)).state === st, 30_000, 100);
    // The operator releases q1 and deletes q2.
    await callService(p.nc, ServiceSubjects.quarantineRelease, Codecs.quarantineRequest, { kind: "mail.quarantine.release", v: 1, mailId: ids["q1"] as never, reason: "ok" }, Codecs.quarantineReply);
    await callService(p.nc, ServiceSubjects.quarantineDelete, Codecs.quarantineRequest, { kind: "mail.quarantine.delete", v: 1, mailId: ids["q2"] as never, reason: "spam" }, Codecs.quarantineReply);
    await until("q1 Sent", async () => (await status(p.nc, ids["q1"]!)).state === "Sent", 30_000, 100);
    expect((await status(p.nc, ids["q2"]!)).state).toBe("Rejected");
    // Seven mails accepted; the resubmission of ok1 is a duplicate, not counted.
    expect(await val(gwm, "fen_mails_submitted_total")).toBe("fen_mails_submitted_total 7");
    // Sent: ok1, ok2, d1 (second attempt), q1 (released). Deferred attempts: d1 once, n1 once (then out of attempts).
    // Bounced: b1 (550), n1 (RETRIES_EXHAUSTED). Quarantined: q1, q2. Rejected: q2, deleted by the operator.
    expect(await val(pm, "fen_mails_")).toBe([
      "fen_mails_delivered_total 4", "fen_mails_deferred_total 2", "fen_mails_bounced_total 2",
      "fen_mails_quarantined_total 2", "fen_mails_rejected_total 1",
    ].join("; "));
    expect(await val(pm, "fen_recipients_refused_total")).toBe('fen_recipients_refused_total{class="permanent"} 1; fen_recipients_refused_total{class="transient"} 3');
    expect(await val(pm, "fen_delivery_latency_seconds_count")).toBe("fen_delivery_latency_seconds_count 4");
    // A repeated delete of the same mail is answered again but is not a second rejection.
    await callService(p.nc, ServiceSubjects.quarantineDelete, Codecs.quarantineRequest, { kind: "mail.quarantine.delete", v: 1, mailId: ids["q2"] as never, reason: "spam" }, Codecs.quarantineReply).catch(() => undefined);
    expect(await val(pm, "fen_mails_rejected_total")).toBe("fen_mails_rejected_total 1");
  }, 120_000);
});
