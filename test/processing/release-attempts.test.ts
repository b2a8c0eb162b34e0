import { expect, it } from "vitest";
import type { MailClassifier } from "../../nodes/processing/index.js";
import { Codecs, quarantineRequestSubject } from "../../protocol/index.js";
import type { QuarantineRequest } from "../../protocol/index.js";
import { callService } from "../../nodes/common/rpc.js";
import { usePipeline } from "../helpers/suite.js";
import { startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

/**
 * A mail released from quarantine gets FEN_MAX_ATTEMPTS delivery attempts,
 * like any other: its classification (which used attempt number 1) does
 * not count as one. The relay here defers every mail.
 */
const spamByRule: MailClassifier = {
  version: "rule-test-1",
  classifyRaw: async (raws) => raws.map((r) => ({ score: /^Subject:.*SPAM/m.test(Buffer.from(r).toString("latin1")) ? 0.99 : 0.01 })),
};
const p = usePipeline({
  sink: { respond: () => ({ code: 451, message: "4.3.0 try again later" }) },
  start: async (nc, port) => [await startGateway(nc), await startProcessing(nc, port, {
    FEN_QUARANTINE_THRESHOLD: "0.9", FEN_MAX_ATTEMPTS: "3", FEN_RETRY_BASE_MS: "50", FEN_RETRY_MAX_MS: "100",
  }, spamByRule)],
});

it("a released mail gets FEN_MAX_ATTEMPTS delivery attempts, then bounces with RETRIES_EXHAUSTED", async () => {
  const m = await submit(p.nc, structured("released", { key: "release-attempts-1", subject: "SPAM or not" }));
  await until("Quarantined", async () => (await status(p.nc, m.mailId)).state === "Quarantined");
  const req: QuarantineRequest = { kind: "mail.quarantine.release", v: 1, mailId: m.mailId as never, reason: "checked" };
  await callService(p.nc, quarantineRequestSubject(req.kind), Codecs.quarantineRequest, req, Codecs.quarantineReply);
  const st = await until("Bounced", async () => { const s = await status(p.nc, m.mailId); return s.state === "Bounced" && s; }, 30_000);
  expect(st.history.at(-1)?.detail.error?.code).toBe("RETRIES_EXHAUSTED");
  expect(p.sink.dataCount()).toBe(3);
});
