import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { Names } from "../../protocol/index.js";
import { NatsRoles, SERVER_SAFE_PASSWORD, envUsers, renderAuthorization, userOf } from "../../nodes/local/permissions.js";
import { CHART_MANAGED_KEYS, staleChartFiles } from "../../deploy/chart-gen.js";
import { SERVER_LIMITS } from "../../nodes/local/nats-cluster.js";
import { checkServerPayload, maxMessageBytesWithin, maxRequestBytesFor } from "../../nodes/gateway/index.js";
import { ConfigTables, CrossKeyRules, ProcessingKeys, loadConfig } from "../../nodes/config/index.js";
import type { KeySpec } from "../../nodes/config/index.js";
import {
  PRODUCTION_VALUES, REPO_ROOT, SECRET_ENV_NAMES, find, helmLint, helmTemplate, renderChart, roleOf, secretData, tableOf, workloads,
} from "./render.js";
import type { Container, K8sObject } from "./render.js";

/**
 * The Helm chart, linted and rendered with the pinned helm, with the default
 * values and with values-production.yaml, and checked against the code it
 * deploys: every env name is a key of the node's schema table, no secret key
 * sits in a ConfigMap, every container is probed, limited and locked down.
 */

const variants = {
  default: [] as string[],
  production: [PRODUCTION_VALUES],
};
const rendered = new Map<string, K8sObject[]>();

beforeAll(async () => {
  for (const [name, files] of Object.entries(variants)) rendered.set(name, await renderChart({ valuesFiles: files }));
});

it("the generated chart files (auth.conf, values.schema.json) match the code", async () => {
  expect(await staleChartFiles(), "regenerate with: node --import tsx deploy/chart-gen.ts").toEqual([]);
});

it("provision.updateSpecs=true runs the provisioning Job with --update (for an upgrade that changed a spec)", async () => {
  const provisionCommand = (objects: K8sObject[]) =>
    workloads(objects).flatMap((w) => w.pod.containers).find((c) => c.command[3] === "nodes/provision/main.ts")?.command;
  expect(provisionCommand(rendered.get("default")!)).toEqual(["node", "--import", "tsx", "nodes/provision/main.ts"]);
  expect(provisionCommand(await renderChart({ set: ["provision.updateSpecs=true"] })))
    .toEqual(["node", "--import", "tsx", "nodes/provision/main.ts", "--update"]);
});

it("the bundled NATS runs the nats-server version the tests run (deploy/tools/install.sh)", async () => {
  const pinned = /^NATS_SERVER_VERSION=v(\S+)$/m.exec(await readFile(path.join(REPO_ROOT, "deploy/tools/install.sh"), "utf8"))?.[1];
  const values = parse(await readFile(path.join(REPO_ROOT, "deploy/chart/fastemailnet/values.yaml"), "utf8")) as { nats: { container: { image: { tag: string } } } };
  expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
  expect(values.nats.container.image.tag).toBe(`${pinned}-alpine`);
});

it("the bundled NATS has the client limits the local and test clusters run with (a 10 MiB mail fits a request)", async () => {
  const values = parse(await readFile(path.join(REPO_ROOT, "deploy/chart/fastemailnet/values.yaml"), "utf8")) as { nats: { config: { merge: Record<string, unknown> } } };
  expect(values.nats.config.merge).toMatchObject({ max_payload: SERVER_LIMITS.maxPayload, max_pending: SERVER_LIMITS.maxPending });
  expect(maxRequestBytesFor(10 * 1024 * 1024)).toBeLessThan(SERVER_LIMITS.maxPayload);
});

it("the production values' message limit fits a request the servers carry (it was 25 MiB: the gateway now refuses to start with that)", async () => {
  const objects = await renderChart({ valuesFiles: [PRODUCTION_VALUES] });
  const limit = Number(find(objects, "ConfigMap", "fastemailnet-gateway")?.data?.["FEN_MAX_MESSAGE_BYTES"]);
  expect(limit).toBeGreaterThan(0);
  expect(() => checkServerPayload(limit, SERVER_LIMITS.maxPayload)).not.toThrow();
});

