/**
 * Leader changes while mail flows: the routine events of a real cluster
 * (rolling upgrades, rebalancing), unlike a server that dies. A real 3-node
 * cluster, a gateway, two processing nodes and a ledger node (child
 * processes, as in production) and a real SMTP sink; publishers submit a
 * steady flow while the leaders of MAIL_WORK, its `processing` consumer,
 * MAIL_EVENTS, its `ledger` consumer, KV_mail_status, KV_ledger and the
 * JetStream meta group are stepped down in turn, again and again.
 *
 * Also a test: test/ops/stepdown.test.ts runs it with 600 mails (20-50 s
 * on this 2-core machine) and asserts `violations()` is empty. As a script
 * it takes any size:
 *
 *   node --import tsx test/probes/stepdown.ts [mails=1500] [publishers=16] [everyMs=300]
 *
 * Prints progress, the report as JSON, a one-line summary and one
 * `VIOLATION` line per broken promise (exit code 1 if any).
 */
import type { ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { Codecs, ErrorCodes, Names, isErrorCode, isTerminal } from "../../protocol/index.js";
import type { MailState, SubmitReply } from "../../protocol/index.js";
import { waitForService } from "../../nodes/common/rpc.js";
import { freePort } from "../../nodes/local/nats-cluster.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { connectAndProvision, pool, spawnNode, status, structured, submit, submitWithRetry, until } from "../helpers/system.js";
import { headSize, ledgerCli, ledgerIdentity, ledgerKv } from "../ledger-node/helpers.js";

/**
 * Two accounts: the application's (every client that gives no user lands
 * in it, as the existing tests' clients do) and the system account, whose
 * user may ask the meta leader to step down.
 */
const SYS = { user: "stepdown-sys", pass: "stepdown-sys" };
const ACCOUNTS = `
accounts {
  FEN { jetstream: enabled, users: [ { user: stepdown-app, password: stepdown-app } ] }
  SYS { users: [ { user: ${SYS.user}, password: ${SYS.pass} } ] }
}
system_account: SYS
no_auth_user: stepdown-app
`;

/** What is stepped down, and the JetStream API request that does it (subjects defined by nats-server). */
export const STEPDOWN_TARGETS = [
  { name: "MAIL_WORK", subject: `$JS.API.STREAM.LEADER.STEPDOWN.${Names.workStream}` },
  { name: "MAIL_WORK/processing", subject: `$JS.API.CONSUMER.LEADER.STEPDOWN.${Names.workStream}.${Names.workConsumer}` },
  { name: "MAIL_EVENTS", subject: `$JS.API.STREAM.LEADER.STEPDOWN.${Names.eventsStream}` },
  { name: "KV_mail_status", subject: `$JS.API.STREAM.LEADER.STEPDOWN.KV_${Names.statusBucket}` },
  { name: "KV_ledger", subject: `$JS.API.STREAM.LEADER.STEPDOWN.KV_${Names.ledgerBucket}` },
  { name: "MAIL_EVENTS/ledger", subject: `$JS.API.CONSUMER.LEADER.STEPDOWN.${Names.eventsStream}.${Names.ledgerConsumer}` },
  { name: "meta", subject: "$JS.API.META.LEADER.STEPDOWN", system: true },
] as const;

export interface StepdownProbeOptions {
  readonly mails: number;
  readonly publishers: number;
  /** Pause after each step-down's answer before the next. */
  readonly everyMs: number;
  /** Progress lines. */
  readonly progress?: (line: string) => void;
}

export interface StepdownReport {
  submitted: number;
  accepted: number;
  /** First submissions that failed, by code (`raw:<name>` for an error without a registered code). */
  failedByCode: Record<string, number>;
  /** Time from request to answer of the first submissions (accepted or not; the resubmissions not counted), ms. */
  submitMs: { p50: number; p99: number; max: number; over2500: number };
  /** Failed submissions resubmitted with the same key that then succeeded. */
  resubmittedOk: number;
  resubmitFailures: string[];
  /**
   * Time from the submission's answer to the mail's first arrival at the sink, ms
   * (`over20s`: mails that took longer than 20 s, twice the work consumer's ack wait).
   */
  deliverMs: { p50: number; p99: number; max: number; over20s: number };
  /** Mails (accepted or resubmitted) delivered at least once / more than once / never. */
  delivered: number;
  twice: number;
  /** The first mails delivered more than once: their history (state, node, attempt, inDoubt). */
  twiceHistories: Record<string, string[]>;
  missing: number;
  /** Mails not Sent at the end, with their state. */
  notSent: Record<string, number>;
  stepdowns: Record<string, { ok: number; failed: number }>;
  stepdownErrors: string[];
  statusCalls: number;
  statusFailedByCode: Record<string, number>;
  /** The first few error messages per code, submissions and status alike. */
  samples: Record<string, string[]>;
  ledger: { events: number; size: number; verify: { code: number; stdout: string } };
  /** Log lines at level error or above, per node. */
  nodeErrors: string[];
  /** Warnings per node and message, for the record. */
  nodeWarnings: Record<string, number>;
  /** /readyz answers other than 200 seen while the leaders moved (sampled every 250 ms), per node. */
  notReadyDuring: Record<string, number>;
  /** Nodes whose /readyz did not return to 200. */
  notReady: string[];
  /** Exit codes after SIGTERM. */
  exits: Record<string, number | null>;
  seconds: number;
}

const codeOf = (err: unknown): string => {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" ? code : `raw:${(err as Error)?.name ?? typeof err}`;
};
const bump = (m: Record<string, number>, k: string) => { m[k] = (m[k] ?? 0) + 1; };
const exited = (c: ChildProcess) => new Promise<number | null>((r) => (c.exitCode !== null || c.signalCode !== null ? r(c.exitCode) : c.once("exit", (code) => r(code))));

interface NodeProc { readonly name: string; readonly child: ChildProcess; readonly port: number; readonly log: string }

export async function runStepdownProbe(opts: StepdownProbeOptions): Promise<StepdownReport> {
  const say = opts.progress ?? (() => undefined);
  const t0 = Date.now();
  let cluster: TestCluster | undefined;
  let nc: NatsConnection | undefined;
  let sys: NatsConnection | undefined;
  const nodes: NodeProc[] = [];
  const sink = await startSmtpSink({});
  try {
    cluster = await startTestCluster({ extraConfig: ACCOUNTS });
    nc = await connectAndProvision(cluster.urls);
    sys = await connect({ servers: cluster.urls, ...SYS });
    const id = ledgerIdentity();
    const base = { FEN_NATS_URLS: cluster.urls.join(","), FEN_LOG_LEVEL: "info" };
    const spawnOne = async (role: "gateway" | "processing" | "ledger", name: string, env: Record<string, string>) => {
      const port = await freePort();
      const log = path.join(cluster!.dir, `${name}.log`);
      nodes.push({ name, port, log, child: spawnNode(role, { ...base, ...env, FEN_NODE_NAME: name, FEN_HTTP_PORT: String(port) }, log) });
    };
    const proc = { FEN_MODEL_DIR: "none", FEN_SMTP_PORT: String(sink.port), FEN_RETRY_BASE_MS: "200", FEN_RETRY_MAX_MS: "2000", FEN_CONCURRENCY: "32" };
    await spawnOne("gateway", "gw", {});
    await spawnOne("processing", "proc-a", proc);
    await spawnOne("processing", "proc-b", proc);
    await spawnOne("ledger", "ledger", { ...id.env, FEN_LEDGER_BATCH_MS: "50" });
    const readyz = async (n: NodeProc) => (await fetch(`http://127.0.0.1:${n.port}/readyz`).catch(() => ({ status: 0 }))).status;
    await until("every node ready", async () => (await Promise.all(nodes.map(readyz))).every((s) => s === 200), 90_000, 200);
    for (const svc of [Names.gatewayService, Names.processingService, Names.ledgerService]) {
      if (!await waitForService(nc, svc, { attempts: 60, everyMs: 250 })) throw new Error(`${svc} does not answer`);
    }
    say(`nodes ready after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const report: StepdownReport = {
      submitted: 0, accepted: 0, failedByCode: {}, submitMs: { p50: 0, p99: 0, max: 0, over2500: 0 }, deliverMs: { p50: 0, p99: 0, max: 0, over20s: 0 }, resubmittedOk: 0, resubmitFailures: [], delivered: 0, twice: 0, twiceHistories: {}, missing: 0, notSent: {},
      stepdowns: Object.fromEntries(STEPDOWN_TARGETS.map((t) => [t.name, { ok: 0, failed: 0 }])), stepdownErrors: [],
      statusCalls: 0, statusFailedByCode: {}, samples: {}, ledger: { events: 0, size: 0, verify: { code: -1, stdout: "" } },
      nodeErrors: [], nodeWarnings: {}, notReadyDuring: {}, notReady: [], exits: {}, seconds: 0,
    };
    const sample = (what: string, err: unknown) => {
      const list = (report.samples[`${what} ${codeOf(err)}`] ??= []);
      if (list.length < 3) list.push(String((err as Error)?.message ?? err).slice(0, 300));
    };
    const accepted = new Map<string, SubmitReply>();
    /** Message-ID → when its submission was answered. */
    const answeredAt = new Map<string, number>();
    const failed: number[] = [];
    let flowing = true;

    // Step-downs, round robin, for as long as the flow lasts.
    const stepping = (async () => {
      for (let i = 0; flowing; i++) {
        const t = STEPDOWN_TARGETS[i % STEPDOWN_TARGETS.length]!;
        const conn = "system" in t ? sys! : nc!;
        try {
          const res = await conn.request(t.subject, undefined, { timeout: 5000 });
          const body = JSON.parse(new TextDecoder().decode(res.data)) as { success?: boolean; error?: { code: number; description: string } };
          if (body.success) report.stepdowns[t.name]!.ok++;
          else {
            report.stepdowns[t.name]!.failed++;
            report.stepdownErrors.push(`${t.name}: ${JSON.stringify(body.error)}`);
          }
        } catch (err) {
          report.stepdowns[t.name]!.failed++;
          report.stepdownErrors.push(`${t.name}: ${String(err)}`);
        }
        await new Promise((r) => setTimeout(r, opts.everyMs));
      }
    })();

    const sampling = (async () => {
      while (flowing) {
        await Promise.all(nodes.map(async (n) => { if (await readyz(n) !== 200) bump(report.notReadyDuring, n.name); }));
        await new Promise((r) => setTimeout(r, 250));
      }
    })();

    // mail.status, asked throughout about mails already accepted.
    const statusing = Promise.all([0, 1].map(async () => {
      while (flowing) {
        const ids = [...accepted.keys()];
        if (ids.length > 0) {
          const mailId = ids[Math.floor(Math.random() * ids.length)]!;
          report.statusCalls++;
          try {
            await status(nc!, mailId);
          } catch (err) {
            bump(report.statusFailedByCode, codeOf(err));
            sample("status", err);
          }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }));

    let next = 0;
    const submitTimes: number[] = [];
    await Promise.all(Array.from({ length: opts.publishers }, async () => {
      while (next < opts.mails) {
        const i = next++;
        report.submitted++;
        const asked = performance.now();
        try {
          const r = await submit(nc!, structured(`sd-${i}`, { key: `sd-${i}` }), 5000);
          accepted.set(r.mailId, r);
          answeredAt.set(r.messageId, Date.now());
        } catch (err) {
          bump(report.failedByCode, codeOf(err));
          sample("submit", err);
          failed.push(i);
        }
        submitTimes.push(performance.now() - asked);
        if (i % 250 === 0) say(`${i} submitted, ${accepted.size} accepted, step-downs ${JSON.stringify(report.stepdowns)}`);
      }
    }));
    report.accepted = accepted.size;
    submitTimes.sort((a, b) => a - b);
    const at = (q: number) => Math.round(submitTimes[Math.min(submitTimes.length - 1, Math.floor(q * submitTimes.length))] ?? 0);
    report.submitMs = { p50: at(0.5), p99: at(0.99), max: at(1), over2500: submitTimes.filter((t) => t > 2500).length };
    say(`submitted ${report.submitted}: ${report.accepted} accepted, failed ${JSON.stringify(report.failedByCode)}`);
    // Every failed submission again, with its key, while the leaders still move.
    const resubmitted = new Map<string, SubmitReply>();
    await Promise.all(failed.map(async (i) => {
      try {
        const r = await submitWithRetry(nc!, structured(`sd-${i}`, { key: `sd-${i}` }));
        resubmitted.set(r.mailId, r);
        answeredAt.set(r.messageId, Date.now());
        report.resubmittedOk++;
      } catch (err) {
        report.resubmitFailures.push(`sd-${i}: ${codeOf(err)} ${String((err as Error)?.message).slice(0, 200)}`);
      }
    }));
    // The leaders keep moving until every mail reached the sink: deliveries and the ledger work under them too.
    const all = new Map([...accepted, ...resubmitted]);
    const atSink = () => new Set(sink.messages.map((m) => m.messageId));
    await until("every mail at the sink", () => { const got = atSink(); return [...all.values()].every((r) => got.has(r.messageId)); }, 120_000, 250)
      .catch(() => undefined);
    // A flow over before every leader moved twice (a small run on a fast machine) still gets its step-downs: the
    // nodes then take them idle, and the checks below run after them.
    await until("two step-downs of every leader", () => STEPDOWN_TARGETS.every((t) => (report.stepdowns[t.name]?.ok ?? 0) >= 2), 60_000, 100)
      .catch(() => undefined);
    flowing = false;
    await stepping;
    await statusing;
    await sampling;
    say(`flow done after ${((Date.now() - t0) / 1000).toFixed(1)} s; step-downs ${JSON.stringify(report.stepdowns)}`);

    // Every mail settled: the status entries, read from the leader.
    const kv = await new Kvm(jetstream(nc)).open(Names.statusBucket);
    const stateOf = async (mailId: string) => {
      const e = await kv.get(mailId).catch(() => null);
      return e && e.operation === "PUT" ? Codecs.statusRecord.parse(e.json()).state : "none";
    };
    const states = new Map<string, string>();
    await until("every mail settled", async () => {
      const open = [...all.keys()].filter((mailId) => !isTerminal((states.get(mailId) ?? "PendingProcessing") as MailState));
      await pool(open, 32, async (mailId) => { states.set(mailId, await stateOf(mailId)); });
      return [...states.values()].every((st) => st === "Sent");
    }, 60_000, 500).catch(() => undefined);
    for (const st of states.values()) if (st !== "Sent") bump(report.notSent, st);
    say(`settled after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const counts = new Map<string, number>();
    const firstAt = new Map<string, number>();
    for (const m of sink.messages) {
      counts.set(m.messageId ?? "?", (counts.get(m.messageId ?? "?") ?? 0) + 1);
      if (m.messageId && !firstAt.has(m.messageId)) firstAt.set(m.messageId, m.receivedAt);
    }
    const deliverTimes = [...answeredAt].flatMap(([id, t]) => firstAt.has(id) ? [Math.max(0, firstAt.get(id)! - t)] : []).sort((a, b) => a - b);
    const dq = (q: number) => Math.round(deliverTimes[Math.min(deliverTimes.length - 1, Math.floor(q * deliverTimes.length))] ?? 0);
    report.deliverMs = { p50: dq(0.5), p99: dq(0.99), max: dq(1), over20s: deliverTimes.filter((t) => t > 20_000).length };
    for (const r of all.values()) {
      const n = counts.get(r.messageId) ?? 0;
      if (n >= 1) report.delivered++;
      if (n > 1) {
        report.twice++;
        if (Object.keys(report.twiceHistories).length < 5) {
          const st = await status(nc, r.mailId).catch(() => undefined);
          report.twiceHistories[r.mailId] = st?.history.map((e) => `${e.at.slice(11, 23)} ${e.state} ${e.node} #${e.attempt}${e.detail.inDoubt ? " inDoubt" : ""}`) ?? ["?"];
        }
      }
      if (n === 0) report.missing++;
    }

    // The ledger: every event of MAIL_EVENTS in a signed block, the whole log verified.
    const jsm = await jetstreamManager(nc);
    const lkv = await ledgerKv(nc);
    report.ledger.events = (await jsm.streams.info(Names.eventsStream)).state.messages;
    await until("every event in the ledger", async () => {
      report.ledger.events = (await jsm.streams.info(Names.eventsStream)).state.messages;
      report.ledger.size = await headSize(lkv);
      return report.ledger.size >= report.ledger.events;
    }, 60_000, 250).catch(() => undefined);
    say(`ledger caught up after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    report.ledger.verify = await ledgerCli(["verify", "--json", "--server", cluster.urls.join(","), "--key", id.verifierKey], {});

    // Readiness back, then a clean stop.
    await until("every node ready again", async () => (await Promise.all(nodes.map(readyz))).every((s) => s === 200), 30_000, 200).catch(() => undefined);
    for (const n of nodes) if (await readyz(n) !== 200) report.notReady.push(`${n.name}: ${await fetch(`http://127.0.0.1:${n.port}/readyz`).then((r) => r.text(), (e: unknown) => String(e))}`);
    await Promise.all(nodes.map(async (n) => {
      n.child.kill("SIGTERM");
      report.exits[n.name] = await exited(n.child);
    }));
    for (const n of nodes) {
      for (const line of (await readFile(n.log, "utf8")).split("\n")) {
        if (!line.startsWith("{")) continue;
        const rec = JSON.parse(line) as { level: number; msg: string; err?: { message?: string }; code?: string };
        if (rec.level >= 50) report.nodeErrors.push(`${n.name}: ${rec.msg}${rec.code ? ` ${rec.code}` : ""}${rec.err?.message ? `: ${rec.err.message.slice(0, 200)}` : ""}`);
        else if (rec.level >= 40) bump(report.nodeWarnings, `${n.name}: ${rec.msg}`);
      }
    }
    report.seconds = Math.round((Date.now() - t0) / 1000);
    return report;
  } finally {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill("SIGKILL");
    await sys?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await sink.close();
    await cluster?.dispose();
  }
}

/**
 * What the run broke of the system's promises, empty when nothing: refused
 * or unanswered submissions carry a transient code (never INTERNAL, never a
 * raw client error) and go through when resubmitted with their key; each
 * mail is delivered exactly once and Sent (no node dies, so nothing may be
 * in doubt); mail.status answers or says to ask again (never NOT_FOUND for
 * an accepted mail); every event is in a signed block of a log that
 * verifies; no node logs an error, each is ready again and stops cleanly;
 * every leader was stepped down at least twice.
 */
export function violations(r: StepdownReport): string[] {
  const out: string[] = [];
  const notTransient = (codes: Record<string, number>) =>
    Object.keys(codes).filter((c) => !isErrorCode(c) || ErrorCodes[c].retry !== "transient" || c === "INTERNAL");
  const bad = (what: string, v: unknown) => out.push(`${what}: ${JSON.stringify(v)}`);
  if (notTransient(r.failedByCode).length > 0) bad("submissions failed with a code that is not a stable transient one", r.failedByCode);
  if (r.resubmitFailures.length > 0) bad("resubmissions failed", r.resubmitFailures);
  if (r.accepted + r.resubmittedOk !== r.submitted) bad("submitted, accepted + resubmitted", [r.submitted, r.accepted + r.resubmittedOk]);
  if (r.delivered !== r.submitted || r.missing > 0) bad("delivered, missing", [r.delivered, r.missing]);
  if (r.twice > 0) bad("delivered twice", r.twiceHistories);
  if (Object.keys(r.notSent).length > 0) bad("not Sent", r.notSent);
  if (notTransient(r.statusFailedByCode).length > 0) bad("mail.status failed with a code that is not a stable transient one", r.statusFailedByCode);
  if (r.ledger.size !== r.ledger.events) bad("ledger entries, events", [r.ledger.size, r.ledger.events]);
  if (r.ledger.verify.code !== 0 || !(JSON.parse(r.ledger.verify.stdout || "{}") as { ok?: boolean }).ok) bad("ledger verify", r.ledger.verify);
  if (r.nodeErrors.length > 0) bad("node errors", r.nodeErrors);
  if (r.notReady.length > 0) bad("not ready at the end", r.notReady);
  if (Object.values(r.exits).some((c) => c !== 0)) bad("exit codes", r.exits);
  for (const t of STEPDOWN_TARGETS) if ((r.stepdowns[t.name]?.ok ?? 0) < 2) bad(`step-downs of ${t.name}`, r.stepdowns[t.name]);
  return out;
}

/** One line: the figures a run is judged by. */
export function summaryLine(r: StepdownReport): string {
  const sd = Object.entries(r.stepdowns).map(([k, v]) => `${k} ${v.ok}${v.failed ? `(+${v.failed} refused)` : ""}`).join(", ");
  return `stepdown probe: ${r.submitted} submitted, ${r.accepted} accepted, failed ${JSON.stringify(r.failedByCode)} (${r.resubmittedOk} resubmitted ok), `
    + `submit p50 ${r.submitMs.p50} ms, p99 ${r.submitMs.p99} ms, max ${r.submitMs.max} ms (${r.submitMs.over2500} over 2.5 s), `
    + `${r.delivered} delivered (after the answer: p50 ${r.deliverMs.p50} ms, p99 ${r.deliverMs.p99} ms, max ${r.deliverMs.max} ms, ${r.deliverMs.over20s} over 20 s), `
    + `${r.twice} twice, ${r.missing} missing; status ${r.statusCalls} asked, failed ${JSON.stringify(r.statusFailedByCode)}; `
    + `ledger ${r.ledger.size}/${r.ledger.events} events; step-downs: ${sd}; ${r.seconds} s`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [mails, publishers, everyMs] = process.argv.slice(2).map(Number);
  const r = await runStepdownProbe({ mails: mails || 1500, publishers: publishers || 16, everyMs: everyMs || 300, progress: (l) => console.log(l) });
  console.log(JSON.stringify(r, null, 2));
  console.log(summaryLine(r));
  const broken = violations(r);
  for (const v of broken) console.log(`VIOLATION ${v}`);
  process.exitCode = broken.length > 0 ? 1 : 0;
}
