import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { PermissionViolationError } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { captureCli } from "../helpers/cli.js";
import { main } from "../../nodes/cli/main.js";
import { connectCli } from "../../nodes/common/nats.js";
import { firstBySubject, storeFailure, storeRead } from "../../nodes/common/js-errors.js";
import { createMailStateStore, openMailStateStore } from "../../nodes/common/mail-state.js";
import { createMetrics } from "../../nodes/common/metrics.js";
import { readHistory } from "../../nodes/gateway/index.js";
import {
  BodyObjects, Codecs, LedgerCodecs, Names, ServiceSubjects, eventSubject, quarantineRequestSubject, mailIdFromIdempotencyKey, workSubject,
} from "../../protocol/index.js";
import type { QuarantineRequest } from "../../protocol/index.js";
import type { Actor } from "../../nodes/common/actor.js";
import { callService } from "../../nodes/common/rpc.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { SmtpSink } from "../../nodes/local/smtp-sink.js";
import { NatsRoles, generatePasswords, literalUsers, renderAuthorization, rolePermissions, userOf } from "../../nodes/local/permissions.js";
import type { NatsRole } from "../../nodes/local/permissions.js";
import { reapBodies } from "../../nodes/processing/index.js";
import type { MailClassifier } from "../../nodes/processing/index.js";
import { provision } from "../../nodes/provision/index.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { bodyObjects, startGateway, startProcessing, status, structured, submit, testLog, until } from "../helpers/system.js";
import { ledgerCli, ledgerIdentity, startLedger } from "../ledger-node/helpers.js";
import { systemClock } from "../../nodes/common/clock.js";

/**
 * Least privilege against a real 3-node cluster running the `authorization`
 * block rendered from nodes/local/permissions.ts. Every node connects as
 * its role's user (connection name `node-<role>`); the allowed flows work end
 * to end without a single permission violation in the server logs. Each
 * forbidden action is tried on a separate connection (`probe-<role>`) and is
 * refused by the server: the client gets a permissions violation and the
 * server logs it for that user and subject.
 */

const passwords = generatePasswords(randomBytes);
let cluster: TestCluster;
const nodes = new Map<NatsRole, NatsConnection>();
const probes = new Map<NatsRole, NatsConnection>();
const actors: Actor[] = [];
let sink: SmtpSink;

const node = (role: NatsRole) => nodes.get(role)!;
const probe = (role: NatsRole) => probes.get(role)!;
const ruleClassifier: MailClassifier = {
  version: "rule-perm-1",
  classifyRaw: async (raws) => raws.map((r) => ({ score: /^Subject:.*SPAM/m.test(Buffer.from(r).toString("latin1")) ? 0.99 : 0.01 })),
};
const login = (role: NatsRole, name: string) =>
  connect({ servers: cluster.urls, user: userOf(role), pass: passwords[role], name });

beforeAll(async () => {
  cluster = await startTestCluster({
    extraConfig: renderAuthorization(literalUsers(passwords)),
    creds: { user: userOf("provision"), pass: passwords.provision },
  });
  for (const role of NatsRoles) {
    nodes.set(role, await login(role, `node-${role}`));
    probes.set(role, await login(role, `probe-${role}`));
  }
  await provision(node("provision"), await jetstreamManager(node("provision")), { replicas: 3 }, { clock: systemClock });
  sink = await startSmtpSink();
  actors.push(await startGateway(node("gateway")));
  actors.push(await startProcessing(node("processing"), sink.port, { FEN_QUARANTINE_THRESHOLD: "0.9" }, ruleClassifier));
  actors.push(await startLedger(node("ledger"), ledgerIdentity(), { FEN_LEDGER_BATCH_MS: "20" }));
});

afterAll(async () => {
  for (const a of actors) await a.drain();
  await sink?.close();
  for (const nc of [...nodes.values(), ...probes.values()]) await nc.close();
  await cluster?.dispose();
});

/** Permission violations the servers logged, optionally only those of connections named `<prefix>…`. */
async function violations(prefix = ""): Promise<string[]> {
  const logs = await Promise.all(cluster.servers.map((s) => readFile(path.join(cluster.dir, `${s.name}.log`), "utf8").catch(() => "")));
  return logs.join("\n").split("\n").filter((l) => /violation/i.test(l) && l.includes(`nats.js:${prefix}`));
}

