import type { z } from "zod";
import { FenError } from "./errors.js";
import { fieldErrors, rejectFields } from "./schemas.js";

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** A schema whose payloads carry `kind` and `v`. */
export interface Codec<T> {
  readonly kind: string;
  readonly version: number;
  encode(value: T): Uint8Array;
  /** Decodes and validates; throws FenError listing every bad field. */
  decode(data: Uint8Array): T;
  /** Validates an already-parsed value (e.g. from a KV entry's json()). */
  parse(value: unknown): T;
  /**
   * Whether `data`, which does not decode, looks written by a newer version
   * of this schema: a JSON object of this kind with a higher `v`, or one
   * that fails only for fields this version does not know. A node leaves
   * such an input for a node that can read it (a rolling upgrade) rather
   * than dropping it; anything else that does not decode is malformed.
   */
  fromNewerVersion(data: Uint8Array): boolean;
}

/**
 * Builds the one codec of a versioned schema. Decoding checks the version
 * first so an unknown version gets UNSUPPORTED_VERSION, not a list of
 * field errors. `kinds`: the payload kinds the schema takes, when they are
 * not just `kind` (a union of requests); a `v` that is not a number is a
 * malformed field, not a version.
 */
export function codec<S extends z.ZodTypeAny>(kind: string, version: number, schema: S, kinds: readonly string[] = [kind]): Codec<z.output<S>> {
  const parse = (value: unknown): z.output<S> => {
    const v = value !== null && typeof value === "object" ? (value as { v?: unknown }).v : undefined;
    if (typeof v === "number" && v !== version && kinds.includes((value as { kind?: unknown }).kind as string)) {
      const message = `${(value as { kind: string }).kind} v${v} is not supported (speaks v${version})`;
      throw new FenError("UNSUPPORTED_VERSION", message, { fields: [{ field: "v", code: "UNSUPPORTED_VERSION", message }] });
    }
    const r = schema.safeParse(value);
    if (!r.success) rejectFields(fieldErrors(r.error), kind);
    return r.data;
  };
  return {
    kind,
    version,
    encode: (value) => enc.encode(JSON.stringify(value)),
    decode: (data) => {
      let value: unknown;
      try {
        value = JSON.parse(dec.decode(data));
      } catch (err) {
        throw new FenError("BAD_REQUEST", `${kind}: payload is not UTF-8 JSON`, { cause: err });
      }
      return parse(value);
    },
    parse,
    fromNewerVersion: (data) => {
      let value: unknown;
      try {
        value = JSON.parse(dec.decode(data));
      } catch {
        return false;
      }
      if (value === null || typeof value !== "object" || !kinds.includes((value as { kind?: unknown }).kind as string)) return false;
      const v = (value as { v?: unknown }).v;
      if (typeof v === "number") return v > version || (v === version && onlyUnknownFields(schema, value));
      return false;
    },
  };
}

/** Whether `value` fails `schema` only because of fields it does not know (a strict object's unrecognized keys). */
function onlyUnknownFields(schema: z.ZodTypeAny, value: unknown): boolean {
  const r = schema.safeParse(value);
  return !r.success && r.error.issues.every((i) => i.code === "unrecognized_keys");
}

