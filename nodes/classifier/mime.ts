/**
 * A small, fast, defensive MIME reader: raw RFC 5322 bytes in, the parts the
 * classifier reads out ({@link MailView}). It decodes what the features need
 * (subject, text/plain and text/html bodies, attachment metadata) and nothing
 * else: attachment bodies are never decoded, transport headers never read.
 *
 * It exists because `mailparser` costs more than the whole rest of the
 * scoring path; `classifyRaw` (the processing node's path), `npm run train`
 * and `npm run eval` all use it, so the model is trained on the view it is
 * scored on. `viewFromParsedMail` maps a `mailparser` result onto the same
 * shape for callers that already hold one.
 *
 * @module
 */
import { TextDecoder } from "node:util";

/** Metadata of one attachment (its body is not decoded). */
export interface AttachmentInfo {
  /** Lower-cased MIME type, e.g. `application/pdf`. */
  readonly contentType: string;
  /** Decoded file name, or `""`. */
  readonly filename: string;
  /** Approximate decoded size in bytes. */
  readonly size: number;
}

/** What the classifier reads from a mail. Transport headers are not part of it. */
export interface MailView {
  /** Decoded Subject header (RFC 2047), or `""`. */
  readonly subject: string;
  /** The inline text/plain parts, decoded, joined with newlines. */
  readonly text: string;
  /** The inline text/html parts, decoded, joined with newlines. */
  readonly html: string;
  /** Attachments, in document order. */
  readonly attachments: readonly AttachmentInfo[];
  /** Number of text/plain parts read. */
  readonly textParts: number;
  /** Number of text/html parts read. */
  readonly htmlParts: number;
}

/** Bounds that keep hostile input cheap. */
export interface MimeLimits {
  /** Deepest multipart / message nesting followed. @default 8 */
  readonly maxDepth: number;
  /** Most MIME entities visited. @default 128 */
  readonly maxParts: number;
  /** Characters of text and of html kept (each). @default 262144 */
  readonly maxTextChars: number;
}

/** Default {@link MimeLimits}. */
export const DEFAULT_MIME_LIMITS: MimeLimits = Object.freeze({ maxDepth: 8, maxParts: 128, maxTextChars: 262_144 });

interface Headers {
  contentType: string;
  params: Map<string, string>;
  cte: string;
  disposition: string;
  dispParams: Map<string, string>;
  subject: string | undefined;
}

interface Ctx {
  readonly s: string;
  readonly limits: MimeLimits;
  parts: number;
  text: string[];
  textLen: number;
  html: string[];
  htmlLen: number;
  textParts: number;
  htmlParts: number;
  attachments: AttachmentInfo[];
}

const NON_ASCII = /[\x80-\xff]/;

/** Reads a raw RFC 5322 message into a {@link MailView}. Never throws on malformed input. */
export function parseMime(raw: Uint8Array, limits: MimeLimits = DEFAULT_MIME_LIMITS): MailView {
  const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const s = buf.toString("latin1");
  const ctx: Ctx = {
    s, limits, parts: 0, text: [], textLen: 0, html: [], htmlLen: 0,
    textParts: 0, htmlParts: 0, attachments: [],
  };
  const subject = entity(ctx, 0, s.length, 0, "text/plain");
  return {
    subject: subject === undefined ? "" : decodeHeaderValue(subject),
    text: ctx.text.join("\n"),
    html: ctx.html.join("\n"),
    attachments: ctx.attachments,
    textParts: ctx.textParts,
    htmlParts: ctx.htmlParts,
  };
}

