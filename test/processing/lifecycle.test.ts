import { spawnSync } from "node:child_process";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Actor } from "../../nodes/common/actor.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { SmtpSink } from "../../nodes/local/smtp-sink.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Codecs, Names, mailIdFromIdempotencyKey, workSubject } from "../../protocol/index.js";
import type { WorkItem } from "../../protocol/index.js";
import { connectAndProvision, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

let cluster: TestCluster;
let nc: NatsConnection;
let gateway: Actor;
let sink: SmtpSink;
beforeAll(async () => {
  cluster = await startTestCluster();
  nc = await connectAndProvision(cluster.urls);
  gateway = await startGateway(nc);
  // A slow relay, so work is in flight when drain() is called.
  sink = await startSmtpSink({ delayMs: 300 });
});
afterAll(async () => { await gateway?.drain(); await sink?.close(); await nc?.close(); await cluster?.dispose(); });

it("drain() lets in-flight deliveries finish and resolves closed", async () => {
  const node = await startProcessing(nc, sink.port);
  expect(node.status().state).toBe("running");
  const r = await submit(nc, structured("drain", { key: "drain-1" }));
  await until("DeliveryScheduled", async () => (await status(nc, r.mailId)).state === "DeliveryScheduled");
  await node.drain();
  await node.closed;
  expect(node.status().state).toBe("closed");
  expect((await status(nc, r.mailId)).state).toBe("Sent");
  expect(sink.messages.map((m) => m.messageId)).toEqual([r.messageId]);
});

it("a work item this node cannot read (a newer version's, with a field it does not know) is left in MAIL_WORK for another node, not dropped", async () => {
  const jsm = await jetstreamManager(nc);
  const mailId = mailIdFromIdempotencyKey("from-a-newer-version");
  const raw = Buffer.from("From: a@example.org\r\nTo: b@example.net\r\nSubject: later\r\n\r\nhi\r\n");
  const item: WorkItem = {
    kind: "mail.work", v: 1, mailId, messageId: "<newer@example.org>", submittedAt: new Date().toISOString(),
    envelope: { from: "a@example.org", to: ["b@example.net"] }, size: raw.length, body: { inline: raw.toString("base64") }, released: false,
  };
  const newer = new TextEncoder().encode(JSON.stringify({ ...item, priority: "high" }));
  expect(() => Codecs.workItem.decode(newer)).toThrow();
  const ack = await jetstream(nc).publish(workSubject(mailId), newer, { msgID: mailId });
  const node = await startProcessing(nc, sink.port);
  try {
    await until("the node had the item", async () => (await jsm.consumers.info(Names.workStream, Names.workConsumer)).delivered.stream_seq >= ack.seq);
    // Terminating it would remove it from the work queue (the mail lost): it must stay there while the node runs.
    for (const end = Date.now() + 2000; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
      expect(await jsm.streams.getMessage(Names.workStream, { seq: ack.seq })).not.toBeNull();
    }
    expect((await jsm.consumers.info(Names.workStream, Names.workConsumer)).num_ack_pending).toBe(1);
  } finally {
    await node.drain();
    await jsm.streams.deleteMessage(Names.workStream, ack.seq);
  }
});

it("a node with invalid configuration refuses to start, naming every bad key", () => {
  const root = path.resolve(import.meta.dirname, "../..");
  const res = spawnSync(process.execPath, ["--import", "tsx", "nodes/processing/main.ts"], {
    cwd: root, encoding: "utf8", timeout: 30_000,
    env: { ...process.env, FEN_MODEL_DIR: "none", FEN_SMTP_PORT: "99999", FEN_CONCURRENCY: "zero" },
  });
  expect(res.status).toBe(1);
  expect(res.stderr).toContain("CONFIG_INVALID");
  expect(res.stderr).toContain("FEN_SMTP_PORT");
  expect(res.stderr).toContain("FEN_CONCURRENCY");
});
