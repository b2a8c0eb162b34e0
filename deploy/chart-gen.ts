/**
 * Generates the chart's files that must agree with the code, from the code:
 *
 * - `files/auth.conf`: the nats-server `authorization` block of every role
 *   (nodes/local/permissions.ts), passwords as `$FASTEMAILNET_PASSWORD_<ROLE>`;
 * - `values.schema.json`: the values schema, whose `config.<role>` sections
 *   accept exactly the non-secret FEN_* keys of that role's table in
 *   nodes/config/schema.ts (less the five the chart sets itself);
 * - `files/config-rules.json`: the rules between keys (CrossKeyRules with
 *   `atLeast`, with the defaults of their keys; with `together`, with the
 *   value a secret key comes from), which the chart checks as the nodes
 *   would at start (a ConfigMap they refuse would crash-loop every pod).
 *
 *   node --import tsx deploy/chart-gen.ts          # write
 *   node --import tsx deploy/chart-gen.ts --check  # exit 1 when stale
 *
 * test/deploy/chart.test.ts fails when a committed file differs from this
 * output.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CommonKeys, ConfigTables, CrossKeyRules } from "../nodes/config/index.js";
import { z } from "zod";
import type { KeySpec } from "../nodes/config/index.js";
import { envUsers, renderAuthorization } from "../nodes/local/permissions.js";

/** The chart's folder. */
export const CHART_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "chart", "fastemailnet");

/** Keys the chart sets itself (from http.port, auth, tls and the pod name), so values may not. */
export const CHART_MANAGED_KEYS = ["FEN_HTTP_HOST", "FEN_HTTP_PORT", "FEN_NATS_USER", "FEN_NATS_TLS_CA", "FEN_NODE_NAME"] as const;

/** The config tables by chart section; the provisioning job reads the common keys. */
export const ChartConfigTables: Readonly<Record<"common" | "gateway" | "processing" | "ledger" | "provision", Record<string, KeySpec>>> = {
  common: CommonKeys, gateway: ConfigTables.gateway, processing: ConfigTables.processing, ledger: ConfigTables.ledger, provision: CommonKeys,
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function configSection(table: Record<string, KeySpec>, what: string, required: string[] = []): Json {
  const properties: Record<string, Json> = {};
  for (const spec of Object.values(table)) {
    if (spec.secret || (CHART_MANAGED_KEYS as readonly string[]).includes(spec.env)) continue;
    // No description: the keys are documented in nodes/config/CONFIG.md, and a doc edit should not make the chart stale.
    properties[spec.env] = valueSchemaOf(spec.schema);
  }
  return { type: "object", description: `${what} See nodes/config/CONFIG.md.`, additionalProperties: false, properties, ...(required.length ? { required } : {}) };
}

/**
 * What `helm lint` can check of one key's value, read off its zod schema:
 * a number's range (numbers) or decimal form (strings, which the node
 * parses), an enum's values, a string's pattern. What JSON Schema cannot
 * say (a number given as a string out of range) the node still refuses at
 * start with CONFIG_INVALID.
 */
export function valueSchemaOf(schema: z.ZodTypeAny): Json {
  let s = schema;
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional) s = s._def.innerType as z.ZodTypeAny;
  // A refinement of the number (FEN_BODY_REAP_INTERVAL_MS: 0 or at least a minute) is the node's to check; its range is the chart's.
  let out = s instanceof z.ZodPipeline ? s._def.out as z.ZodTypeAny : undefined;
  while (out instanceof z.ZodEffects && out._def.effect.type === "refinement") out = out._def.schema as z.ZodTypeAny;
  if (out instanceof z.ZodNumber) {
    const checks = out._def.checks;
    const integer = checks.some((c) => c.kind === "int");
    const bound = (kind: "min" | "max") => checks.find((c): c is Extract<typeof c, { kind: typeof kind }> => c.kind === kind)?.value;
    const [minimum, maximum] = [bound("min"), bound("max")];
    return {
      anyOf: [
        { type: integer ? "integer" : "number", ...(minimum !== undefined ? { minimum } : {}), ...(maximum !== undefined ? { maximum } : {}) },
        { type: "string", pattern: integer ? "^-?[0-9]+$" : "^-?([0-9]+([.][0-9]*)?|[.][0-9]+)$" },
      ],
    };
  }
  // A comma-separated list (FEN_NATS_URLS): a non-empty string.
  if (s instanceof z.ZodPipeline && s._def.out instanceof z.ZodArray) return { type: "string", minLength: 1 };
  if (s instanceof z.ZodEnum) return { enum: [...(s.options as string[])] };
  if (s instanceof z.ZodEffects && s._def.schema instanceof z.ZodEnum) {
    const options = [...((s._def.schema as z.ZodEnum<[string, ...string[]]>).options)];
    // The boolean keys: "true"/"false"/"1"/"0", or a YAML boolean.
    return options.includes("true") ? { anyOf: [{ type: "boolean" }, { enum: options }] } : { enum: options };
  }
  if (s instanceof z.ZodString) {
    const regex = s._def.checks.find((c): c is Extract<typeof c, { kind: "regex" }> => c.kind === "regex")?.regex;
    // A free-form string may be written unquoted in a values file (FEN_SMTP_USER: 12345); the chart renders it as text.
    return regex ? { type: "string", pattern: regex.source } : { type: ["string", "number"] };
  }
  return { type: ["string", "number", "boolean"] };
}

