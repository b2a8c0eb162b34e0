import { afterAll, beforeAll, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { Codecs, ServiceSubjects } from "../../protocol/index.js";
import type { QuarantineRequest } from "../../protocol/index.js";
import type { Actor } from "../../nodes/common/actor.js";
import { callService } from "../../nodes/common/rpc.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { SmtpSink } from "../../nodes/local/smtp-sink.js";
import type { MailClassifier } from "../../nodes/processing/index.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { connectAndProvision, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

/**
 * The quarantine policy is tested with a rule classifier (score 0.99 when the
 * subject says SPAM) so the test pins the pipeline's behaviour, not the
 * model's; the model's own verdicts are tested in test/classifier.
 */
const ruleClassifier: MailClassifier = {
  version: "rule-test-1",
  classifyRaw: async (raws) => raws.map((r) => ({ score: /^Subject:.*SPAM/m.test(Buffer.from(r).toString("latin1")) ? 0.99 : 0.01 })),
};

let cluster: TestCluster;
let nc: NatsConnection;
let sink: SmtpSink;
const actors: Actor[] = [];
beforeAll(async () => {
  cluster = await startTestCluster();
  nc = await connectAndProvision(cluster.urls);
  sink = await startSmtpSink();
  actors.push(await startGateway(nc), await startProcessing(nc, sink.port, { FEN_QUARANTINE_THRESHOLD: "0.9" }, ruleClassifier));
});
afterAll(async () => {
  for (const a of actors) await a.drain();
  await sink?.close();
  await nc?.close();
  await cluster?.dispose();
});

const quarantine = (req: QuarantineRequest) =>
  callService(nc, ServiceSubjects.quarantineList, Codecs.quarantineRequest, req, Codecs.quarantineReply);

it("quarantines a flagged mail with its verdict, and a released mail is delivered exactly once", async () => {
  const ham = await submit(nc, structured("ham", { key: "q-ham", subject: "lunch?" }));
  const spam = await submit(nc, structured("spam", { key: "q-spam", subject: "SPAM cheap pills" }));
  await until("ham Sent", async () => (await status(nc, ham.mailId)).state === "Sent");
  const q = await until("spam Quarantined", async () => { const s = await status(nc, spam.mailId); return s.state === "Quarantined" && s; });
  expect(q.history.at(-1)?.detail.classification).toEqual({ score: 0.99, verdict: "spam", modelVersion: "rule-test-1" });
  expect(sink.messages.map((m) => m.messageId)).toEqual([ham.messageId]);

  const listed = await quarantine({ kind: "mail.quarantine.list", v: 1, limit: 100 });
  expect(listed.mails.map((m) => m.mailId)).toEqual([spam.mailId]);

  await quarantine({ kind: "mail.quarantine.release", v: 1, mailId: spam.mailId as never, reason: "false positive, checked by ops" });
  const sent = await until("released mail Sent", async () => { const s = await status(nc, spam.mailId); return s.state === "Sent" && s; });
  expect(sent.history.map((e) => e.state)).toEqual([
    "PendingProcessing", "Processing", "Validated", "Quarantined", "PendingProcessing", "Processing", "Validated", "DeliveryScheduled", "Sent",
  ]);
  expect(sink.messages.filter((m) => m.messageId === spam.messageId)).toHaveLength(1);
  expect((await quarantine({ kind: "mail.quarantine.list", v: 1, limit: 100 })).mails).toEqual([]);
  // A second release is refused: the mail is no longer quarantined.
  await expect(quarantine({ kind: "mail.quarantine.release", v: 1, mailId: spam.mailId as never, reason: "again" })).rejects.toMatchObject({ code: "NOT_FOUND" });
});

it("deletes a quarantined mail with a reason (Rejected, never sent)", async () => {
  const spam = await submit(nc, structured("spam2", { key: "q-spam-2", subject: "SPAM again" }));
  await until("Quarantined", async () => (await status(nc, spam.mailId)).state === "Quarantined");
  await quarantine({ kind: "mail.quarantine.delete", v: 1, mailId: spam.mailId as never, reason: "confirmed spam" });
  const st = await status(nc, spam.mailId);
  expect(st.state).toBe("Rejected");
  expect(st.history.at(-1)?.detail.reason).toContain("confirmed spam");
  expect(sink.messages.some((m) => m.messageId === spam.messageId)).toBe(false);
});

it("mail.classify answers without storing or sending anything", async () => {
  const r = await callService(nc, ServiceSubjects.classify, Codecs.classifyRequest,
    { kind: "mail.classify", v: 1, mail: structured("c", { subject: "SPAM?" }).mail }, Codecs.classifyReply);
  expect(r).toMatchObject({ flagged: true, verdict: "spam", modelVersion: "rule-test-1" });
});
