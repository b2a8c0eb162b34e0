import type { z } from "zod";
import { FenError } from "../../protocol/index.js";
import type { FieldError } from "../../protocol/index.js";
import { CrossKeyRules } from "./schema.js";
import type { KeySpec } from "./schema.js";

/** The typed, frozen configuration described by a key table. */
export type ConfigOf<T extends Record<string, KeySpec>> = { readonly [K in keyof T]: z.output<T[K]["schema"]> };

/**
 * Validates `env` against a key table once, at start-up, and freezes the
 * result. Every bad key is reported at once (CONFIG_INVALID) with its env
 * name; then, if every key is valid, the rules between keys
 * (`CrossKeyRules`) that apply to the table. Only a node's main.ts passes
 * `process.env`; tests pass their own.
 */
export function loadConfig<T extends Record<string, KeySpec>>(table: T, env: Readonly<Record<string, string | undefined>>): ConfigOf<T> {
  const out: Record<string, unknown> = {};
  const fields: FieldError[] = [];
  for (const [key, spec] of Object.entries(table)) {
    const raw = env[spec.env];
    const r = spec.schema.safeParse(raw === "" ? undefined : raw);
    if (r.success) out[key] = r.data;
    else fields.push({ field: spec.env, code: "CONFIG_INVALID", message: r.error.issues.map((i) => i.message).join(", ") });
  }
  if (fields.length === 0) {
    for (const rule of CrossKeyRules) {
      if (!rule.keys.every((k) => k in table)) continue;
      const message = rule.check(out);
      if (message !== undefined) fields.push({ field: rule.field, code: "CONFIG_INVALID", message });
    }
  }
  if (fields.length > 0) {
    throw new FenError("CONFIG_INVALID", `invalid configuration: ${fields.map((f) => `${f.field}: ${f.message}`).join("; ")}`, { fields });
  }
  return Object.freeze(out) as ConfigOf<T>;
}
