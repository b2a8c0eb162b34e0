import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { freePort } from "../../nodes/local/nats-cluster.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { SmtpSink } from "../../nodes/local/smtp-sink.js";
import { NatsRoles, generatePasswords, userOf } from "../../nodes/local/permissions.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { status, structured, submit, until } from "../helpers/system.js";
import { CHART, PRODUCTION_VALUES, REPO_ROOT, find, renderChart, resolveEnv, roleOf, secretData, workloads } from "./render.js";
import type { Container, K8sObject, PodSpec, Workload } from "./render.js";

/**
 * The rendered chart, run: every rendered container's command with its
 * rendered environment (ConfigMaps and Secrets resolved from the rendered
 * objects, operator-made Secrets supplied, secret volumes materialised as
 * files) as a local process against a real 3-node cluster whose servers
 * include the rendered auth.conf the way the nats subchart values wire it.
 * Only the addresses change: FEN_NATS_URLS, the HTTP port and the SMTP relay.
 * The provisioning job runs twice (idempotent); every node becomes ready.
 */

const exec = promisify(execFile);
const RECIPIENT = "smoke-rcpt@example.net";

interface Running {
  readonly role: string;
  readonly child: ChildProcess;
  readonly port: number;
  readonly env: Record<string, string>;
  readonly out: string[];
}

interface Deployment {
  readonly cluster: TestCluster;
  readonly objects: K8sObject[];
  readonly nodes: Running[];
  readonly passwords: Record<string, string>;
  readonly tmp: string;
  readonly caFile?: string;
}

/** Secret-volume mounts of a container become local folders; env values under a mount path are rewritten to them. */
async function materialiseMounts(c: Container, pod: PodSpec, env: Record<string, string>, secrets: (name: string) => Record<string, string>, dir: string): Promise<void> {
  for (const m of c.volumeMounts ?? []) {
    const vol = pod.volumes?.find((v) => v.name === m.name);
    if (!vol?.secret) continue;
    const local = path.join(dir, `${c.name}-${m.name}`);
    await mkdir(local, { recursive: true });
    const data = secrets(vol.secret.secretName);
    for (const item of vol.secret.items ?? Object.keys(data).map((k) => ({ key: k, path: k }))) {
      await writeFile(path.join(local, item.path), data[item.key] ?? "");
    }
    for (const [k, v] of Object.entries(env)) if (v.startsWith(`${m.mountPath}/`)) env[k] = path.join(local, v.slice(m.mountPath.length + 1));
  }
}

