import { expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { Codecs, Names, ServiceSubjects } from "../../protocol/index.js";
import type { QueueReply } from "../../protocol/index.js";
import { callService } from "../../nodes/common/rpc.js";
import { fastemailnet } from "../helpers/cli.js";
import { pool, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";
import { usePipeline } from "../helpers/suite.js";

/**
 * A deferred mail waits for its retry as a JetStream nak(delay), holding an
 * ack-pending slot of the work consumer all that time; when the slots run
 * out the server delivers no new work. Mail that one destination keeps
 * deferring must not hold back mail that can be delivered.
 */
// The relay refuses every recipient at slow.example for now.
const p = usePipeline({
  sink: { rcpt: (a) => (a.endsWith("@slow.example") ? { code: 451, message: "4.4.3 try later" } : undefined) },
  start: async (nc, port) => [await startGateway(nc), await startProcessing(nc, port, { FEN_RETRY_BASE_MS: "600000", FEN_RETRY_MAX_MS: "600000" })],
});

it("2,100 mails deferred for 10 minutes (more than the work consumer's old 2,000 slots) do not hold back a fresh mail", async () => {
  const DEFERRED = 2100;
  const ids = await pool(Array.from({ length: DEFERRED }, (_, i) => i), 32, async (i) =>
    (await submit(p.nc, structured(`slow-${i}`, { key: `slow-${i}`, to: [`user${i}@slow.example`] }))).mailId);
  const jsm = await jetstreamManager(p.nc);
  await until(`${DEFERRED} mails deferred`, async () => {
    const ci = await jsm.consumers.info(Names.workStream, Names.workConsumer);
    return ci.num_pending === 0 && ci.num_ack_pending === DEFERRED && ci;
  }, 120_000, 500);
  expect((await status(p.nc, ids[0]!)).state).toBe("Deferred");

  const fresh = await submit(p.nc, structured("fresh", { key: "fresh-1", to: ["someone@example.net"] }));
  await until("the fresh mail Sent", async () => (await status(p.nc, fresh.mailId)).state === "Sent", 30_000);
  expect(p.sink.messages.map((m) => m.messageId)).toEqual([fresh.messageId]);
}, 180_000);

it("mail.queue (the operator's mailq) pages through those deferred mails oldest first, with retry time and error; so does `fastemailnet queue`", async () => {
  const pages: QueueReply[] = [];
  for (let after = 0; ;) {
    const r = await callService(p.nc, ServiceSubjects.queue, Codecs.queueRequest, { kind: "mail.queue", v: 1, limit: 1000, after }, Codecs.queueReply);
    pages.push(r);
    if (r.next === undefined) break;
    after = r.next;
  }
  expect(pages.map((r) => [r.mails.length, r.remaining])).toEqual([[1000, 2100], [1000, 1100], [100, 100]]);
  expect(pages[0]).toMatchObject({ waiting: 0, held: 2100 });
  const mails = pages.flatMap((r) => r.mails);
  expect(new Set(mails.map((m) => m.mailId)).size).toBe(2100);
  expect(mails.every((m, i) => i === 0 || m.seq > mails[i - 1]!.seq)).toBe(true);
  for (const m of mails) {
    expect(m).toMatchObject({ state: "Deferred", attempt: 1, recipients: 1, error: { code: "SMTP_TRANSIENT" } });
    expect(Date.parse(m.retryAt!) - Date.parse(m.since)).toBeGreaterThan(400_000); // the 10-minute backoff, less its jitter
  }

  const r = await fastemailnet(p.cluster.urls, "queue", "--limit", "2");
  console.log(`fastemailnet queue --limit 2:\n${r.stdout}`);
  expect(r.code).toBe(0);
  const lines = r.stdout.trim().split("\n");
  expect(lines.slice(0, 2).map((l) => l.split(/\s+/).slice(0, 2))).toEqual(mails.slice(0, 2).map((m) => [m.mailId, "Deferred"]));
  expect(lines[0]).toMatch(/retry at .*SMTP_TRANSIENT: 1 of 1 recipients refused for now \(user\d+@slow\.example: 451 4\.4\.3 try later\)/);
  expect(lines[2]).toBe(`2 shown of 2100 from here (0 waiting for a node, 2100 held by nodes); next page: queue --after ${mails[1]!.seq}`);
  expect((await fastemailnet(p.cluster.urls, "queue", "--limit", "0")).code).toBe(2);
}, 60_000);
