import { createHash, randomBytes } from "node:crypto";
import { expect, it } from "vitest";
import { simpleParser } from "mailparser";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { JetStreamManager, MsgRequest, StoredMsg } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import type { ObjectStore } from "@nats-io/obj";
import { BodyObjects, Codecs, FenError, Names, mailIdFromIdempotencyKey, quarantineRequestSubject, workSubject } from "../../protocol/index.js";
import type { MailId, QuarantineRequest } from "../../protocol/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { firstBySubjectFromLeader } from "../../nodes/common/js-errors.js";
import { openMailStateStore } from "../../nodes/common/mail-state.js";
import { createMetrics } from "../../nodes/common/metrics.js";
import { callService } from "../../nodes/common/rpc.js";
import { createBodyReaper, reapBodies } from "../../nodes/processing/index.js";
import type { BodyReapDeps, MailClassifier } from "../../nodes/processing/index.js";
import { readObject } from "../../nodes/processing/body.js";
import { readKeptCopy } from "../../nodes/processing/kept-copy.js";
import { usePipeline } from "../helpers/suite.js";
import { bodyObjects, startGateway, startProcessing, status, structured, submit, testLog, until } from "../helpers/system.js";

/**
 * The body reaper against a real cluster, a gateway and a processing node (whose own reaper is off: the tests
 * run passes themselves, with a clock moved forward instead of waiting a day). Each test looks at its own mails'
 * objects; a pass sees the whole bucket, every other test's live bodies included, which it must keep too.
 */

const HOUR = 3_600_000;
const AGE = 24 * HOUR;
const ruleClassifier: MailClassifier = {
  version: "rule-reaper-1",
  classifyRaw: async (raws) => raws.map((r) => ({ score: /^Subject:.*SPAM/m.test(Buffer.from(r).toString("latin1")) ? 0.99 : 0.01 })),
};
// Recipients at slow.example are put off (451) at every attempt; the retry is 10 minutes away: such a mail stays Deferred.
const p = usePipeline({
  sink: { rcpt: (a) => (a.endsWith("@slow.example") ? { code: 451, message: "4.4.3 try later" } : undefined) },
  start: async (nc, port) => [
    await startGateway(nc),
    await startProcessing(nc, port, {
      FEN_QUARANTINE_THRESHOLD: "0.9", FEN_RETRY_BASE_MS: "600000", FEN_RETRY_MAX_MS: "600000", FEN_BODY_REAP_INTERVAL_MS: "0",
    }, ruleClassifier),
  ],
});

/** A text over the inline limit: its body goes to mail_bodies. */
const bigText = (tag: string) => `${tag}\n${"x".repeat(700 * 1024)}`;
const openBodies = (): Promise<ObjectStore> => new Objm(jetstream(p.nc)).open(Names.bodiesBucket);

/** The deps of a pass whose clock is `aheadMs` ahead of the real one, `over` replacing some. */
async function deps(aheadMs: number, over: Partial<BodyReapDeps> = {}): Promise<BodyReapDeps> {
  const js = jetstream(p.nc);
  return {
    jsm: await jetstreamManager(p.nc), bodies: await openBodies(),
    state: await openMailStateStore({ nc: p.nc, js, clock: systemClock, node: "reaper-test" }),
    clock: { now: () => Date.now() + aheadMs }, log: testLog, metrics: createMetrics({ defaults: false }), ...over,
  };
}
const reap = async (aheadMs: number, over: Partial<BodyReapDeps> = {}) => reapBodies(await deps(aheadMs, over), { minAgeMs: AGE });

/** Puts a body object of `mailId` as a submission does before its work item (which, here, never comes). */
async function putOrphan(mailId: MailId, size = 600 * 1024): Promise<string> {
  const name = BodyObjects.name(mailId, randomBytes(8));
  await (await openBodies()).putBlob({ name }, randomBytes(size));
  return name;
}

/** The body the mail's (first) work item names, read through the stream leader. */
async function itemBody(mailId: MailId): Promise<{ object: string; sha256: string }> {
  const m = await firstBySubjectFromLeader(await jetstreamManager(p.nc), Names.workStream, workSubject(mailId), 1);
  const body = m ? Codecs.workItem.decode(m.data).body : undefined;
  if (!body || !("object" in body)) throw new Error(`no work item of ${mailId} with a body object`);
  return body;
}

