/** Prints CONFIG.md from the key tables; `npm run docs:config` writes it to nodes/config/CONFIG.md. */
import { ConfigTables, CrossKeyRules } from "./index.js";
const seen = new Set<string>();
let out = `# Configuration

Every node reads its configuration from environment variables, validated once
at start-up (an invalid value stops the node with \`CONFIG_INVALID\` naming
every bad key). The Helm chart's ConfigMap uses exactly these names. Keys
marked *secret* belong in a Secret, never a ConfigMap.

`;
for (const [role, table] of Object.entries(ConfigTables)) {
  out += `## ${role}\n\n| variable | default | meaning |\n| --- | --- | --- |\n`;
  for (const k of Object.values(table)) {
    if (role !== "gateway" && seen.has(k.env) && k.env.startsWith("FEN_") && ["FEN_NATS_URLS","FEN_NATS_USER","FEN_NATS_PASSWORD","FEN_NATS_TLS_CA","FEN_NODE_NAME","FEN_LOG_LEVEL","FEN_HTTP_PORT","FEN_HTTP_HOST","FEN_REPLICAS"].includes(k.env)) continue;
    seen.add(k.env);
    const r = k.schema.safeParse(undefined);
    const def = r.success && r.data !== undefined ? "`" + (Array.isArray(r.data) ? r.data.join(",") : String(r.data)) + "`" : "—";
    out += `| \`${k.env}\` | ${def} | ${k.doc}${k.secret ? " *secret*" : ""} |\n`;
  }
  out += role === "gateway" ? "\nThe first nine keys (NATS, node name, log level, HTTP, replicas) are common to every role.\n\n" : "\n";
}
out += "## Rules between keys\n\nChecked at start-up once every key is valid on its own (`CONFIG_INVALID`, naming the first key):\n\n";
for (const rule of CrossKeyRules) out += `- ${rule.doc}\n`;
process.stdout.write(out);