/** Walks one entity in `[start, end)`; returns its raw Subject value. */
function entity(ctx: Ctx, start: number, end: number, depth: number, defaultType: string): string | undefined {
  if (++ctx.parts > ctx.limits.maxParts) return undefined;
  const s = ctx.s;
  const { headers, bodyStart } = readHeaders(s, start, end, defaultType);
  const type = headers.contentType;
  if (type.startsWith("multipart/")) {
    const boundary = headers.params.get("boundary");
    if (boundary && depth < ctx.limits.maxDepth) {
      const inner = type === "multipart/digest" ? "message/rfc822" : "text/plain";
      for (const [a, b] of splitMultipart(s, bodyStart, end, boundary)) entity(ctx, a, b, depth + 1, inner);
    }
    return headers.subject;
  }
  if (type === "message/rfc822" && headers.disposition !== "attachment") {
    if (depth < ctx.limits.maxDepth) entity(ctx, bodyStart, end, depth + 1, "text/plain");
    return headers.subject;
  }
  const attachment = headers.disposition === "attachment" || (type !== "text/plain" && type !== "text/html");
  if (attachment) {
    const filename = headers.dispParams.get("filename") ?? headers.params.get("name") ?? "";
    const encoded = end - bodyStart;
    ctx.attachments.push({
      contentType: type,
      filename: filename && decodeHeaderValue(filename),
      size: headers.cte === "base64" ? Math.floor((encoded * 3) / 4) : encoded,
    });
    return headers.subject;
  }
  const charset = (headers.params.get("charset") ?? "").trim().toLowerCase();
  let body = decodeBody(s, bodyStart, end, headers.cte, charset);
  if (type === "text/plain" && headers.params.get("format")?.toLowerCase() === "flowed") {
    body = unflow(body, headers.params.get("delsp")?.toLowerCase() === "yes");
  }
  const max = ctx.limits.maxTextChars;
  if (type === "text/html") {
    ctx.htmlParts++;
    if (ctx.htmlLen < max) {
      const kept = body.length > max - ctx.htmlLen ? body.slice(0, max - ctx.htmlLen) : body;
      ctx.html.push(kept);
      ctx.htmlLen += kept.length;
    }
  } else {
    ctx.textParts++;
    if (ctx.textLen < max) {
      const kept = body.length > max - ctx.textLen ? body.slice(0, max - ctx.textLen) : body;
      ctx.text.push(kept);
      ctx.textLen += kept.length;
    }
  }
  return headers.subject;
}

function readHeaders(s: string, start: number, end: number, defaultType: string): { headers: Headers; bodyStart: number } {
  const headers: Headers = {
    contentType: defaultType, params: new Map(), cte: "", disposition: "", dispParams: new Map(), subject: undefined,
  };
  let pos = start;
  let name = "";
  let value = "";
  const flush = (): void => {
    if (name) applyHeader(headers, name, value);
    name = "";
    value = "";
  };
  while (pos < end) {
    let nl = s.indexOf("\n", pos);
    if (nl < 0 || nl >= end) nl = end;
    const lineEnd = nl > pos && s.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
    if (lineEnd === pos) {
      pos = nl + 1;
      break;
    }
    const c = s.charCodeAt(pos);
    if (c === 32 || c === 9) {
      if (name) value += " " + s.slice(pos, lineEnd).trim();
    } else {
      flush();
      // The line's first colon, looked for within the line only: a search to the end of the text for every
      // line without one (body lines read as a part's headers) took time quadratic in the mail's size.
      let colon = pos;
      while (colon < lineEnd && s.charCodeAt(colon) !== 58) colon++;
      if (colon > pos && colon < lineEnd) {
        const first = c | 0x20;
        // Only the MIME headers and Subject are read; transport headers are never looked at.
        if (first === 99 || first === 115) {
          name = s.slice(pos, colon).trim().toLowerCase();
          if (name === "content-type" || name === "content-transfer-encoding" || name === "content-disposition" || name === "subject") {
            value = s.slice(colon + 1, lineEnd).trim();
          } else name = "";
        }
      }
    }
    pos = nl + 1;
  }
  flush();
  return { headers, bodyStart: Math.min(pos, end) };
}

function applyHeader(h: Headers, name: string, value: string): void {
  switch (name) {
    case "content-type": {
      const { main, params } = parseParams(value);
      if (main.includes("/")) h.contentType = main;
      h.params = params;
      break;
    }
    case "content-transfer-encoding":
      h.cte = value.trim().toLowerCase();
      break;
    case "content-disposition": {
      const { main, params } = parseParams(value);
      h.disposition = main;
      h.dispParams = params;
      break;
    }
    case "subject":
      if (h.subject === undefined) h.subject = value;
      break;
  }
}