/** Asserts the server refused `role` publishing (or requesting) `subject`: client error and server log line. */
async function expectPublishRefused(role: NatsRole, attempt: Promise<unknown>, subject: string): Promise<void> {
  const err = await attempt.then(() => undefined, (e: unknown) => e);
  const pe = (err instanceof PermissionViolationError ? err : (err as { cause?: unknown })?.cause) as PermissionViolationError | undefined;
  expect(pe, `${role} publishing ${subject} should be refused, got ${String(err)}`).toBeInstanceOf(PermissionViolationError);
  expect(pe).toMatchObject({ operation: "publish", subject });
  await until(`server log of ${role} → ${subject}`, async () =>
    (await violations(`probe-${role}`)).some((l) => l.includes(`user:${userOf(role)}`) && l.includes(`"${subject}"`)), 5000);
}

async function expectSubscribeRefused(role: NatsRole, subject: string): Promise<void> {
  const sub = probe(role).subscribe(subject);
  const closedWith = await sub.closed;
  expect(closedWith).toBeInstanceOf(PermissionViolationError);
  expect(closedWith).toMatchObject({ operation: "subscription", subject });
}

const bytes = (s: string) => new TextEncoder().encode(s);
const quarantine = (nc: NatsConnection, req: QuarantineRequest) =>
  callService(nc, quarantineRequestSubject(req.kind), Codecs.quarantineRequest, req, Codecs.quarantineReply);

describe("allowed flows with role users", () => {
  it("submit → Sent (inline and object-store bodies), recorded in the ledger", async () => {
    const small = await submit(probe("publisher"), structured("perm-small", { key: "perm-small" }));
    const big = await submit(probe("publisher"), structured("perm-big", { key: "perm-big", text: "x".repeat(700 * 1024) }));
    for (const r of [small, big]) {
      const st = await until(`${r.mailId} Sent and in the ledger`, async () => {
        const s = await status(probe("publisher"), r.mailId);
        return s.state === "Sent" && (s.ledger?.length ?? 0) > 0 && s;
      });
      expect(st.history.at(-1)?.detail.smtp?.code).toBe(250);
      // The history read through the events stream's leader (what mail.status falls back to when a replica lags) is the same.
      const gw = await jetstreamManager(probe("gateway"));
      expect(await readHistory(gw, r.mailId, { fromLeader: true })).toEqual(await readHistory(gw, r.mailId));
    }
    expect(sink.messages.map((m) => m.messageId).sort()).toEqual([small.messageId, big.messageId].sort());
    const head = await callService(probe("operator"), ServiceSubjects.ledgerHead, LedgerCodecs.headRequest,
      { kind: "ledger.head", v: 1 }, LedgerCodecs.headReply);
    expect(head.size).toBeGreaterThan(0);
  });

  it("quarantine → operator release → Sent", async () => {
    const spam = await submit(probe("publisher"), structured("perm-spam", { key: "perm-spam", subject: "SPAM perm" }));
    await until("Quarantined", async () => (await status(probe("publisher"), spam.mailId)).state === "Quarantined");
    const listed = await quarantine(probe("operator"), { kind: "mail.quarantine.list", v: 1, limit: 10, after: 0 });
    expect(listed.mails.map((m) => m.mailId)).toContain(spam.mailId);
    await quarantine(probe("operator"), { kind: "mail.quarantine.release", v: 1, mailId: spam.mailId as never, reason: "checked" });
    await until("released Sent", async () => (await status(probe("publisher"), spam.mailId)).state === "Sent");
  });

  it("an operator lists the queue (the processing node reads MAIL_WORK for it)", async () => {
    const r = await callService(probe("operator"), ServiceSubjects.queue, Codecs.queueRequest, { kind: "mail.queue", v: 1, limit: 10, after: 0 }, Codecs.queueReply);
    expect(r).toMatchObject({ kind: "mail.queue.reply", waiting: expect.any(Number), held: expect.any(Number) });
  });

  it("an unknown mail is NOT_FOUND for mail.status and ledger.proof, each miss confirmed by the stream leaders (events, work)", async () => {
    const unknown = mailIdFromIdempotencyKey("perm-never-submitted");
    await expect(status(probe("publisher"), unknown)).rejects.toMatchObject({ code: "NOT_FOUND" });
    await expect(callService(probe("operator"), ServiceSubjects.ledgerProof, LedgerCodecs.proofRequest,
      { kind: "ledger.proof", v: 1, mailId: unknown }, LedgerCodecs.proofReply)).rejects.toMatchObject({ code: "NOT_FOUND" });
    // The processing node's in-doubt check asks the same of the leader, on its own role's connection.
    const sent = await firstBySubject(await jetstreamManager(probe("processing")), Names.eventsStream, eventSubject(unknown, "Sent"), { confirmAbsence: true });
    expect(sent).toBeNull();
    expect(await violations("probe-processing")).toEqual([]);
  });

  it("the body reaper, as the processing role, lists mail_bodies, reads what refers to a body through the stream leaders, and deletes an orphan", async () => {
    const nc = node("processing");
    const js = jetstream(nc);
    const mailId = mailIdFromIdempotencyKey("perm-orphan");
    // Left by a gateway that stored the body and never the work item.
    const orphan = BodyObjects.name(mailId, randomBytes(8));
    await (await new Objm(jetstream(node("gateway"))).open(Names.bodiesBucket)).putBlob({ name: orphan }, randomBytes(600 * 1024));
    const r = await reapBodies({
      jsm: await jetstreamManager(nc), bodies: await new Objm(js).open(Names.bodiesBucket),
      state: await openMailStateStore({ nc, js, clock: systemClock, node: "perm-reaper" }),
      clock: { now: () => Date.now() + 30 * 86_400_000 }, log: testLog, metrics: createMetrics({ defaults: false }),
    }, { minAgeMs: 86_400_000 });
    expect(r).toMatchObject({ skipped: 0, reaped: 1 });
    expect(await bodyObjects(node("provision"), mailId)).toEqual([]);
    expect(await violations("node-processing")).toEqual([]);
  });

  it("the nodes never needed a subject their role lacks", async () => {
    // Give the last acks and ledger blocks time to land, then read the logs.
    await until("work drained", async () => {
      const info = await (await jetstreamManager(node("provision"))).consumers.info(Names.workStream, Names.workConsumer);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    });
    expect(await violations("node-")).toEqual([]);
  });
});

