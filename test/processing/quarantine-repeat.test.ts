import { expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Codecs, Names, quarantineRequestSubject, quarantineSubject, workSubject } from "../../protocol/index.js";
import type { MailClassifier } from "../../nodes/processing/index.js";
import type { QuarantineRequest } from "../../protocol/index.js";
import { callService } from "../../nodes/common/rpc.js";
import { createMetrics } from "../../nodes/common/metrics.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { systemClock } from "../../nodes/common/clock.js";
import { usePipeline } from "../helpers/suite.js";
import { startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

/**
 * An operator's release or delete sent again while the first is still being
 * handled (a double click, a script's retry, two operators), with two
 * processing nodes as `npm start` runs them, so the copies are handled on
 * different nodes at once. Rule classifier: score 0.99 when the subject
 * says SPAM.
 */
const ruleClassifier: MailClassifier = {
  version: "rule-test-1",
  classifyRaw: async (raws) => raws.map((r) => ({ score: /^Subject:.*SPAM/m.test(Buffer.from(r).toString("latin1")) ? 0.99 : 0.01 })),
};

const metrics = [createMetrics({ defaults: false }), createMetrics({ defaults: false })];
const p = usePipeline({
  start: async (nc, port) => [
    await startGateway(nc),
    ...await Promise.all(metrics.map((m) => startProcessing(nc, port, { FEN_QUARANTINE_THRESHOLD: "0.9" }, ruleClassifier, undefined, m))),
  ],
});
/** fen_mails_rejected_total summed over both nodes. */
const rejectedCount = async () => (await Promise.all(metrics.map(async (m) => (await m.rejected.get()).values.reduce((a, v) => a + v.value, 0)))).reduce((a, b) => a + b, 0);
const quarantine = (req: QuarantineRequest) => callService(p.nc, quarantineRequestSubject(req.kind), Codecs.quarantineRequest, req, Codecs.quarantineReply);

async function kept(mailId: string): Promise<boolean> {
  const jsm = await jetstreamManager(p.nc);
  return (await jsm.streams.getMessage(Names.quarantineStream, { last_by_subj: quarantineSubject(mailId) }).catch(() => null)) !== null;
}

it("the same release (or delete) sent six times within moments: each answers ok or NOT_FOUND, never INTERNAL, and the mail is delivered once", async () => {
  const seen: string[] = [];
  for (const kind of ["release", "delete"] as const) {
    for (let round = 0; round < 4; round++) {
      const key = `q-same-${kind}-${round}`;
      const spam = await submit(p.nc, structured(key, { key, subject: `SPAM ${key}` }));
      await until(`${key} Quarantined`, async () => (await status(p.nc, spam.mailId)).state === "Quarantined");
      const mailId = spam.mailId as never;
      // Staggered by a few ms, as repeats come: the later ones arrive while the first is half way through.
      const codes = await Promise.all(Array.from({ length: 6 }, (_, i) =>
        new Promise((r) => setTimeout(r, i * 4 * (round + 1))).then(() => quarantine({ kind: `mail.quarantine.${kind}`, v: 1, mailId, reason: `operator ${i}` }))
          .then(() => "ok", (e: { code?: string; message?: string }) => (e.code === "NOT_FOUND" ? "NOT_FOUND" : `${e.code ?? "?"}: ${e.message ?? String(e)}`))));
      seen.push(...codes);
      expect(codes.filter((c) => c !== "ok" && c !== "NOT_FOUND")).toEqual([]);
      expect(codes).toContain("ok");
      const st = await until(`${key} settled`, async () => {
        const s = await status(p.nc, spam.mailId);
        return (kind === "release" ? s.state === "Sent" : s.state === "Rejected") && s;
      });
      const after = st.history.slice(st.history.findIndex((e) => e.state === "Quarantined") + 1).map((e) => e.state);
      expect(after).toEqual(kind === "release" ? ["PendingProcessing", "Processing", "Validated", "DeliveryScheduled", "Sent"] : ["Rejected"]);
      expect(p.sink.messages.filter((m) => m.messageId === spam.messageId)).toHaveLength(kind === "release" ? 1 : 0);
      expect(await kept(spam.mailId)).toBe(false);
    }
  }
  console.log("answers:", JSON.stringify(seen.reduce<Record<string, number>>((a, c) => ({ ...a, [c]: (a[c] ?? 0) + 1 }), {})));
});

it("a delete left half done is counted once: by the repeat that stores its event, not by one that finds it stored", async () => {
  const js = jetstream(p.nc);
  const kv = await new Kvm(js).open(Names.statusBucket);
  const state = createMailStateStore({ js, kv, clock: systemClock, node: "operator-test" });
  for (const eventStored of [false, true]) {
    const key = `q-half-delete-${eventStored}`;
    const spam = await submit(p.nc, structured(key, { key, subject: `SPAM ${key}` }));
    await until(`${key} Quarantined`, async () => (await status(p.nc, spam.mailId)).state === "Quarantined");
    // What a delete leaves when a server fails over after its swap: the status says Rejected, the kept copy is
    // still there, and its Rejected event was (eventStored) or was not written.
    const cur = (await state.get(spam.mailId as never))!;
    const step = { state: "Rejected" as const, detail: { reason: "deleted from quarantine: first try", error: { code: "QUARANTINED" as const, message: "first try" } } };
    const next = await state.advance(cur, [step], [], undefined, { commitFirst: true, published: true });
    if (eventStored) await state.republish(next, []);
    const before = await rejectedCount();
    await quarantine({ kind: "mail.quarantine.delete", v: 1, mailId: spam.mailId as never, reason: "operator repeats" });
    expect(await kept(spam.mailId)).toBe(false);
    expect(await rejectedCount() - before, `event stored before the repeat: ${eventStored}`).toBe(eventStored ? 0 : 1);
    const st = await status(p.nc, spam.mailId);
    expect(st.history.filter((e) => e.state === "Rejected")).toHaveLength(1);
  }
});

it("the mail's first work item coming back after a release (its ack was lost) is not classified again: the release stands", async () => {
  const js = jetstream(p.nc);
  const jsm = await jetstreamManager(p.nc);
  const kv = await new Kvm(js).open(Names.statusBucket);
  const state = createMailStateStore({ js, kv, clock: systemClock, node: "operator-test" });
  const key = "q-original-after-release";
  const spam = await submit(p.nc, structured(key, { key, subject: `SPAM ${key}` }));
  await until(`${key} Quarantined`, async () => (await status(p.nc, spam.mailId)).state === "Quarantined");
  // The release's swap done (its work item not published yet), then the original work item again, as a server
  // whose ack of it was lost hands it out after ack_wait.
  const cur = (await state.get(spam.mailId as never))!;
  await state.advance(cur, [{ state: "PendingProcessing", detail: { reason: "released: by hand" } }], [], undefined, { commitFirst: true });
  const original = await jsm.streams.getMessage(Names.quarantineStream, { last_by_subj: quarantineSubject(spam.mailId) });
  await js.publish(workSubject(spam.mailId), original!.data, { msgID: `${spam.mailId}.original-again` });
  await until("the original copy done", async () => (await jsm.streams.info(Names.workStream)).state.messages === 0, 30_000, 100);
  expect((await status(p.nc, spam.mailId)).state).toBe("PendingProcessing");
  // The operator repeats the release, which finishes it: delivered once, never quarantined again.
  await quarantine({ kind: "mail.quarantine.release", v: 1, mailId: spam.mailId as never, reason: "by hand" });
  const st = await until(`${key} Sent`, async () => { const s = await status(p.nc, spam.mailId); return s.state === "Sent" && s; });
  expect(st.history.filter((e) => e.state === "Quarantined")).toHaveLength(1);
  expect(p.sink.messages.filter((m) => m.messageId === spam.messageId)).toHaveLength(1);
});