const str: Json = { type: "string" };
const bool: Json = { type: "boolean" };
const int = (minimum = 0): Json => ({ type: "integer", minimum });
const obj: Json = { type: "object" };
const arr: Json = { type: "array" };
const resources: Json = {
  type: "object", required: ["requests", "limits"],
  properties: { requests: { type: "object", required: ["cpu", "memory"] }, limits: { type: "object", required: ["cpu", "memory"] } },
};
const scheduling = { podAnnotations: obj, nodeSelector: obj, tolerations: arr, affinity: obj };
const closed = (properties: Record<string, Json>, required: string[] = []): Json =>
  ({ type: "object", additionalProperties: false, properties, ...(required.length ? { required } : {}) });
/** A PodDisruptionBudget: at most one of minAvailable and maxUnavailable (a count, 0 allowed, or a percentage); none: the role's default. */
const budget: Json = { anyOf: [{ type: "integer", minimum: 0 }, { type: "string", pattern: "^[0-9]+%$" }] };
const pdb: Json = { oneOf: [closed({}), closed({ minAvailable: budget }, ["minAvailable"]), closed({ maxUnavailable: budget }, ["maxUnavailable"])] };

/** values.schema.json. */
export function valuesSchema(): Json {
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    title: "fastemailnet chart values (generated by deploy/chart-gen.ts; do not edit)",
    type: "object",
    additionalProperties: false,
    properties: {
      nameOverride: str,
      fullnameOverride: str,
      image: closed({ repository: { type: "string", minLength: 1 }, tag: str, pullPolicy: { enum: ["Always", "IfNotPresent", "Never"] } }, ["repository"]),
      imagePullSecrets: arr,
      config: closed({
        // Without FEN_NATS_URLS every pod would look for NATS on 127.0.0.1 and crash-loop.
        common: configSection(ChartConfigTables.common, "Keys every node reads (CommonKeys).", ["FEN_NATS_URLS"]),
        gateway: configSection(ChartConfigTables.gateway, "Gateway keys (GatewayKeys)."),
        processing: configSection(ChartConfigTables.processing, "Processing node keys (ProcessingKeys)."),
        ledger: configSection(ChartConfigTables.ledger, "Ledger node keys (LedgerKeys)."),
        provision: configSection(ChartConfigTables.provision, "Provisioning job keys (CommonKeys)."),
      }),
      http: closed({ port: { type: "integer", minimum: 1, maximum: 65535 } }, ["port"]),
      metrics: closed({ podAnnotations: bool }),
      auth: closed({ enabled: bool, existingSecret: str }),
      tls: closed({ enabled: bool, caSecret: str, caKey: { type: "string", minLength: 1 } }),
      serviceAccount: closed({ create: bool, name: str, annotations: obj }),
      podSecurityContext: obj,
      securityContext: {
        type: "object",
        required: ["runAsNonRoot", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities"],
        properties: { runAsNonRoot: { const: true }, readOnlyRootFilesystem: { const: true }, allowPrivilegeEscalation: { const: false } },
      },
      gateway: closed({ replicas: int(1), resources, pdb, ...scheduling }, ["resources"]),
      processing: closed({
        replicas: int(1), resources, pdb, terminationGracePeriodSeconds: int(1),
        // Empty (no relay password), or both fields.
        smtpPasswordSecret: { anyOf: [closed({}), closed({ name: { type: "string", minLength: 1 }, key: { type: "string", minLength: 1 } }, ["name", "key"])] },
        ...scheduling,
        autoscaling: closed({
          hpa: closed({ enabled: bool, minReplicas: int(1), maxReplicas: int(1), targetCPUUtilizationPercentage: int(1) }),
          keda: closed({
            enabled: bool, natsMonitoringEndpoint: str, account: str, lagThreshold: str, activationLagThreshold: str,
            minReplicas: int(0), maxReplicas: int(1), pollingInterval: int(1), cooldownPeriod: int(0), useHttps: bool,
          }),
        }),
      }, ["resources"]),
      ledger: closed({
        enabled: bool, resources, ...scheduling,
        keysSecret: closed({ name: str, signingKeyKey: { type: "string", minLength: 1 }, commitmentKeyKey: { type: "string", minLength: 1 } }),
      }, ["resources"]),
      provision: closed({ enabled: bool, hook: { type: "string", pattern: "^(pre|post)-(install|upgrade)(,(pre|post)-(install|upgrade))*$" }, updateSpecs: bool, backoffLimit: int(0), activeDeadlineSeconds: int(1), resources }),
      networkPolicy: closed({ enabled: bool, metricsFrom: arr, natsTo: arr, natsPort: int(1), smtpTo: arr, smtpPorts: { type: "array", items: int(1) } }),
      // The official nats chart's values, passed through (its own schema applies when enabled).
      nats: { type: "object", properties: { enabled: bool } },
      global: obj,
    },
  };
}