it("with the bundled NATS, a message limit its max_payload cannot carry is refused at render, not by crash-looping gateways", async () => {
  await expect(helmTemplate({ set: ["nats.enabled=true"] })).resolves.toContain("fastemailnet-gateway");
  await expect(helmTemplate({ set: ["nats.enabled=true", "config.gateway.FEN_MAX_MESSAGE_BYTES=26214400"] }))
    .rejects.toThrow(/FEN_MAX_MESSAGE_BYTES \(26214400\) needs requests of up to \d+ bytes, more than the bundled NATS's max_payload \(16777216/);
  // The largest limit the chart takes is the gateway's own (maxMessageBytesWithin); one byte more is refused.
  const most = maxMessageBytesWithin(SERVER_LIMITS.maxPayload);
  await expect(helmTemplate({ set: ["nats.enabled=true", `config.gateway.FEN_MAX_MESSAGE_BYTES=${most}`] })).resolves.toContain("fastemailnet-gateway");
  await expect(helmTemplate({ set: ["nats.enabled=true", `config.gateway.FEN_MAX_MESSAGE_BYTES=${most + 1}`] })).rejects.toThrow(/max_payload/);
  // External NATS: its max_payload is not known here (the gateway checks it at start).
  await expect(helmTemplate({ set: ["config.gateway.FEN_MAX_MESSAGE_BYTES=26214400"] })).resolves.toContain("fastemailnet-gateway");
});

describe.each(Object.entries(variants))("%s values", (variant, files) => {
  const objects = () => rendered.get(variant)!;
  const containers = () => workloads(objects()).flatMap((w) => w.pod.containers.map((c) => ({ w, c })));

  it("helm lint passes", async () => {
    const out = await helmLint(files);
    expect(out).toContain("0 chart(s) failed");
    expect(out).not.toMatch(/\[ERROR\]/);
  });

  it("renders the gateway, processing and ledger Deployments and the provisioning Job", () => {
    const kinds = workloads(objects()).map((w) => `${w.object.kind}/${roleOf(w.pod.containers[0]!)}`).sort();
    expect(kinds).toEqual(["Deployment/gateway", "Deployment/ledger", "Deployment/processing", "Job/provision"]);
  });

  it("every node container has /healthz liveness and /readyz readiness probes on its HTTP port", () => {
    for (const { w, c } of containers()) {
      if (w.object.kind === "Job") continue; // a run-to-completion job has nothing to probe
      const env = envOf(c);
      expect(c.livenessProbe?.httpGet, c.name).toMatchObject({ path: "/healthz", port: "http" });
      expect(c.readinessProbe?.httpGet, c.name).toMatchObject({ path: "/readyz", port: "http" });
      expect(c.ports?.find((p) => p.name === "http")?.containerPort).toBe(Number(env["FEN_HTTP_PORT"]));
      expect(env["FEN_HTTP_HOST"]).toBe("0.0.0.0");
    }
  });

  it("every container has cpu and memory requests and limits", () => {
    for (const { c } of containers()) {
      for (const side of ["requests", "limits"] as const) {
        expect(Object.keys(c.resources?.[side] ?? {}).sort(), `${c.name} ${side}`).toEqual(["cpu", "memory"]);
      }
    }
  });

  it("every container runs non-root, read-only, without capabilities, under seccomp RuntimeDefault", () => {
    for (const { w, c } of containers()) {
      expect(c.securityContext, c.name).toMatchObject({
        runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
        capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" },
      });
      expect(w.pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
      expect(Number(w.pod.securityContext?.["runAsUser"])).toBeGreaterThan(0);
      expect(w.pod.automountServiceAccountToken).toBe(false);
      // tsx needs a writable TMPDIR under a read-only root.
      expect(c.volumeMounts?.map((m) => m.mountPath)).toContain("/tmp");
    }
  });

  it("every env name a container gets is a key of its node's table in nodes/config/schema.ts", () => {
    for (const { c } of containers()) {
      const known = new Set(Object.values(tableOf(roleOf(c))).map((s) => s.env));
      const names = [...Object.keys(configMapEnv(c)), ...(c.env ?? []).map((e) => e.name)];
      expect(names.length).toBeGreaterThan(0);
      expect(names.filter((n) => !known.has(n)), c.name).toEqual([]);
    }
  });

  it("no secret key is in a ConfigMap; secret keys come from Secrets only", () => {
    for (const cm of objects().filter((o) => o.kind === "ConfigMap")) {
      expect(Object.keys(cm.data ?? {}).filter((k) => SECRET_ENV_NAMES.has(k)), cm.metadata.name).toEqual([]);
    }
    for (const { c } of containers()) {
      for (const e of c.env ?? []) {
        if (SECRET_ENV_NAMES.has(e.name)) expect(e.valueFrom?.secretKeyRef, `${c.name} ${e.name}`).toBeDefined();
        expect(e.value, `${c.name} ${e.name} must not be inline`).toBeUndefined();
      }
    }
    // The auth block holds no password: the servers read them from their environment.
    const auth = find(objects(), "ConfigMap", "fastemailnet-nats-auth")?.data?.["auth.conf"] ?? "";
    expect(auth).not.toMatch(/password:\s*"/);
  });

  it("generated NATS passwords are ones nats-server can read from its environment", () => {
    const creds = find(objects(), "Secret", "fastemailnet-nats-credentials");
    if (!creds) return; // production: an existing Secret
    const data = secretData(creds);
    expect(Object.keys(data).sort()).toEqual([...NatsRoles].sort());
    for (const pw of Object.values(data)) expect(pw).toMatch(SERVER_SAFE_PASSWORD);
  });

  it("values cannot set the keys the chart manages", () => {
    for (const { c } of containers()) {
      const env = configMapEnv(c);
      if (roleOf(c) !== "provision") expect(env["FEN_HTTP_HOST"]).toBe("0.0.0.0");
      expect(env["FEN_NATS_USER"]).toBe(userOf(roleOf(c)));
    }
    expect(CHART_MANAGED_KEYS).toContain("FEN_NATS_USER");
  });

  it("the NATS authorization block is the one generated from nodes/local/permissions.ts", () => {
    const auth = find(objects(), "ConfigMap", "fastemailnet-nats-auth")?.data?.["auth.conf"];
    expect(auth).toBe(renderAuthorization(envUsers()));
  });

  it("the ledger node is one writer, replaced with Recreate; each Deployment has a PodDisruptionBudget and a NetworkPolicy", () => {
    const ledger = find(objects(), "Deployment", "fastemailnet-ledger")!;
    expect(ledger.spec).toMatchObject({ replicas: 1, strategy: { type: "Recreate" } });
    for (const w of workloads(objects())) {
      const labels = w.podLabels;
      const selects = (o: K8sObject, at: (s: Record<string, unknown>) => unknown) => {
        const sel = at(o.spec ?? {}) as { matchLabels?: Record<string, string> } | undefined;
        return Object.entries(sel?.matchLabels ?? { none: "x" }).every(([k, v]) => labels[k] === v);
      };
      expect(objects().some((o) => o.kind === "NetworkPolicy" && selects(o, (s) => s["podSelector"])), w.object.metadata.name).toBe(true);
      if (w.object.kind === "Deployment") {
        expect(objects().some((o) => o.kind === "PodDisruptionBudget" && selects(o, (s) => s["selector"])), w.object.metadata.name).toBe(true);
      }
    }
  });

  it("provisioning is a pre-install/pre-upgrade hook, and what it needs exists before it", () => {
    const job = find(objects(), "Job", "fastemailnet-provision")!;
    const weight = (o: K8sObject | undefined) => Number(o?.metadata.annotations?.["helm.sh/hook-weight"]);
    expect(job.metadata.annotations?.["helm.sh/hook"]).toBe("pre-install,pre-upgrade");
    const cm = find(objects(), "ConfigMap", "fastemailnet-provision");
    const sa = find(objects(), "ServiceAccount", "fastemailnet");
    for (const dep of [cm, sa]) {
      expect(dep?.metadata.annotations?.["helm.sh/hook"]).toContain("pre-install");
      expect(weight(dep)).toBeLessThan(weight(job));
    }
    const creds = find(objects(), "Secret", "fastemailnet-nats-credentials");
    if (creds) expect(weight(creds)).toBeLessThan(weight(job));
  });

  it("the image runs each node by the file the chart names", () => {
    for (const { c } of containers()) {
      expect(c.command.slice(0, 3)).toEqual(["node", "--import", "tsx"]);
      expect(existsSync(path.join(REPO_ROOT, c.command[3]!)), c.command[3]).toBe(true);
    }
  });

  function envOf(c: Container): Record<string, string> {
    return configMapEnv(c);
  }
  function configMapEnv(c: Container): Record<string, string> {
    return Object.assign({}, ...(c.envFrom ?? []).map((f) => find(objects(), "ConfigMap", f.configMapRef?.name ?? "")?.data ?? {}));
  }
});

describe("production values", () => {
  const objects = () => rendered.get("production")!;

  it("reads credentials and ledger keys from existing Secrets and renders none", () => {
    expect(objects().filter((o) => o.kind === "Secret")).toEqual([]);
  });

  it("mounts the NATS CA where FEN_NATS_TLS_CA points", () => {
    for (const w of workloads(objects())) {
      const c = w.pod.containers[0]!;
      const cm = find(objects(), "ConfigMap", c.envFrom?.[0]?.configMapRef?.name ?? "")!;
      const ca = cm.data?.["FEN_NATS_TLS_CA"];
      const mount = c.volumeMounts?.find((m) => ca?.startsWith(`${m.mountPath}/`));
      expect(mount, c.name).toBeDefined();
      const vol = w.pod.volumes?.find((v) => v.name === mount!.name);
      expect(vol?.secret?.secretName).toBe("fastemailnet-nats-ca");
      expect(vol?.secret?.items?.map((i) => i.path)).toContain(path.basename(ca!));
    }
  });

  it("scales the processing nodes with KEDA on the work consumer's lag", () => {
    const so = find(objects(), "ScaledObject", "fastemailnet-processing")!;
    expect(so.spec).toMatchObject({
      scaleTargetRef: { name: "fastemailnet-processing" },
      triggers: [{ type: "nats-jetstream", metadata: { stream: Names.workStream, consumer: Names.workConsumer, account: "$G" } }],
    });
    // KEDA owns the replica count.
    expect((find(objects(), "Deployment", "fastemailnet-processing")!.spec as Record<string, unknown>)["replicas"]).toBeUndefined();
  });
});

describe("values are validated", () => {
  const refused = (set: string[]) => helmTemplate({ set }).then(() => "rendered", (e: { stderr?: string }) => e.stderr ?? String(e));
  const refusedString = (setString: string[]) => helmTemplate({ setString }).then(() => "rendered", (e: { stderr?: string }) => e.stderr ?? String(e));

  it("an unknown key, a secret key or a chart-managed key under config is refused by values.schema.json", async () => {
    expect(await refused(["config.gateway.FEN_NOT_A_KEY=1"])).toMatch(/FEN_NOT_A_KEY/);
    expect(await refused(["config.processing.FEN_SMTP_PASSWORD=hunter2"])).toMatch(/FEN_SMTP_PASSWORD/);
    expect(await refused(["config.ledger.FEN_LEDGER_SIGNING_KEY=x"])).toMatch(/FEN_LEDGER_SIGNING_KEY/);
    expect(await refused(["config.common.FEN_NATS_USER=root"])).toMatch(/FEN_NATS_USER/);
    // A gateway key is not a processing key.
    expect(await refused(["config.processing.FEN_MESSAGE_ID_DOMAIN=x"])).toMatch(/FEN_MESSAGE_ID_DOMAIN/);
  });

  it("a config value of the wrong form is refused by values.schema.json (read off the node's schema), and so is no NATS URL", async () => {
    expect(await refused(["config.processing.FEN_SMTP_PORT=abc"])).toMatch(/FEN_SMTP_PORT/);
    expect(await refused(["config.processing.FEN_SMTP_PORT=70000"])).toMatch(/FEN_SMTP_PORT/);
    expect(await refused(["config.common.FEN_LOG_LEVEL=verbose"])).toMatch(/FEN_LOG_LEVEL/);
    expect(await refused(["config.processing.FEN_QUARANTINE_THRESHOLD=lots"])).toMatch(/FEN_QUARANTINE_THRESHOLD/);
    expect(await refused(["config.common.FEN_NATS_URLS=null"])).toMatch(/FEN_NATS_URLS/);
    expect(await refused(["config.processing.FEN_SMTP_PORT=2525", "config.processing.FEN_SMTP_SECURE=true"])).toBe("rendered");
  });

  it("a PodDisruptionBudget takes one of minAvailable and maxUnavailable, 0 included; a relay password Secret needs name and key", async () => {
    expect(await refused(["gateway.pdb.maxUnavailable=1", "gateway.pdb.minAvailable=1"])).toMatch(/pdb/);
    expect(await refused(["gateway.pdb.maxUnavailable=1"])).toBe("rendered");
    expect(await refused(["processing.pdb.minAvailable=1"])).toBe("rendered");
    expect(await refused(["processing.smtpPasswordSecret.name=relay"])).toMatch(/smtpPasswordSecret/);
    const objects = await renderChart({ set: ["processing.pdb.maxUnavailable=0"] });
    expect(find(objects, "PodDisruptionBudget", "fastemailnet-processing")?.spec).toMatchObject({ maxUnavailable: 0 });
  });

  it("a single gateway's default budget lets a node drain evict it (minAvailable 1 of 1 would block kubectl drain for ever)", async () => {
    const gatewayPdb = (objects: K8sObject[]) => find(objects, "PodDisruptionBudget", "fastemailnet-gateway")?.spec;
    expect(gatewayPdb(await renderChart({ set: ["gateway.replicas=1"] }))).toMatchObject({ maxUnavailable: 1 });
    expect(gatewayPdb(await renderChart({ set: ["gateway.replicas=1"] }))).not.toHaveProperty("minAvailable");
    expect(gatewayPdb(await renderChart({ set: ["gateway.replicas=2"] }))).toMatchObject({ minAvailable: 1 });
    // An explicit budget is the operator's choice.
    expect(gatewayPdb(await renderChart({ set: ["gateway.replicas=1", "gateway.pdb.minAvailable=1"] }))).toMatchObject({ minAvailable: 1 });
  });

  it("the NetworkPolicies let the nodes reach the NATS and relay ports they are configured with", async () => {
    type Egress = { ports: { port: number }[] }[];
    const egressPorts = (objects: K8sObject[], role: string) =>
      ((find(objects, "NetworkPolicy", `fastemailnet-${role}`)?.spec as { egress: Egress }).egress).flatMap((e) => e.ports.map((p) => p.port));
    // A relay on 2525 (common for hosted relays) and NATS on a non-default port.
    const objects = await renderChart({ set: ["config.processing.FEN_SMTP_PORT=2525", "config.common.FEN_NATS_URLS=nats://nats-a:4333\\,tls://nats-b:4333\\,nats://nats-c"] });
    expect(find(objects, "ConfigMap", "fastemailnet-processing")?.data).toMatchObject({ FEN_SMTP_PORT: "2525", FEN_NATS_URLS: "nats://nats-a:4333,tls://nats-b:4333,nats://nats-c" });
    expect(egressPorts(objects, "processing")).toEqual(expect.arrayContaining([2525, 4333, 4222]));
    for (const role of ["gateway", "ledger", "provision"]) expect(egressPorts(objects, role), role).toEqual(expect.arrayContaining([4333, 4222]));
    // Without FEN_SMTP_PORT the node uses its default.
    const unset = await renderChart({ set: ["config.processing.FEN_SMTP_PORT=null"] });
    expect(find(unset, "ConfigMap", "fastemailnet-processing")?.data?.["FEN_SMTP_PORT"]).toBeUndefined();
    expect(egressPorts(unset, "processing")).toContain(loadConfig(ProcessingKeys, {}).smtpPort);
  });

  it("whole numbers from a values file reach the ConfigMap as integers, not 2.62144e+07", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "fen-values-"));
    const file = path.join(dir, "values.yaml");
    await writeFile(file, "config:\n  gateway:\n    FEN_MAX_MESSAGE_BYTES: 26214400\n  processing:\n    FEN_SMTP_USER: 10000001\n    FEN_RETRY_MAX_MS: 3600000\n    FEN_QUARANTINE_THRESHOLD: 0.95\n"
      + "processing:\n  smtpPasswordSecret: { name: relay, key: password }\n");
    const objects = await renderChart({ valuesFiles: [file] });
    expect(find(objects, "ConfigMap", "fastemailnet-gateway")?.data).toMatchObject({ FEN_MAX_MESSAGE_BYTES: "26214400" });
    expect(find(objects, "ConfigMap", "fastemailnet-processing")?.data).toMatchObject({ FEN_SMTP_USER: "10000001", FEN_RETRY_MAX_MS: "3600000", FEN_QUARANTINE_THRESHOLD: "0.95" });
  });

  it("the processing nodes' drain deadline ends before the pod's grace period: derived from it, or refused when not shorter", async () => {
    const drain = (objects: K8sObject[]) => find(objects, "ConfigMap", "fastemailnet-processing")?.data?.["FEN_DRAIN_TIMEOUT_MS"];
    expect(drain(rendered.get("default")!)).toBe("70000"); // grace 90 s
    expect(drain(rendered.get("production")!)).toBe("100000"); // grace 120 s
    expect(drain(await renderChart({ set: ["processing.terminationGracePeriodSeconds=30"] }))).toBe("15000");
    expect(drain(await renderChart({ set: ["config.processing.FEN_DRAIN_TIMEOUT_MS=5000"] }))).toBe("5000");
    // A grace past an hour and 20 s used to render a deadline the node refuses (CONFIG_INVALID: a crash loop);
    // it is capped at the largest the node takes.
    const capped = drain(await renderChart({ set: ["processing.terminationGracePeriodSeconds=3700"] }))!;
    expect(capped).toBe("3600000");
    expect(loadConfig(ProcessingKeys, { FEN_DRAIN_TIMEOUT_MS: capped }).drainTimeoutMs).toBe(3_600_000);
    expect(() => loadConfig(ProcessingKeys, { FEN_DRAIN_TIMEOUT_MS: String(Number(capped) + 1) })).toThrow(/FEN_DRAIN_TIMEOUT_MS/);
    expect(drain(await renderChart({ set: ["processing.terminationGracePeriodSeconds=3620"] }))).toBe("3600000");
    expect(drain(await renderChart({ set: ["processing.terminationGracePeriodSeconds=3619"] }))).toBe("3599000");
    // mail.classify on the processing nodes refuses mail over the gateway's size limit.
    expect(find(rendered.get("production")!, "ConfigMap", "fastemailnet-processing")?.data?.["FEN_MAX_MESSAGE_BYTES"]).toBe("10485760");
    expect(find(rendered.get("default")!, "ConfigMap", "fastemailnet-processing")?.data?.["FEN_MAX_MESSAGE_BYTES"]).toBeUndefined();
    expect(await refused(["config.processing.FEN_DRAIN_TIMEOUT_MS=90000"])).toMatch(/FEN_DRAIN_TIMEOUT_MS \(90000\) must end at least 5 s before processing.terminationGracePeriodSeconds \(90000 ms\)/);
    expect(await refused(["config.processing.FEN_DRAIN_TIMEOUT_MS=86000"])).toMatch(/FEN_DRAIN_TIMEOUT_MS \(86000\) must end/);
    expect(await refused(["config.processing.FEN_DRAIN_TIMEOUT_MS=85000"])).toBe("rendered");
    // A leading zero is decimal to the node; the check reads it so too (not as octal).
    expect(await refusedString(["config.processing.FEN_DRAIN_TIMEOUT_MS=0120000"])).toMatch(/must end at least 5 s before/);
    for (const bad of ["-1", "99999999999999999999"]) expect(await refusedString([`config.processing.FEN_DRAIN_TIMEOUT_MS=${bad}`])).toMatch(/FEN_DRAIN_TIMEOUT_MS/);
  });

  it("values that break a rule between keys (CrossKeyRules) are refused, not rendered into pods that crash-loop with CONFIG_INVALID", async () => {
    // For every rule and role: settings the node refuses (both keys set, or one against the other's default) must be
    // refused by the chart, naming the key; settings the node takes must render.
    const candidates = ["1000", "60000", "600000", "4000000"];
    let checked = 0;
    const atLeastRules = CrossKeyRules.filter((r) => r.atLeast);
    for (const rule of atLeastRules) {
      for (const [role, table] of Object.entries(ConfigTables)) {
        if (!rule.keys.every((k) => k in table)) continue;
        const envs = rule.keys.map((k) => (table as Record<string, KeySpec>)[k]!.env);
        const settings = [
          ...envs.flatMap((e) => candidates.map((v) => ({ [e]: v }))),
          ...candidates.flatMap((a) => candidates.map((b) => ({ [envs[0]!]: a, [envs[1]!]: b }))),
        ];
        for (const env of settings) {
          let nodeSays: string;
          try { loadConfig(table, env); nodeSays = "ok"; } catch (err) { nodeSays = (err as Error).message; }
          // A value out of its key's own range is values.schema.json's business (tested above).
          const byEnv = Object.fromEntries(Object.values(table as Record<string, KeySpec>).map((k) => [k.env, k]));
          if (Object.entries(env).some(([k, v]) => !byEnv[k]!.schema.safeParse(v).success)) continue;
          const set = Object.entries(env).map(([k, v]) => `config.${role}.${k}=${v}`);
          const chartSays = await refused(set);
          if (nodeSays === "ok") expect(chartSays, set.join(" ")).toBe("rendered");
          else {
            expect(chartSays, set.join(" ")).toMatch(new RegExp(`config\\.${role}\\.${rule.field}`));
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(atLeastRules.length);
  }, 120_000);

  it("every rule between keys is one the chart checks (atLeast or together)", () => {
    expect(CrossKeyRules.filter((r) => !r.atLeast && !r.together).map((r) => r.field)).toEqual([]);
  });

  it("a relay user without the relay password Secret, or the Secret without a user, is refused (the nodes refuse both: CrossKeyRules)", async () => {
    const secret = ["processing.smtpPasswordSecret.name=relay", "processing.smtpPasswordSecret.key=password"];
    expect(() => loadConfig(ProcessingKeys, { FEN_SMTP_USER: "relay" })).toThrow(/FEN_SMTP_USER is set but FEN_SMTP_PASSWORD is not/);
    expect(await refused(["config.processing.FEN_SMTP_USER=relay"]))
      .toMatch(/config\.processing\.FEN_SMTP_USER: FEN_SMTP_USER \(config\.processing\.FEN_SMTP_USER\) is set but FEN_SMTP_PASSWORD \(processing\.smtpPasswordSecret\) is not/);
    expect(await refused(secret)).toMatch(/FEN_SMTP_PASSWORD \(processing\.smtpPasswordSecret\) is set but FEN_SMTP_USER \(config\.processing\.FEN_SMTP_USER\) is not/);
    // An empty user is no user, to the node (loadConfig) and so to the chart.
    expect(await refused([...secret, "config.processing.FEN_SMTP_USER="])).toMatch(/FEN_SMTP_USER \(config\.processing\.FEN_SMTP_USER\) is not/);
    expect(await refused(["config.processing.FEN_SMTP_USER=relay", ...secret])).toBe("rendered");
  });

  it("a container security context that is not locked down is refused", async () => {
    expect(await refused(["securityContext.readOnlyRootFilesystem=false"])).toMatch(/readOnlyRootFilesystem/);
  });

  it("HPA and KEDA together are refused", async () => {
    expect(await refused(["processing.autoscaling.hpa.enabled=true", "processing.autoscaling.keda.enabled=true"])).toMatch(/either hpa or keda/);
  });
});

describe("deploy/Dockerfile (read, not built: no docker daemon here)", () => {
  let text: string;
  beforeAll(async () => { text = await readFile(path.join(REPO_ROOT, "deploy/Dockerfile"), "utf8"); });
  const instructions = () => text.split("\n").filter((l) => /^[A-Z]+\s/.test(l));

  it("is multi-stage on node:20-slim, installs with npm ci and builds", () => {
    expect(text).toMatch(/^ARG NODE_IMAGE=node:20-slim$/m);
    expect(instructions().filter((l) => l.startsWith("FROM ")).length).toBe(2);
    expect(text).toMatch(/RUN npm ci\b/);
    expect(text).toMatch(/npm run build/);
    expect(text).toMatch(/npm prune --omit=dev/);
  });

  it("runs as the unprivileged node user, and copies every folder the chart's commands load", () => {
    const users = instructions().filter((l) => l.startsWith("USER "));
    expect(users.at(-1)).toBe("USER node");
    for (const dir of ["protocol", "ledger", "nodes", "node_modules"]) {
      expect(text, dir).toMatch(new RegExp(`COPY --from=build /src/${dir} \\./${dir}`));
    }
  });

  it("the build context keeps tests and local data out", async () => {
    const ignore = await readFile(path.join(REPO_ROOT, "deploy/Dockerfile.dockerignore"), "utf8");
    expect(ignore.split("\n")[1]).toBe("**");
    expect(ignore).not.toMatch(/^!test/m);
    expect(ignore).not.toMatch(/^!\.data/m);
  });
});