/** `target` with its method `name` replaced by `f` (a view for a test: the rest goes to the real object). */
function withMethod<T extends object>(target: T, name: keyof T, f: unknown): T {
  return new Proxy(target, {
    get(t, prop, receiver) {
      if (prop === name) return f;
      const v = Reflect.get(t, prop, receiver) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

const quarantine = (req: QuarantineRequest) => callService(p.nc, quarantineRequestSubject(req.kind), Codecs.quarantineRequest, req, Codecs.quarantineReply);

it("an object nothing refers to (a submission that stored its body, never its work item) is kept while younger than the age, then reaped", async () => {
  const mailId = mailIdFromIdempotencyKey("reap-never-queued");
  const orphan = await putOrphan(mailId);
  expect(await bodyObjects(p.nc, mailId)).toEqual([orphan]);
  for (const ahead of [0, AGE - 10 * 60_000]) {
    const r = await reap(ahead);
    expect(r.reaped, `${ahead} ms ahead`).toBe(0);
    expect(await bodyObjects(p.nc, mailId)).toEqual([orphan]);
  }
  const metrics = createMetrics({ defaults: false });
  const r = await reap(AGE + 10 * 60_000, { metrics });
  expect(await bodyObjects(p.nc, mailId)).toEqual([]);
  expect(r.reaped).toBeGreaterThanOrEqual(1);
  expect(r.bytes).toBeGreaterThanOrEqual(600 * 1024);
  expect(r.seen).toBe(r.reaped + r.kept + r.skipped + r.gone);
  // The counters say what the pass did.
  const byOutcome = Object.fromEntries((await metrics.bodyReaper.get()).values.map((v) => [v.labels["outcome"], v.value]));
  expect(byOutcome).toEqual(Object.fromEntries(Object.entries({ reaped: r.reaped, kept: r.kept, skipped: r.skipped, gone: r.gone }).filter(([, n]) => n > 0)));
  expect((await metrics.bodyReaperBytes.get()).values[0]?.value).toBe(r.bytes);
});

it("a Deferred mail keeps the body its work item names at any age; the orphans of its retried submissions are reaped", async () => {
  const key = "reap-deferred";
  const mailId = mailIdFromIdempotencyKey(key);
  // Three attempts answered STORE_UNAVAILABLE leave an object each (the gateway keeps them: their item might have been stored).
  const orphans = [await putOrphan(mailId), await putOrphan(mailId), await putOrphan(mailId)];
  const m = await submit(p.nc, structured(key, { key, to: ["someone@slow.example"], text: bigText(key) }));
  await until("Deferred", async () => (await status(p.nc, m.mailId)).state === "Deferred");
  const live = await itemBody(mailId);
  expect((await bodyObjects(p.nc, mailId)).sort()).toEqual([...orphans, live.object].sort());

  const r = await reap(30 * 24 * HOUR);
  expect(await bodyObjects(p.nc, mailId)).toEqual([live.object]);
  expect(r.reaped).toBeGreaterThanOrEqual(3);
  expect((await status(p.nc, mailId)).state).toBe("Deferred");
  // Whole: the bytes the work item's hash names.
  const data = await readObject(await openBodies(), live.object);
  expect(createHash("sha256").update(data!).digest("hex")).toBe(live.sha256);
});

it("a quarantined mail keeps its body (named by its kept copy) at any age, and is delivered whole when released", async () => {
  const key = "reap-quarantined";
  const mailId = mailIdFromIdempotencyKey(key);
  const text = bigText(key);
  const m = await submit(p.nc, structured(key, { key, subject: "SPAM reaper", text }));
  await until("Quarantined", async () => (await status(p.nc, m.mailId)).state === "Quarantined");
  const [live] = await bodyObjects(p.nc, mailId);
  await putOrphan(mailId);

  await reap(365 * 24 * HOUR);
  expect(await bodyObjects(p.nc, mailId)).toEqual([live]);

  await quarantine({ kind: "mail.quarantine.release", v: 1, mailId, reason: "checked" });
  await until("released and Sent", async () => (await status(p.nc, mailId)).state === "Sent");
  const sent = p.sink.messages.find((x) => x.messageId === m.messageId);
  expect((await simpleParser(sent!.raw)).text?.trimEnd()).toBe(text);
  // Sent: the node dropped its body (settle).
  expect(await bodyObjects(p.nc, mailId)).toEqual([]);
});

it("a body that outlived its delivered mail (settle's delete failed) is reaped once old", async () => {
  const key = "reap-survivor";
  const mailId = mailIdFromIdempotencyKey(key);
  const m = await submit(p.nc, structured(key, { key, text: bigText(key) }));
  await until("Sent", async () => (await status(p.nc, m.mailId)).state === "Sent");
  expect(await bodyObjects(p.nc, mailId)).toEqual([]);
  // What a failed delete leaves: the object, under the name the (acked, gone) work item had, found in its deletion marker.
  const bodies = await openBodies();
  let name: string | undefined;
  const watch = await bodies.watch({ includeHistory: true, ignoreDeletes: false });
  for await (const o of watch) {
    if (o.deleted && o.name.startsWith(`${mailId}.`)) { name = o.name; break; }
  }
  watch.stop();
  expect(name).toBeDefined();
  await bodies.putBlob({ name: name! }, randomBytes(700 * 1024));
  expect(await bodyObjects(p.nc, mailId)).toEqual([name]);

  await reap(0);
  expect(await bodyObjects(p.nc, mailId)).toEqual([name]);
  await reap(AGE + HOUR);
  expect(await bodyObjects(p.nc, mailId)).toEqual([]);
});

type GetMessage = (stream: string, query: MsgRequest) => Promise<StoredMsg | null>;

/** `jsm` whose `streams.getMessage` is `get`, given the real one. */
function withGetMessage(jsm: JetStreamManager, get: (real: GetMessage, stream: string, query: MsgRequest) => Promise<StoredMsg | null>): JetStreamManager {
  const real: GetMessage = (stream, query) => jsm.streams.getMessage(stream, query);
  return withMethod(jsm, "streams", withMethod(jsm.streams, "getMessage", (stream: string, query: MsgRequest) => get(real, stream, query)));
}

/** `jsm` whose reads of `stream` fail, as a store that does not answer. */
const failingReads = (jsm: JetStreamManager, stream: string): JetStreamManager => withGetMessage(jsm, async (get, name, query) => {
  if (name === stream) throw new Error(`${stream} does not answer (test)`);
  return get(name, query);
});

it("any read that fails keeps the mail's objects (skipped until the next pass), as does a state that moves while they are read", async () => {
  const mailId = mailIdFromIdempotencyKey("reap-unreadable");
  const orphan = await putOrphan(mailId);
  const jsm = await jetstreamManager(p.nc);
  for (const over of [
    { jsm: failingReads(jsm, Names.workStream) },
    { jsm: failingReads(jsm, Names.quarantineStream) },
    { state: { get: async () => { throw new FenError("STORE_UNAVAILABLE", "the status store does not answer (test)"); } } },
    // A status entry created between the two reads of it (a node claiming the mail meanwhile).
    { state: { get: (() => { let reads = 0; return async () => (reads++ % 2 === 0 ? undefined : { record: {} as never, revision: 1 }); })() } },
  ] satisfies Partial<BodyReapDeps>[]) {
    const r = await reap(30 * 24 * HOUR, over);
    expect(r.reaped).toBe(0);
    expect(r.skipped).toBeGreaterThanOrEqual(1);
    expect(await bodyObjects(p.nc, mailId)).toEqual([orphan]);
  }
  await reap(30 * 24 * HOUR);
  expect(await bodyObjects(p.nc, mailId)).toEqual([]);
});

/** The pass's view of `mail_bodies`: the objects of `mailId` only. */
async function onlyOf(mailId: MailId): Promise<ObjectStore> {
  const all = await openBodies();
  return withMethod(all, "list", async () => (await all.list()).filter((o) => BodyObjects.mailIdOf(o.name) === mailId));
}

/** True for a reaper's read of `mailId`'s work subject (a STREAM.MSG.GET by subject). */
const readsWorkOf = (mailId: MailId, stream: string, query: MsgRequest): boolean =>
  stream === Names.workStream && (query as { next_by_subj?: string }).next_by_subj === workSubject(mailId);

/** `promise`'s outcome, to be given later: its value returned, or its error thrown again. */
const settled = <T>(promise: Promise<T>): Promise<() => T> => promise.then((v) => () => v, (err: unknown) => () => { throw err; });

/**
 * Holds the processing node's work: its durable consumer paused (the server delivers nothing until it is
 * resumed), so an item stored meanwhile waits and no node moves its mail. Resumes by itself after a minute,
 * should a test end before {@link resumeWork}.
 */
async function holdWork(): Promise<void> {
  const jsm = await jetstreamManager(p.nc);
  await jsm.consumers.pause(Names.workStream, Names.workConsumer, new Date(Date.now() + 60_000));
  await until("the work consumer paused", async () => (await jsm.consumers.info(Names.workStream, Names.workConsumer)).paused === true);
}

async function resumeWork(): Promise<void> {
  const jsm = await jetstreamManager(p.nc);
  await jsm.consumers.resume(Names.workStream, Names.workConsumer);
  await until("the work consumer resumed", async () => (await jsm.consumers.info(Names.workStream, Names.workConsumer)).paused !== true);
}

const openState = () => openMailStateStore({ nc: p.nc, js: jetstream(p.nc), clock: systemClock, node: "reaper-test" });

/** After a pass that raced a release: the kept copy is gone, and the live body, named by the released item, is all that is left. */
async function keptThroughRelease(jsm: JetStreamManager, mailId: MailId, live: string | undefined): Promise<void> {
  expect(await readKeptCopy(jsm, mailId)).toBeNull();
  expect((await itemBody(mailId)).object).toBe(live);
  expect(await bodyObjects(p.nc, mailId)).toEqual([live]);
}

/** The released mail is Sent, its text arriving whole. */
async function deliveredWhole(mailId: MailId, messageId: string, text: string): Promise<void> {
  await until("released and Sent", async () => (await status(p.nc, mailId)).state === "Sent");
  const sent = p.sink.messages.find((x) => x.messageId === messageId);
  expect((await simpleParser(sent!.raw)).text?.trimEnd()).toBe(text);
}

it("a release finishing while a pass reads MAIL_WORK (item queued, kept copy removed) keeps the body: the kept copy was read before MAIL_WORK", async () => {
  // A pass reading MAIL_WORK then MAIL_QUARANTINE only misses this release: its swap made before the pass (the
  // status entry reads the same before and after), MAIL_WORK read empty (the quarantined mail's item was acked),
  // then the released item queued and the kept copy removed, then MAIL_QUARANTINE read empty.
  const key = "reap-release-in-flight";
  const mailId = mailIdFromIdempotencyKey(key);
  const text = bigText(key);
  const m = await submit(p.nc, structured(key, { key, subject: "SPAM in flight", text }));
  await until("Quarantined", async () => (await status(p.nc, m.mailId)).state === "Quarantined");
  const [live] = await bodyObjects(p.nc, mailId);
  const jsm = await jetstreamManager(p.nc);
  const store = await openState();
  await holdWork();
  try {
    // The release's swap, as a release request that stopped right after it (its server failing over) leaves it.
    const cur = await store.get(mailId);
    const copy = await readKeptCopy(jsm, mailId);
    expect(cur?.record.state).toBe("Quarantined");
    await store.advance(cur!, [{ state: "PendingProcessing", detail: { reason: "released: in flight" } }],
      Codecs.workItem.decode(copy!.data).envelope.to, undefined, { commitFirst: true });
    let released = false;
    const r = await reap(30 * 24 * HOUR, {
      bodies: await onlyOf(mailId),
      jsm: withGetMessage(jsm, async (get, stream, query) => {
        const answer = await settled(get(stream, query));
        if (readsWorkOf(mailId, stream, query) && !released) {
          released = true;
          // The request repeated: it finishes the release (queues the released item, then removes the kept copy).
          await quarantine({ kind: "mail.quarantine.release", v: 1, mailId, reason: "in flight" });
        }
        return answer();
      }),
    });
    expect(released).toBe(true);
    await keptThroughRelease(jsm, mailId, live);
    expect(r).toMatchObject({ seen: 1, kept: 1, reaped: 0 });
  } finally {
    await resumeWork();
  }
  await deliveredWhole(mailId, m.messageId, text);
});

it("a mail quarantined and then released while a pass reads its references (no read sees an item or copy) keeps its body: its status entry moved", async () => {
  // MAIL_QUARANTINE read empty (the work item not taken yet), the mail quarantined (kept copy stored, Quarantined,
  // item acked), MAIL_WORK read empty, the mail released (swap, released item queued, kept copy removed),
  // MAIL_QUARANTINE read empty: only the status entry, absent before and PendingProcessing after, shows the moves.
  const key = "reap-moved-twice";
  const mailId = mailIdFromIdempotencyKey(key);
  const text = bigText(key);
  const jsm = await jetstreamManager(p.nc);
  const store = await openState();
  await holdWork();
  let m: Awaited<ReturnType<typeof submit>>;
  try {
    m = await submit(p.nc, structured(key, { key, subject: "SPAM moved twice", text }));
    const live = (await itemBody(mailId)).object;
    expect(await store.get(mailId)).toBeUndefined();
    let moved = false;
    const r = await reap(30 * 24 * HOUR, {
      bodies: await onlyOf(mailId),
      jsm: withGetMessage(jsm, async (get, stream, query) => {
        if (!readsWorkOf(mailId, stream, query) || moved) return get(stream, query);
        moved = true;
        // Before this read: the node takes the work item and quarantines the mail.
        await resumeWork();
        await until("Quarantined, its work item acked", async () => (await store.get(mailId))?.record.state === "Quarantined"
          && (await firstBySubjectFromLeader(jsm, Names.workStream, workSubject(mailId), 1)) === null);
        await holdWork();
        const answer = await settled(get(stream, query));
        // After it: the operator releases the mail.
        await quarantine({ kind: "mail.quarantine.release", v: 1, mailId, reason: "moved twice" });
        return answer();
      }),
    });
    expect(moved).toBe(true);
    await keptThroughRelease(jsm, mailId, live);
    expect(r).toMatchObject({ seen: 1, skipped: 1, reaped: 0 });
  } finally {
    await resumeWork();
  }
  await deliveredWhole(mailId, m!.messageId, text);
});

it("passes of several nodes at once reap an orphan once between them and keep a live body", async () => {
  const key = "reap-concurrent";
  const mailId = mailIdFromIdempotencyKey(key);
  await submit(p.nc, structured(key, { key, to: ["other@slow.example"], text: bigText(key) }));
  await until("Deferred", async () => (await status(p.nc, mailId)).state === "Deferred");
  const live = (await itemBody(mailId)).object;
  const orphans = await Promise.all([1, 2, 3].map(() => putOrphan(mailId)));
  const reports = await Promise.all([1, 2, 3].map(() => reap(30 * 24 * HOUR)));
  expect(await bodyObjects(p.nc, mailId)).toEqual([live]);
  // Each orphan was deleted by one pass at least; the others found it gone, or judged it before it went.
  expect(reports.reduce((n, r) => n + r.reaped, 0)).toBeGreaterThanOrEqual(orphans.length);
});

it("passes made back to back while mails are processed, quarantined and released never take a body still needed", async () => {
  // Only the objects of mails whose submission was answered: until then a body is protected by its age alone,
  // which the pass's clock, a month ahead, overrides.
  const answered = new Set<string>();
  const all = await openBodies();
  const bodies = withMethod(all, "list", async () => (await all.list()).filter((o) => answered.has(BodyObjects.mailIdOf(o.name) ?? "")));
  let done = false;
  let passes = 0;
  let reaped = 0;
  const looping = (async () => {
    const d = await deps(30 * 24 * HOUR, { bodies });
    while (!done) {
      reaped += (await reapBodies(d, { minAgeMs: AGE })).reaped;
      passes++;
    }
  })();
  const mails = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
    const key = `reap-race-${i}`;
    const spam = i % 2 === 1;
    const m = await submit(p.nc, structured(key, { key, subject: spam ? `SPAM race ${i}` : `race ${i}`, text: bigText(key) }));
    answered.add(m.mailId);
    if (spam) {
      await until(`${key} Quarantined`, async () => (await status(p.nc, m.mailId)).state === "Quarantined");
      await quarantine({ kind: "mail.quarantine.release", v: 1, mailId: m.mailId as MailId, reason: "race" });
    }
    return m;
  }));
  const states = await Promise.all(mails.map((m) => until(`${m.mailId} settled`, async () => {
    const s = (await status(p.nc, m.mailId)).state;
    return (s === "Sent" || s === "Rejected" || s === "Bounced") && s;
  }, 60_000)));
  done = true;
  await looping;
  console.log(`${passes} back-to-back passes while 6 mails were processed (3 quarantined and released): ${reaped} reaped`);
  expect(states).toEqual(mails.map(() => "Sent"));
  expect(passes).toBeGreaterThan(1);
  expect(reaped).toBe(0);
  for (const m of mails) expect(p.sink.messages.find((x) => x.messageId === m.messageId)?.raw.length).toBeGreaterThan(700 * 1024);
}, 120_000);

it("a pass asked to stop ends before its next mail", async () => {
  const orphan = await putOrphan(mailIdFromIdempotencyKey("reap-stopping"));
  const r = await reapBodies(await deps(30 * 24 * HOUR), { minAgeMs: AGE, stopping: () => true });
  expect(r).toMatchObject({ reaped: 0, skipped: 0, stopped: true });
  expect(await bodyObjects(p.nc, mailIdFromIdempotencyKey("reap-stopping"))).toEqual([orphan]);
});

it("the periodic reaper: one pass at a time, the first at a random point of the first interval, none after stop() or at interval 0", async () => {
  const mailId = mailIdFromIdempotencyKey("reap-periodic");
  const orphan = await putOrphan(mailId);
  const all = await openBodies();
  /** Passes begun (each lists the bucket once), and at most how many ran at once. */
  let begun = 0;
  let inPass = 0;
  let most = 0;
  const bodies = withMethod(all, "list", async () => {
    begun++;
    most = Math.max(most, ++inPass);
    try { return await all.list(); } finally { inPass--; }
  });
  // random 0: the first pass at once, the next ones 0.75 intervals after the previous one ended (the factory takes
  // any interval; the configuration's floor is a minute).
  const reaper = createBodyReaper({ ...(await deps(0, { bodies })), random: () => 0 }, { intervalMs: 40, minAgeMs: AGE });
  reaper.start();
  await until("three passes", () => begun >= 3);
  await reaper.stop();
  const after = begun;
  expect(most).toBe(1);
  // Young: kept by every pass.
  expect(await bodyObjects(p.nc, mailId)).toEqual([orphan]);
  // No timer is left: a pass would have begun within 30 ms.
  await new Promise((r) => setTimeout(r, 300));
  expect(begun).toBe(after);

  let offBegun = 0;
  const off = createBodyReaper({ ...(await deps(0, { bodies: withMethod(all, "list", async () => { offBegun++; return all.list(); }) })), random: () => 0 },
    { intervalMs: 0, minAgeMs: AGE });
  off.start();
  await new Promise((r) => setTimeout(r, 300));
  await off.stop();
  expect(offBegun).toBe(0);
});

it("a processing node runs the reaper from its start (FEN_BODY_REAP_INTERVAL_MS) and stops it when it drains", async () => {
  await putOrphan(mailIdFromIdempotencyKey("reap-node"));
  const metrics = createMetrics({ defaults: false });
  const node = await startProcessing(p.nc, p.sink.port, { FEN_BODY_REAP_INTERVAL_MS: "60000", FEN_RETRY_BASE_MS: "600000", FEN_RETRY_MAX_MS: "600000" },
    ruleClassifier, () => 0, metrics);
  await until("the node's first pass", async () => (await metrics.bodyReaper.get()).values.some((v) => v.labels["outcome"] === "kept" && v.value > 0));
  await node.drain();
  await node.closed;
  expect(node.status()).toEqual({ state: "closed" });
});