/**
 * The value a secret key reaches a pod from (the chart renders it into the pod's env from a Secret), for
 * messages. A `together` rule with a secret key not listed here cannot be rendered (chartFiles throws).
 */
export const CHART_SECRET_SOURCES: Readonly<Record<string, string>> = {
  FEN_SMTP_PASSWORD: "processing.smtpPasswordSecret",
  FEN_NATS_PASSWORD: "auth.enabled",
  FEN_LEDGER_SIGNING_KEY: "ledger.keysSecret",
  FEN_LEDGER_COMMITMENT_KEY: "ledger.keysSecret",
};

/**
 * The rules between keys, by env name, and the chart sections (roles) they apply to: `rules` (high ≥ low) with
 * each key's default; `together` (both keys set, or neither) with the value each secret key comes from.
 */
export function configRules(): Json {
  const rules: Json[] = [];
  const together: Json[] = [];
  for (const rule of CrossKeyRules) {
    if (rule.together) {
      const roles = Object.entries(ConfigTables).filter(([, t]) => rule.keys.every((k) => k in t)).map(([role]) => role);
      const table = ConfigTables[roles[0] as keyof typeof ConfigTables] as Record<string, KeySpec> | undefined;
      if (!table || rule.keys.length !== 2) throw new Error(`rule on ${rule.keys.join(", ")}: together needs two keys of one table`);
      const specs = rule.keys.map((k) => table[k]!);
      const secretFrom: Record<string, Json> = {};
      for (const spec of specs.filter((k) => k.secret)) {
        const from = CHART_SECRET_SOURCES[spec.env];
        if (!from) throw new Error(`rule on ${rule.keys.join(", ")}: the chart's source of ${spec.env} is not in CHART_SECRET_SOURCES`);
        secretFrom[spec.env] = from;
      }
      together.push({ roles, field: rule.field, keys: specs.map((k) => k.env), secretFrom });
      continue;
    }
    if (!rule.atLeast) continue;
    const { high, low } = rule.atLeast;
    const roles = Object.entries(ConfigTables).filter(([, t]) => high in t && low in t).map(([role]) => role);
    const table = ConfigTables[roles[0] as keyof typeof ConfigTables] as Record<string, KeySpec> | undefined;
    if (!table) continue;
    const [h, l] = [table[high]!, table[low]!];
    rules.push({
      roles, field: rule.field, high: h.env, low: l.env,
      defaults: { [h.env]: h.schema.parse(undefined) as number, [l.env]: l.schema.parse(undefined) as number },
    });
  }
  return { rules, together };
}

/** Every generated file, by path relative to the chart. */
export function chartFiles(): Record<string, string> {
  return {
    "files/auth.conf": renderAuthorization(envUsers()),
    "values.schema.json": `${JSON.stringify(valuesSchema(), null, 2)}\n`,
    "files/config-rules.json": `${JSON.stringify(configRules(), null, 2)}\n`,
  };
}

/** Files whose committed content differs from the generated one. */
export async function staleChartFiles(dir = CHART_DIR): Promise<string[]> {
  const out: string[] = [];
  for (const [rel, text] of Object.entries(chartFiles())) {
    const have = await readFile(path.join(dir, rel), "utf8").catch(() => undefined);
    if (have !== text) out.push(rel);
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--check")) {
    const stale = await staleChartFiles();
    if (stale.length > 0) {
      process.stderr.write(`stale: ${stale.join(", ")}; run node --import tsx deploy/chart-gen.ts\n`);
      process.exitCode = 1;
    }
  } else {
    for (const [rel, text] of Object.entries(chartFiles())) await writeFile(path.join(CHART_DIR, rel), text);
  }
}
