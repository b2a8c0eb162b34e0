/**
 * Strict decoding helpers (base64, UTF-8, control characters) for attacker-controlled input.
 * Internal to `ledger/`; not re-exported.
 *
 * @module
 */

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Standard padded base64 of `bytes`. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/**
 * Decodes canonical padded base64, or returns `undefined`. Rejects whitespace,
 * the URL alphabet, missing padding and non-zero trailing bits, so every byte
 * string has exactly one accepted encoding.
 */
export function fromBase64Strict(s: string): Uint8Array | undefined {
  if (typeof s !== "string" || !BASE64_RE.test(s)) return undefined;
  const buf = Buffer.from(s, "base64");
  if (buf.toString("base64") !== s) return undefined;
  return new Uint8Array(buf);
}

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Decodes UTF-8 strictly (no replacement characters), or returns `undefined`. */
export function utf8DecodeStrict(bytes: Uint8Array): string | undefined {
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** True if `s` has no lone UTF-16 surrogates, i.e. encodes to UTF-8 losslessly. */
export function isWellFormedString(s: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

/**
 * True if `s` contains a C0 control character (U+0000..U+001F), other than
 * newline when `allowNewline` is set. DEL (U+007F) is not a C0 control.
 */
export function hasControlChars(s: string, allowNewline = false): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 && !(allowNewline && c === 0x0a)) return true;
  }
  return false;
}