describe("forbidden actions are refused by the server", () => {
  const mailId = mailIdFromIdempotencyKey("perm-forged");

  it("a publisher cannot write work items or events, nor read the buckets", async () => {
    const js = jetstream(probe("publisher"));
    await expectPublishRefused("publisher", js.publish(workSubject(mailId), bytes("{}")), workSubject(mailId));
    await expectPublishRefused("publisher", js.publish(eventSubject(mailId, "Sent"), bytes("{}")), eventSubject(mailId, "Sent"));
    await expectPublishRefused("publisher", new Kvm(js).open(Names.statusBucket).then((kv) => kv.get(mailId)),
      `$JS.API.STREAM.MSG.GET.KV_${Names.statusBucket}`);
    // Nothing reached the stream.
    const jsm = await jetstreamManager(node("provision"));
    expect(await jsm.streams.getMessage(Names.workStream, { last_by_subj: workSubject(mailId) }).catch(() => null)).toBeNull();
  });

  it("a read or write the server refuses for want of a permission is INTERNAL (a deployment fault), not STORE_UNAVAILABLE (ask again)", async () => {
    const js = jetstream(probe("publisher"));
    const kv = await new Kvm(js).open(Names.statusBucket);
    await expect(storeRead("the status entry", () => kv.get(mailId))).rejects.toMatchObject({ code: "INTERNAL", message: expect.stringMatching(/lacks a permission/) });
    const state = createMailStateStore({ js, kv, clock: systemClock, node: "perm-probe" });
    await expect(state.get(mailId)).rejects.toMatchObject({ code: "INTERNAL" });
    // A write alike (the gateway's body write, before the work item).
    const write = await js.publish(workSubject(mailId), bytes("{}")).then(() => undefined, (err: unknown) => storeFailure("storing the work item", err));
    expect(write).toMatchObject({ code: "INTERNAL", message: expect.stringMatching(/^storing the work item was refused: .*lacks a permission/) });
  });

  it("a publisher cannot call operator or ledger services, nor listen in", async () => {
    await expectPublishRefused("publisher", probe("publisher").request(ServiceSubjects.quarantineList, bytes("{}")), ServiceSubjects.quarantineList);
    await expectPublishRefused("publisher", probe("publisher").request(ServiceSubjects.ledgerHead, bytes("{}")), ServiceSubjects.ledgerHead);
    await expectPublishRefused("publisher", probe("publisher").request(ServiceSubjects.queue, bytes("{}")), ServiceSubjects.queue);
    await expectSubscribeRefused("publisher", "fen.events.>");
    await expectSubscribeRefused("publisher", ServiceSubjects.submit);
  });

  it("only the ledger node writes the ledger bucket", async () => {
    const key = "$KV.ledger.head";
    for (const role of ["processing", "gateway", "operator", "publisher"] as const) {
      await expectPublishRefused(role, jetstream(probe(role)).publish(key, bytes("forged")), key);
    }
    expect(rolePermissions().ledger.publish.allow).toContain(`$KV.${Names.ledgerBucket}.>`);
  });

  it("nodes cannot take each other's work or change the streams", async () => {
    const next = (stream: string, consumer: string) => `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`;
    await expectPublishRefused("processing", probe("processing").request(next(Names.eventsStream, Names.ledgerConsumer), bytes("{}")),
      next(Names.eventsStream, Names.ledgerConsumer));
    await expectPublishRefused("operator", probe("operator").request(next(Names.workStream, Names.workConsumer), bytes("{}")),
      next(Names.workStream, Names.workConsumer));
    const redefine = `$JS.API.CONSUMER.CREATE.${Names.workStream}.${Names.workConsumer}`;
    await expectPublishRefused("operator", probe("operator").request(redefine, bytes("{}")), redefine);
    await expectPublishRefused("gateway", probe("gateway").request(`$JS.API.STREAM.DELETE.${Names.workStream}`), `$JS.API.STREAM.DELETE.${Names.workStream}`);
    await expectPublishRefused("processing", probe("processing").request(`$JS.API.STREAM.PURGE.${Names.eventsStream}`), `$JS.API.STREAM.PURGE.${Names.eventsStream}`);
    await expectPublishRefused("ledger", jetstream(probe("ledger")).publish(`$KV.${Names.statusBucket}.${mailId}`, bytes("{}")),
      `$KV.${Names.statusBucket}.${mailId}`);
    await expectPublishRefused("gateway", jetstream(probe("gateway")).publish(`$KV.${Names.statusBucket}.${mailId}`, bytes("{}")),
      `$KV.${Names.statusBucket}.${mailId}`);
    await expectPublishRefused("operator", jetstream(probe("operator")).publish(eventSubject(mailId, "Sent"), bytes("{}")), eventSubject(mailId, "Sent"));
  });

  it("a CLI command the user's role may not run fails with PERMISSION_DENIED and exits (it hung with the connection open)", async () => {
    const env = { FEN_NATS_USER: userOf("publisher"), FEN_NATS_PASSWORD: passwords.publisher };
    for (const args of [["verify"], ["prove", mailId]]) {
      const r = await ledgerCli([...args, "--server", cluster.urls.join(",")], env);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/^error PERMISSION_DENIED: .*this user's role may not do that/);
    }
    const q = await captureCli((io) => main(["queue", "--server", cluster.urls.join(",")], io), { env });
    expect([q.code, q.stderr]).toEqual([3, expect.stringMatching(/^error PERMISSION_DENIED/)]);
  }, 30_000);

  it("a wrong password is refused at connect; the CLI says which user and where it comes from", async () => {
    await expect(connect({ servers: cluster.urls, user: userOf("gateway"), pass: "wrong", reconnect: false })).rejects.toThrow(/authorization/i);
    await expect(connectCli(cluster.urls.join(","), { FEN_NATS_USER: userOf("publisher"), FEN_NATS_PASSWORD: "wrong" }, "perm-test"))
      .rejects.toMatchObject({ code: "NATS_UNREACHABLE", message: expect.stringMatching(/refused user fen-publisher \(set FEN_NATS_USER and FEN_NATS_PASSWORD/) });
  });
});
