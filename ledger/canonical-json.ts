/**
 * Canonical JSON in the style of RFC 8785 (JCS) for the value subset the
 * ledger uses: object keys sorted by UTF-16 code units, no whitespace,
 * ECMAScript number and string serialization. Internal to `ledger/`.
 *
 * @module
 */
import { isWellFormedString } from "./encoding.js";

const MAX_DEPTH = 16;

/**
 * Serializes `value` canonically, or throws a plain `Error` naming the
 * offending path (callers convert it into their own {@link LedgerError}).
 * Accepts null, booleans, finite numbers, well-formed strings, arrays and
 * plain objects; rejects everything else.
 */
export function canonicalJson(value: unknown, path = "$", depth = 0): string {
  if (depth > MAX_DEPTH) throw new Error(`${path}: nested too deeply`);
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`${path}: number must be finite`);
    return JSON.stringify(value);
  }
  if (typeof value === "string") {
    if (!isWellFormedString(value)) throw new Error(`${path}: string has lone surrogates`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((v, i) => canonicalJson(v, `${path}[${i}]`, depth + 1)).join(",")}]`;
  }
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) throw new Error(`${path}: not a plain object`);
    const keys = Object.keys(value).sort();
    const parts = keys.map((k) => {
      if (!isWellFormedString(k)) throw new Error(`${path}: key has lone surrogates`);
      return `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k], `${path}.${k}`, depth + 1)}`;
    });
    return `{${parts.join(",")}}`;
  }
  throw new Error(`${path}: unsupported ${typeof value}`);
}