/** Runs a container's command as the kubelet would: its env only (plus PATH/HOME), from the repository root (the image's /app). */
function runContainer(c: Container, env: Record<string, string>): { child: ChildProcess; out: string[] } {
  const [cmd, ...args] = c.command;
  expect(cmd).toBe("node");
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { PATH: process.env["PATH"] ?? "", HOME: os.tmpdir(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out: string[] = [];
  let partial = "";
  child.stdout!.on("data", (b: Buffer) => {
    const lines = (partial + b.toString()).split("\n");
    partial = lines.pop() ?? "";
    out.push(...lines.filter(Boolean));
  });
  child.stderr!.on("data", (b: Buffer) => out.push(`[stderr] ${b.toString()}`));
  return { child, out };
}

const exitOf = (child: ChildProcess) => new Promise<number | null>((r) =>
  child.exitCode !== null || child.signalCode !== null ? r(child.exitCode) : child.once("exit", (code) => r(code)));

async function httpGet(port: number, p: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`);
  return { status: res.status, body: await res.text() };
}

/** A TLS CA and a server certificate for 127.0.0.1 (openssl). */
async function makeTls(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (n: string) => path.join(dir, n);
  const ossl = (...args: string[]) => exec("openssl", args, { cwd: dir });
  await ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.crt"), "-days", "1", "-subj", "/CN=fen smoke CA");
  await ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=localhost");
  await writeFile(f("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await ossl("x509", "-req", "-in", f("server.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.crt"), "-days", "1", "-extfile", f("san.ext"));
  return { ca: f("ca.crt"), cert: f("server.crt"), key: f("server.key") };
}

/**
 * Deploys `objects` locally. `external` holds the Secrets an operator
 * creates before installing (they are not rendered).
 */
async function deploy(objects: K8sObject[], opts: { external: Record<string, Record<string, string>>; tls: boolean; smtpPort: number }): Promise<Deployment> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), "fen-smoke-"));
  const secrets = (name: string) => {
    const o = find(objects, "Secret", name);
    const data = o ? secretData(o) : opts.external[name];
    if (!data) throw new Error(`Secret ${name} is neither rendered nor provided`);
    return data;
  };

  // The NATS servers, wired as the `nats:` values of values.yaml wire the subchart:
  // the auth ConfigMap mounted and included, each password from the credentials Secret.
  const natsValues = (parse(await readFile(path.join(CHART, "values.yaml"), "utf8")) as { nats: NatsSubchartValues }).nats;
  const includeKey = Object.keys(natsValues.config.merge).find((k) => k.endsWith("$include"))!;
  const include = natsValues.config.merge[includeKey]!;
  const mount = natsValues.container.patch[0]!.value;
  const volume = natsValues.podTemplate.patch[0]!.value;
  expect(path.posix.resolve("/etc/nats-config", include)).toBe(`${mount.mountPath}/auth.conf`);
  expect(volume.name).toBe(mount.name);
  const authConf = find(objects, "ConfigMap", volume.configMap.name)?.data?.["auth.conf"];
  expect(authConf, `ConfigMap ${volume.configMap.name}`).toBeDefined();
  const confDir = path.join(tmp, "nats-config");
  await mkdir(path.join(confDir, "..", path.basename(mount.mountPath)), { recursive: true });
  await writeFile(path.join(confDir, "..", path.basename(mount.mountPath), "auth.conf"), authConf!);
  const serverEnv: Record<string, string> = {};
  for (const [name, spec] of Object.entries(natsValues.container.env)) {
    const ref = spec.valueFrom.secretKeyRef;
    serverEnv[name] = secrets(ref.name)[ref.key]!;
  }
  const passwords = secrets(natsValues.container.env["FASTEMAILNET_PASSWORD_PROVISION"]!.valueFrom.secretKeyRef.name);
  const tls = opts.tls ? await makeTls(tmp) : undefined;
  const cluster = await startTestCluster({
    dir: confDir, extraConfig: `include ${include};`, env: serverEnv,
    ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    creds: { user: userOf("provision"), pass: passwords["provision"]!, ...(tls ? { tls: { ca: await readFile(tls.ca, "utf8") } } : {}) },
  });
  if (tls) opts.external["fastemailnet-nats-ca"] = { "ca.crt": await readFile(tls.ca, "utf8") };

  const envFor = async (w: Workload, c: Container) => {
    const env = resolveEnv(c, objects, opts.external, { name: `${w.object.metadata.name}-smoke` });
    await materialiseMounts(c, w.pod, env, secrets, tmp);
    env["FEN_NATS_URLS"] = cluster.urls.join(",");
    if ("FEN_HTTP_PORT" in env) { env["FEN_HTTP_HOST"] = "127.0.0.1"; env["FEN_HTTP_PORT"] = String(await freePort()); }
    if (roleOf(c) === "processing") { env["FEN_SMTP_HOST"] = "127.0.0.1"; env["FEN_SMTP_PORT"] = String(opts.smtpPort); }
    return env;
  };

  const all = workloads(objects);
  const job = all.find((w) => w.object.kind === "Job")!;
  for (const attempt of [1, 2]) {
    const c = job.pod.containers[0]!;
    const { child, out } = runContainer(c, await envFor(job, c));
    const code = await exitOf(child);
    expect(code, `provisioning run ${attempt}:\n${out.join("\n")}`).toBe(0);
    const actions = out.map((l) => JSON.parse(l) as { action?: string }).filter((l) => l.action).map((l) => l.action);
    expect(actions.length).toBeGreaterThan(0);
    if (attempt === 2) expect(new Set(actions)).toEqual(new Set(["unchanged"]));
  }

  const nodes: Running[] = [];
  for (const w of all.filter((x) => x.object.kind === "Deployment")) {
    const c = w.pod.containers[0]!;
    const env = await envFor(w, c);
    const { child, out } = runContainer(c, env);
    nodes.push({ role: roleOf(c), child, port: Number(env["FEN_HTTP_PORT"]), env, out });
  }
  return { cluster, objects, nodes, passwords, tmp, ...(tls ? { caFile: tls.ca } : {}) };
}

interface NatsSubchartValues {
  config: { merge: Record<string, string> };
  container: {
    env: Record<string, { valueFrom: { secretKeyRef: { name: string; key: string } } }>;
    patch: { value: { name: string; mountPath: string } }[];
  };
  podTemplate: { patch: { value: { name: string; configMap: { name: string } } }[] };
}

async function waitReady(d: Deployment): Promise<void> {
  for (const n of d.nodes) {
    await until(`${n.role} /readyz 200`, async () => {
      if (n.child.exitCode !== null) throw new Error(`${n.role} exited ${n.child.exitCode}:\n${n.out.join("\n")}`);
      return (await httpGet(n.port, "/readyz").catch(() => ({ status: 0 }))).status === 200;
    }, 150_000, 200).catch((err: unknown) => { throw new Error(`${n.role} not ready:\n${n.out.slice(-20).join("\n")}`, { cause: err }); });
  }
}

async function teardown(d: Deployment | undefined): Promise<(number | null)[]> {
  if (!d) return [];
  const codes = await Promise.all(d.nodes.map(async (n) => {
    if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill("SIGTERM");
    const t = setTimeout(() => n.child.kill("SIGKILL"), 20_000);
    const code = await exitOf(n.child);
    clearTimeout(t);
    return code;
  }));
  await d.cluster.dispose();
  await rm(d.tmp, { recursive: true, force: true });
  return codes;
}

/** Ledger keys made with the documented command (deploy/README.md), as the operator's Secret. */
async function ledgerKeysSecret(): Promise<Record<string, string>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fen-ledger-keys-"));
  try {
    await exec(process.execPath, ["--import", "tsx", "deploy/ledger-keygen.ts", "smoke.example/ledger", path.join(dir, "keys")], { cwd: REPO_ROOT });
    return {
      "signing.key": await readFile(path.join(dir, "keys", "signing.key"), "utf8"),
      "commitment.key": await readFile(path.join(dir, "keys", "commitment.key"), "utf8"),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("default values, run locally", () => {
  let d: Deployment | undefined;
  let sink: SmtpSink;
  let publisher: NatsConnection;
  let stopCodes: (number | null)[] = [];

  beforeAll(async () => {
    sink = await startSmtpSink();
    const objects = await renderChart({ release: "fastemailnet" });
    d = await deploy(objects, { external: { "fastemailnet-ledger-keys": await ledgerKeysSecret() }, tls: false, smtpPort: sink.port });
    await waitReady(d);
    publisher = await connect({ servers: d.cluster.urls, user: userOf("publisher"), pass: d.passwords["publisher"]! });
  });
  afterAll(async () => {
    await publisher?.close();
    stopCodes = await teardown(d);
    await sink?.close();
    expect(stopCodes.every((c) => c === 0), `exit codes ${stopCodes.join(",")}`).toBe(true);
  });

  it("every node is ready, alive and serves its metrics", async () => {
    expect(d!.nodes.map((n) => n.role).sort()).toEqual(["gateway", "ledger", "processing"]);
    for (const n of d!.nodes) {
      expect((await httpGet(n.port, "/healthz")).status).toBe(200);
      const m = await httpGet(n.port, "/metrics");
      expect(m.status).toBe(200);
      // Each node exports what it counts, and nothing it would only report as 0.
      const own: Record<string, string[]> = {
        gateway: ["fen_mails_submitted_total"],
        processing: ["fen_mails_delivered_total", "fen_mails_deferred_total", "fen_mails_bounced_total", "fen_mails_quarantined_total",
          "fen_delivery_latency_seconds", "fen_work_consumer_pending", "fen_work_consumer_ack_pending", "fen_recipients_refused_total"],
        ledger: ["fen_ledger_height"],
      };
      for (const [role, names] of Object.entries(own)) {
        for (const name of names) expect(m.body.includes(`\n${name}`) || m.body.includes(`# HELP ${name} `), `${n.role} ${name}`).toBe(role === n.role);
      }
      expect(m.body).toContain("fen_process_cpu_seconds_total");
    }
  });

  it("a mail sent by the publisher user is delivered and recorded, and the metrics count it", async () => {
    const r = await submit(publisher, structured("smoke", {
      key: "smoke-1", to: [RECIPIENT], subject: "Notes from Tuesday's planning meeting",
      text: "Hi team,\n\nthe notes from Tuesday are below; the next meeting is on the 14th.\n\nBest,\nAnn",
    }));
    await until("Sent and in the ledger", async () => {
      const s = await status(publisher, r.mailId);
      return s.state === "Sent" && (s.ledger?.length ?? 0) > 0;
    }, 60_000, 100);
    expect(sink.messages.map((m) => m.messageId)).toContain(r.messageId);
    const metric = async (role: string, name: string) => {
      const n = d!.nodes.find((x) => x.role === role)!;
      const line = (await httpGet(n.port, "/metrics")).body.split("\n").find((l) => l.startsWith(`${name} `));
      return Number(line?.split(" ")[1]);
    };
    expect(await metric("gateway", "fen_mails_submitted_total")).toBe(1);
    expect(await metric("processing", "fen_mails_delivered_total")).toBe(1);
    expect(await metric("processing", "fen_delivery_latency_seconds_count")).toBe(1);
    await until("lag sampled back to 0", async () => (await metric("processing", "fen_work_consumer_pending")) === 0, 20_000, 200);
    await until("ledger height", async () => (await metric("ledger", "fen_ledger_height")) >= 1, 20_000, 200);
  });

  it("node logs are JSON, named after the pod, and carry no recipient address and no password", () => {
    for (const n of d!.nodes) {
      const lines = n.out.filter((l) => !l.startsWith("[stderr]"));
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) {
        const rec = JSON.parse(l) as { node?: string; level?: number };
        expect(rec.node).toBe(n.env["FEN_NODE_NAME"]);
        expect(typeof rec.level).toBe("number");
      }
      const text = n.out.join("\n");
      expect(text).not.toContain(RECIPIENT);
      for (const pw of Object.values(d!.passwords)) expect(text).not.toContain(pw);
      expect(text).not.toContain(n.env["FEN_LEDGER_SIGNING_KEY"]?.trim() ?? "no-key");
    }
  });
});

