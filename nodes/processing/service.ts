import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import type { Service } from "@nats-io/services";
import {
  Codecs, FenError, Names, ServiceSubjects, quarantineSubject, workSubject,
} from "../../protocol/index.js";
import type { ClassifyReply, MailId, QuarantineReply, WorkItem } from "../../protocol/index.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import type { MailStateStore } from "../common/mail-state.js";
import { serveEndpoint } from "../common/rpc.js";
import { isNotFound } from "../common/js-errors.js";
import { composeStructured, messageIdForPreview } from "../gateway/index.js";
import type { MailClassifier } from "./classifier.js";

export const PROCESSING_VERSION = "0.1.0";

export interface ProcessingServiceDeps {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly state: MailStateStore;
  readonly classifier: MailClassifier;
  readonly clock: Clock;
  readonly log: Logger;
  readonly quarantineThreshold: number;
}

/**
 * The `fen-processing` micro-service: `mail.classify` ("would this be
 * flagged?", nothing is stored or sent) and the operator's quarantine
 * requests. A quarantined mail is kept in MAIL_QUARANTINE until an operator
 * releases it (a new work item that skips the classifier: delivered once)
 * or deletes it (Rejected, with the operator's reason).
 */
export async function startProcessingService(deps: ProcessingServiceDeps): Promise<Service> {
  const { js, jsm, state, log } = deps;
  const service = await new Svcm(deps.nc).add({
    name: Names.processingService, version: PROCESSING_VERSION, description: "FastEmailNet classification and quarantine",
  });

  serveEndpoint(service, { name: "classify", subject: ServiceSubjects.classify }, async (data) => {
    const req = Codecs.classifyRequest.decode(data);
    const raw = "raw" in req.mail
      ? Buffer.from(req.mail.raw, "base64")
      : await composeStructured(req.mail, messageIdForPreview(), new Date(deps.clock.now()));
    const [s] = await deps.classifier.classifyRaw([raw]);
    const score = s?.score ?? 0;
    const flagged = score >= deps.quarantineThreshold;
    const reply: ClassifyReply = { kind: "mail.classify.reply", v: 1, score, verdict: flagged ? "spam" : "ham", flagged, modelVersion: deps.classifier.version };
    return Codecs.classifyReply.encode(reply);
  }, log);

  const quarantined = async (mailId: MailId) => {
    const cur = await state.get(mailId);
    if (!cur) throw new FenError("NOT_FOUND", `no mail ${mailId}`);
    if (cur.record.state !== "Quarantined") throw new FenError("NOT_FOUND", `mail ${mailId} is ${cur.record.state}, not Quarantined`);
    const msg = await jsm.streams.getMessage(Names.quarantineStream, { last_by_subj: quarantineSubject(mailId) });
    if (!msg) throw new FenError("NOT_FOUND", `mail ${mailId} is not in ${Names.quarantineStream}`);
    return { cur, msg };
  };

  serveEndpoint(service, { name: "quarantine", subject: ServiceSubjects.quarantineAll }, async (data) => {
    const req = Codecs.quarantineRequest.decode(data);
    const reply: QuarantineReply = { kind: "mail.quarantine.reply", v: 1, mails: [], done: true };
    if (req.kind === "mail.quarantine.list") {
      try {
        const it = await jsm.direct.getBatch(Names.quarantineStream, { seq: 1, batch: req.limit });
        for await (const m of it) {
          const item = Codecs.workItem.decode(m.data);
          const cur = await state.get(item.mailId);
          if (cur?.record.state !== "Quarantined") continue;
          const c = cur.record.detail.classification;
          reply.mails.push({ mailId: item.mailId, score: c?.score ?? NaN, modelVersion: c?.modelVersion ?? "", at: cur.record.updatedAt });
        }
      } catch (err) {
        if (!isNotFound(err)) throw err; // an empty quarantine
      }
      return Codecs.quarantineReply.encode(reply);
    }
    const { cur, msg } = await quarantined(req.mailId);
    const item: WorkItem = Codecs.workItem.decode(msg.data);
    const recipients = item.envelope.to;
    if (req.kind === "mail.quarantine.release") {
      await state.advance(cur, [{ state: "PendingProcessing", detail: { reason: `released: ${req.reason}` } }], recipients);
      await js.publish(workSubject(item.mailId), Codecs.workItem.encode({ ...item, released: true }), { msgID: `${item.mailId}.release.${cur.record.attempt}` });
      log.info({ mailId: item.mailId }, "released from quarantine");
    } else {
      await state.advance(cur, [{ state: "Rejected", detail: { reason: `deleted from quarantine: ${req.reason}`, error: { code: "QUARANTINED", message: req.reason } } }], recipients);
      log.info({ mailId: item.mailId }, "deleted from quarantine");
    }
    await jsm.streams.deleteMessage(Names.quarantineStream, msg.seq, false);
    reply.mails.push({ mailId: item.mailId, score: cur.record.detail.classification?.score ?? NaN, modelVersion: cur.record.detail.classification?.modelVersion ?? "", at: new Date(deps.clock.now()).toISOString() });
    return Codecs.quarantineReply.encode(reply);
  }, log);
  return service;
}