/** Splits `type/sub; a=b; c="d"` (RFC 2045; RFC 2231 continuations joined, charset prefix dropped). */
export function parseParams(value: string): { main: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  let i = value.indexOf(";");
  const main = (i < 0 ? value : value.slice(0, i)).trim().toLowerCase();
  while (i >= 0 && i < value.length) {
    const eq = value.indexOf("=", i + 1);
    if (eq < 0) break;
    let key = value.slice(i + 1, eq).trim().toLowerCase();
    let j = eq + 1;
    while (j < value.length && (value.charCodeAt(j) === 32 || value.charCodeAt(j) === 9)) j++;
    let val: string;
    if (value.charCodeAt(j) === 34) {
      let k = j + 1;
      let out = "";
      while (k < value.length && value.charCodeAt(k) !== 34) {
        if (value.charCodeAt(k) === 92 && k + 1 < value.length) k++;
        out += value[k];
        k++;
      }
      val = out;
      i = value.indexOf(";", k);
    } else {
      const semi = value.indexOf(";", j);
      val = (semi < 0 ? value.slice(j) : value.slice(j, semi)).trim();
      i = semi;
    }
    const star = key.indexOf("*");
    if (star >= 0) {
      const extended = key.endsWith("*");
      key = key.slice(0, star);
      if (extended) {
        const q = val.indexOf("'");
        const q2 = q < 0 ? -1 : val.indexOf("'", q + 1);
        const charset = q > 0 ? val.slice(0, q) : "utf-8";
        const raw = q2 >= 0 ? val.slice(q2 + 1) : val;
        val = decodeBytes(Buffer.from(raw.replace(/%([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1"), charset);
      }
      params.set(key, (params.get(key) ?? "") + val);
    } else if (key && !params.has(key)) params.set(key, val);
  }
  return { main, params };
}

/** Body ranges of a multipart entity (preamble and epilogue dropped). */
function splitMultipart(s: string, start: number, end: number, boundary: string): Array<[number, number]> {
  const delim = "--" + boundary;
  const out: Array<[number, number]> = [];
  let partStart = -1;
  let pos = start;
  while (pos < end) {
    const at = s.indexOf(delim, pos);
    if (at < 0 || at >= end) break;
    if (at !== start && s.charCodeAt(at - 1) !== 10) {
      pos = at + delim.length;
      continue;
    }
    if (partStart >= 0) {
      let partEnd = at - 1;
      if (partEnd > partStart && s.charCodeAt(partEnd - 1) === 13) partEnd--;
      out.push([partStart, Math.max(partStart, partEnd)]);
    }
    const after = at + delim.length;
    if (s.charCodeAt(after) === 45 && s.charCodeAt(after + 1) === 45) return out;
    let nl = s.indexOf("\n", after);
    if (nl < 0 || nl >= end) nl = end - 1;
    partStart = nl + 1;
    pos = partStart;
  }
  if (partStart >= 0 && partStart < end) out.push([partStart, end]);
  return out;
}

function decodeBody(s: string, start: number, end: number, cte: string, charset: string): string {
  if (cte === "base64") return decodeBytes(Buffer.from(s.slice(start, end), "base64"), charset);
  if (cte === "quoted-printable") return decodeBytes(decodeQp(s, start, end), charset);
  const slice = s.slice(start, end);
  return NON_ASCII.test(slice) || isStateful(charset) ? decodeBytes(Buffer.from(slice, "latin1"), charset) : slice;
}

/** RFC 3676 format=flowed: joins soft-broken lines (trailing space), undoes space-stuffing. */
function unflow(text: string, delsp: boolean): string {
  const out: string[] = [];
  // The pieces of the paragraph being joined: one join per paragraph, as a
  // mail of one long flowed paragraph made string-by-string joining (and a
  // copy per line for delsp) take time quadratic in its size.
  let parts: string[] = [];
  let depth = -1;
  let open = false;
  for (const raw of text.split(/\r?\n/)) {
    let d = 0;
    while (raw.charCodeAt(d) === 62) d++;
    let content = raw.slice(d);
    if (content.charCodeAt(0) === 32) content = content.slice(1);
    if (!(open && d === depth)) {
      if (open) out.push(parts.join(""));
      parts = d ? [">".repeat(d) + " "] : [];
      depth = d;
    }
    open = content.endsWith(" ") && content !== "-- ";
    parts.push(open && delsp ? content.slice(0, -1) : content);
    if (!open) out.push(parts.join(""));
  }
  if (open) out.push(parts.join(""));
  return out.join("\n");
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  if (l >= 97 && l <= 102) return l - 87;
  return -1;
}

/** RFC 2045 §6.7 quoted-printable, lenient: malformed escapes are kept literally. */
function decodeQp(s: string, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c !== 61) {
      out[n++] = c;
      continue;
    }
    const a = i + 1 < end ? s.charCodeAt(i + 1) : -1;
    if (a === 10) {
      i += 1;
      continue;
    }
    if (a === 13 && i + 2 < end && s.charCodeAt(i + 2) === 10) {
      i += 2;
      continue;
    }
    const hi = a < 0 ? -1 : hexVal(a);
    const lo = i + 2 < end ? hexVal(s.charCodeAt(i + 2)) : -1;
    if (hi >= 0 && lo >= 0) {
      out[n++] = (hi << 4) | lo;
      i += 2;
    } else {
      // Soft break followed by trailing whitespace ("=  \n") is a soft break too.
      let j = i + 1;
      while (j < end && (s.charCodeAt(j) === 32 || s.charCodeAt(j) === 9)) j++;
      if (j < end && (s.charCodeAt(j) === 10 || s.charCodeAt(j) === 13)) {
        i = s.charCodeAt(j) === 13 && s.charCodeAt(j + 1) === 10 ? j + 1 : j;
        continue;
      }
      out[n++] = c;
    }
  }
  return out.subarray(0, n);
}

const decoders = new Map<string, TextDecoder | null>();
const ALIASES: Record<string, string> = { "ks_c_5601-1987": "euc-kr", "x-gbk": "gbk", utf8: "utf-8" };
const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true });
const UTF8_LENIENT = new TextDecoder("utf-8");

// Node's TextDecoder("windows-1252") decodes as ISO-8859-1 (0x80-0x9F become C1
// controls), so Windows-1252, which mail labelled Latin-1 or ASCII really is, is done here.
const CP1252_HIGH = "€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ";
const C1 = /[\x80-\x9f]/g;
const LATIN = new Set(["us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin1", "l1", "windows-1252", "cp1252", "x-user-defined", "iso_8859-1"]);

function decodeCp1252(bytes: Uint8Array): string {
  const s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  return s.replace(C1, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]!);
}