describe("production values (TLS to NATS, operator-made Secrets), run locally", () => {
  let d: Deployment | undefined;
  let sink: SmtpSink;

  beforeAll(async () => {
    sink = await startSmtpSink();
    const objects = await renderChart({ release: "prod", valuesFiles: [PRODUCTION_VALUES] });
    const passwords = generatePasswords(randomBytes);
    d = await deploy(objects, {
      tls: true, smtpPort: sink.port,
      external: {
        "fastemailnet-nats-credentials": Object.fromEntries(NatsRoles.map((r) => [r, passwords[r]])),
        "fastemailnet-ledger-keys": await ledgerKeysSecret(),
        "fastemailnet-smtp-relay": { password: randomBytes(12).toString("hex") },
      },
    });
  });
  afterAll(async () => {
    const codes = await teardown(d);
    await sink?.close();
    expect(codes.every((c) => c === 0), `exit codes ${codes.join(",")}`).toBe(true);
  });

  it("every node connects over TLS with its role user and becomes ready", async () => {
    await waitReady(d!);
    for (const n of d!.nodes) {
      expect(n.env["FEN_NATS_TLS_CA"]).toMatch(/ca\.crt$/);
      expect(await readFile(n.env["FEN_NATS_TLS_CA"]!, "utf8")).toBe(await readFile(d!.caFile!, "utf8"));
      expect(n.env["FEN_NATS_USER"]).toBe(userOf(n.role as "gateway"));
    }
  });

  it("a client without the CA cannot connect", async () => {
    await expect(connect({ servers: d!.cluster.urls, user: userOf("publisher"), pass: "x", reconnect: false, timeout: 2000 })).rejects.toThrow();
  });
});
