import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parse, parseAllDocuments, stringify } from "yaml";
import { CommonKeys, ConfigTables } from "../../nodes/config/index.js";
import type { KeySpec } from "../../nodes/config/index.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The pinned helm that deploy/tools/install.sh builds. */
export const HELM_BIN = path.join(root, ".tools/bin/helm");
export const CHART = path.join(root, "deploy/chart/fastemailnet");
export const PRODUCTION_VALUES = path.join(CHART, "values-production.yaml");
export const REPO_ROOT = root;

/** A rendered Kubernetes object (only the fields the tests read are typed). */
export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string>; readonly annotations?: Record<string, string> };
  readonly data?: Record<string, string>;
  readonly stringData?: Record<string, string>;
  readonly spec?: Record<string, unknown>;
  readonly [k: string]: unknown;
}

export interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: {
    readonly secretKeyRef?: { name: string; key: string };
    readonly configMapKeyRef?: { name: string; key: string };
    readonly fieldRef?: { fieldPath: string };
  };
}

export interface Container {
  readonly name: string;
  readonly image: string;
  readonly command: string[];
  readonly envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  readonly env?: EnvVar[];
  readonly ports?: { name: string; containerPort: number }[];
  readonly livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readonly readinessProbe?: { httpGet?: { path: string; port: string | number } };
  readonly resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  readonly securityContext?: Record<string, unknown>;
  readonly volumeMounts?: { name: string; mountPath: string }[];
}

export interface PodSpec {
  readonly containers: Container[];
  readonly securityContext?: Record<string, unknown>;
  readonly volumes?: { name: string; secret?: { secretName: string; items?: { key: string; path: string }[] }; configMap?: { name: string } }[];
  readonly serviceAccountName?: string;
  readonly automountServiceAccountToken?: boolean;
}

/** A workload (Deployment or Job) with its pod spec. */
export interface Workload {
  readonly object: K8sObject;
  readonly pod: PodSpec;
  readonly podLabels: Record<string, string>;
}

/**
 * Renders the chart with `helm template`. Helm refuses to template a chart
 * whose declared dependency is not vendored (whatever its condition), and
 * the `nats` dependency cannot be fetched here, so the chart is copied and
 * rendered without the `dependencies:` stanza: with `nats.enabled: false`
 * that is exactly what helm renders after `helm dependency build`.
 */
export async function renderChart(opts: { release?: string; valuesFiles?: string[]; set?: string[]; namespace?: string } = {}): Promise<K8sObject[]> {
  const text = await helmTemplate(opts);
  return parseAllDocuments(text).map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
}

/** `helm template` output, or a rejection carrying helm's stderr. */
export async function helmTemplate(opts: { release?: string; valuesFiles?: string[]; set?: string[]; setString?: string[]; namespace?: string } = {}): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fen-chart-"));
  try {
    const chart = path.join(dir, "fastemailnet");
    await cp(CHART, chart, { recursive: true });
    const meta = parse(await readFile(path.join(chart, "Chart.yaml"), "utf8")) as Record<string, unknown>;
    delete meta["dependencies"];
    await writeFile(path.join(chart, "Chart.yaml"), stringify(meta));
    const args = ["template", opts.release ?? "fastemailnet", chart, "--namespace", opts.namespace ?? "mail"];
    for (const f of opts.valuesFiles ?? []) args.push("-f", f);
    for (const s of opts.set ?? []) args.push("--set", s);
    for (const s of opts.setString ?? []) args.push("--set-string", s);
    const { stdout } = await run(HELM_BIN, args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `helm lint` of the real chart folder; resolves with its output. */
export async function helmLint(valuesFiles: string[] = []): Promise<string> {
  const args = ["lint", CHART, ...valuesFiles.flatMap((f) => ["-f", f])];
  const { stdout, stderr } = await run(HELM_BIN, args);
  return `${stdout}${stderr}`;
}

export function workloads(objects: readonly K8sObject[]): Workload[] {
  return objects.filter((o) => o.kind === "Deployment" || o.kind === "Job").map((o) => {
    const template = (o.spec as { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } }).template;
    return { object: o, pod: template.spec, podLabels: template.metadata.labels };
  });
}

export const find = (objects: readonly K8sObject[], kind: string, name: string): K8sObject | undefined =>
  objects.find((o) => o.kind === kind && o.metadata.name === name);

/** The node role a container runs, from its command (`nodes/<role>/main.ts`). */
export function roleOf(c: Container): "gateway" | "processing" | "ledger" | "provision" {
  const script = c.command.find((a) => /^nodes\/[a-z]+\/main\.ts$/.test(a));
  const role = script?.split("/")[1];
  if (role === "gateway" || role === "processing" || role === "ledger" || role === "provision") return role;
  throw new Error(`container ${c.name} runs no known node: ${c.command.join(" ")}`);
}

/** The configuration table a role's main.ts loads. */
export function tableOf(role: ReturnType<typeof roleOf>): Record<string, KeySpec> {
  return role === "provision" ? CommonKeys : ConfigTables[role];
}

/** Env names of every table that are secret. */
export const SECRET_ENV_NAMES: ReadonlySet<string> = new Set(
  [CommonKeys, ...Object.values(ConfigTables)].flatMap((t) => Object.values(t as Record<string, KeySpec>).filter((s) => s.secret).map((s) => s.env)),
);

/** A Secret's values, decoded. */
export function secretData(o: K8sObject): Record<string, string> {
  const out: Record<string, string> = { ...(o.stringData ?? {}) };
  for (const [k, v] of Object.entries(o.data ?? {})) out[k] = Buffer.from(v, "base64").toString("utf8");
  return out;
}

/**
 * The environment the kubelet would give `c`: ConfigMaps and Secrets from
 * the rendered objects (or `external` for ones an operator creates),
 * fieldRefs from `pod`. Unresolvable references throw.
 */
export function resolveEnv(c: Container, objects: readonly K8sObject[], external: Record<string, Record<string, string>> = {}, pod = { name: `${c.name}-pod` }): Record<string, string> {
  const configMap = (name: string) => {
    const o = find(objects, "ConfigMap", name);
    if (!o) throw new Error(`ConfigMap ${name} is not rendered`);
    return o.data ?? {};
  };
  const secret = (name: string) => {
    const o = find(objects, "Secret", name);
    const data = o ? secretData(o) : external[name];
    if (!data) throw new Error(`Secret ${name} is neither rendered nor provided`);
    return data;
  };
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, configMap(from.configMapRef.name));
    if (from.secretRef) Object.assign(env, secret(from.secretRef.name));
  }
  for (const e of c.env ?? []) {
    const ref = e.valueFrom;
    let value: string | undefined = e.value;
    if (ref?.configMapKeyRef) value = configMap(ref.configMapKeyRef.name)[ref.configMapKeyRef.key];
    if (ref?.secretKeyRef) value = secret(ref.secretKeyRef.name)[ref.secretKeyRef.key];
    if (ref?.fieldRef) {
      if (ref.fieldRef.fieldPath !== "metadata.name") throw new Error(`fieldRef ${ref.fieldRef.fieldPath} not emulated`);
      value = pod.name;
    }
    if (value === undefined) throw new Error(`env ${e.name} of ${c.name} does not resolve`);
    env[e.name] = value;
  }
  return env;
}