function decoderFor(charset: string): TextDecoder | null {
  let d = decoders.get(charset);
  if (d !== undefined) return d;
  try {
    d = new TextDecoder(ALIASES[charset] ?? charset);
    if (d.encoding === "windows-1252") d = null;
  } catch {
    d = null;
  }
  if (decoders.size < 256) decoders.set(charset, d);
  return d;
}

/** 7-bit charsets with escape sequences (ISO-2022-JP/KR/CN): ASCII bytes still need decoding. */
function isStateful(charset: string): boolean {
  return charset.includes("2022");
}

/** Decodes bytes in `charset`; unknown or missing charsets try UTF-8, then Windows-1252. */
export function decodeBytes(bytes: Uint8Array, charset: string): string {
  const label = charset.toLowerCase();
  if (!isStateful(label)) {
    let ascii = true;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i]! > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (ascii) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  }
  if (LATIN.has(label)) return decodeCp1252(bytes);
  const utf8 = label === "utf-8" || label === "utf8";
  const d = label && !utf8 ? decoderFor(label) : null;
  if (d) return d.decode(bytes);
  try {
    return UTF8_STRICT.decode(bytes);
  } catch {
    return utf8 ? UTF8_LENIENT.decode(bytes) : decodeCp1252(bytes);
  }
}

const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;
const BETWEEN_WORDS = /(\?=)\s+(=\?)/g;

/** Decodes an unfolded header value: RFC 2047 encoded words, raw 8-bit as UTF-8 (else Windows-1252). */
export function decodeHeaderValue(value: string): string {
  let v = value;
  if (NON_ASCII.test(v)) v = decodeBytes(Buffer.from(v, "latin1"), "");
  if (!v.includes("=?")) return v;
  return v.replace(BETWEEN_WORDS, "$1$2").replace(ENCODED_WORD, (_m, cs: string, enc: string, data: string) => {
    const charset = cs.split("*")[0]!.toLowerCase();
    let bytes: Buffer;
    if (enc === "b" || enc === "B") bytes = Buffer.from(data, "base64");
    else {
      const t = data.replace(/_/g, " ");
      bytes = decodeQp(t, 0, t.length);
    }
    return decodeBytes(bytes, charset);
  });
}
