/**
 * The feature hasher: a {@link MailView} in, one sparse vector out.
 *
 * Layout of the model input (`inputDim = 2^hashBits + NUMERIC_FEATURES.length`):
 * - `[0, 2^hashBits)`: signed hashed tokens, each present feature ±`weight`:
 *   subject and body word uni- and bigrams (separate namespaces), link hosts,
 *   base domains and TLDs, URL oddities, attachment types and extensions, and
 *   bucketed structural facts, and the words and shapes of link paths and
 *   query names. The subject's and the body's word features are each
 *   weighted 1 + ln(tf) and L2-normalised (norms `subjectWeight` and 1) so
 *   long mails do not dominate and the subject keeps its say; the link-path
 *   tokens are L2-normalised to `urlPathWeight`.
 * - `[2^hashBits, inputDim)`: the numeric structural features of
 *   {@link NUMERIC_FEATURES}, each scaled to roughly `[0, 1]`.
 *
 * Only content is read: no Received chain, no list or filter headers, no
 * addresses, dates or message ids (they give this corpus' labels away and do
 * not exist or mean the same on outbound mail). For the same reason the
 * footers and `[list]` subject tags that list servers add in transit are
 * removed first (`listfooter.ts`).
 *
 * Pure and deterministic. {@link FeatureExtractor} reuses scratch buffers, so
 * one instance must not be shared by concurrent callers (it is synchronous).
 *
 * @module
 */
import { fmix32, FNV_PRIME, hashPair, hashStart, hashString } from "./hash.js";
import { scanHtml } from "./html.js";
import type { HtmlScan } from "./html.js";
import { baseDomain, parseLink, textUrls } from "./links.js";
import { listFooterStart, stripSubjectTag } from "./listfooter.js";
import type { MailView } from "./mime.js";

/** Version of the extraction code; a model trained with another version is refused. */
export const FEATURE_VERSION = 1;

/** The feature configuration stored with a model. */
export interface FeatureConfig {
  /** Must equal {@link FEATURE_VERSION}. */
  readonly version: number;
  /** log2 of the number of hash buckets. @default 18 */
  readonly hashBits: number;
  /** Namespace salt mixed into every hash. @default 0 */
  readonly salt: number;
  /** Word tokens read from subject + body at most. @default 4000 */
  readonly maxTokens: number;
  /** Weight of each link / attachment / structure token. @default 0.35 */
  readonly structWeight: number;
  /** L2 norm of the subject's word features (the body's have norm 1). @default 1 */
  readonly subjectWeight: number;
  /** L2 norm of the link path / query tokens (own namespace); absent or 0: none (models before it). @default 0.5 */
  readonly urlPathWeight?: number;
  /** Word weighting before normalisation: `"log"` = 1 + ln(tf); absent or `"binary"`: presence (models before it). @default "log" */
  readonly tf?: "binary" | "log";
}

/** Default {@link FeatureConfig}. */
export const DEFAULT_FEATURE_CONFIG: FeatureConfig = Object.freeze({
  version: FEATURE_VERSION,
  hashBits: 18,
  salt: 0,
  maxTokens: 4000,
  structWeight: 0.35,
  subjectWeight: 1,
  urlPathWeight: 0.5,
  tf: "log",
});

/** Names of the numeric features, in input order after the hash buckets. */
export const NUMERIC_FEATURES = Object.freeze([
  "bias",
  "has_html",
  "html_only",
  "html_share",
  "links_log",
  "hosts_log",
  "ip_links",
  "caps_ratio",
  "subject_caps_ratio",
  "attachments_log",
  "images_log",
  "length_log",
  "exclaim_density",
  "dollar_density",
  "non_ascii_ratio",
  "hidden_html",
] as const);

/** One mail's features: parallel arrays of input indices (ascending not required) and values. */
export interface SparseFeatures {
  readonly indices: Int32Array;
  readonly values: Float32Array;
}

/** Total model input width for `config`. */
export function inputDim(config: FeatureConfig): number {
  return 2 ** config.hashBits + NUMERIC_FEATURES.length;
}

const NS_SUBJECT = 0x51;
const NS_BODY = 0xb0;
const NS_LINK = 0x71;
const NS_STRUCT = 0x57;
const NS_URL_PATH = 0x9c;

/** 1 + ln(tf) for small term counts. */
const LOG_TF = Float64Array.from({ length: 256 }, (_, c) => 1 + Math.log(c));

// Lower-casing for Latin-1 supplement and Latin Extended-A/B.
const LOWER = new Uint16Array(0x250);
for (let c = 0; c < 0x250; c++) {
  const l = String.fromCharCode(c).toLowerCase();
  LOWER[c] = l.length === 1 ? l.charCodeAt(0) : c;
}

interface TextStats {
  letters: number;
  upper: number;
  tokens: number;
  exclaim: number;
  dollar: number;
  nonAscii: number;
}

const H_EXCLAIM = hashString("!", 0);
const H_EXCLAIM2 = hashString("!!", 0);
const H_DOLLAR = hashString("$", 0);
const H_PERCENT = hashString("%", 0);
const H_EURO = hashString("€", 0);
const H_POUND = hashString("£", 0);
const H_LONG = hashString("#long", 0);
const H_MIXED = hashString("#mixed", 0);
const H_DIGITS = [1, 2, 3, 4, 5, 6, 7].map((n) => hashString("#d" + n, 0));

function bucket(v: number, edges: readonly number[]): number {
  let i = 0;
  while (i < edges.length && v >= edges[i]!) i++;
  return i;
}

/** Reusable, synchronous feature extractor for one {@link FeatureConfig}. */
export class FeatureExtractor {
  /** The configuration in use. */
  readonly config: FeatureConfig;
  /** Model input width. */
  readonly dim: number;
  private readonly mask: number;
  private readonly numericBase: number;
  /** Generation stamp per bucket, for presence de-duplication (Uint8: 256 KiB stays in cache). */
  private readonly mark: Uint8Array;
  private gen = 0;

  private idx: Int32Array;
  private val: Float32Array;
  private n = 0;
  private wordStart = 0;
  private prev = 0;
  private tokenBudget = 0;
  /** Namespace of the text being tokenised (see words / endToken). */
  private ns = 0;
  /** With `tf: "log"`: occurrences of each emitted feature (parallel to `idx`), and each bucket's position in `idx`. */
  private cnt: Int32Array;
  private readonly pos: Int32Array | undefined;

  constructor(config: FeatureConfig = DEFAULT_FEATURE_CONFIG) {
    this.config = config;
    this.dim = inputDim(config);
    this.mask = 2 ** config.hashBits - 1;
    this.numericBase = 2 ** config.hashBits;
    this.mark = new Uint8Array(2 ** config.hashBits);

    this.idx = new Int32Array(4096);
    this.val = new Float32Array(4096);
    this.cnt = new Int32Array(4096);
    this.pos = config.tf === "log" ? new Int32Array(2 ** config.hashBits) : undefined;
  }

  /** Extracts the features of one mail (a copy the caller owns). */
  extract(view: MailView): SparseFeatures {
    const f = this.extractTransient(view);
    return { indices: f.indices.slice(), values: f.values.slice() };
  }

  /**
   * Extracts the features of one mail into the extractor's buffers: the
   * returned arrays are only valid until the next call (no allocation; the
   * batch path copies them straight into its batch).
   */
  extractTransient(view: MailView): SparseFeatures {
    if (++this.gen === 256) {
      this.mark.fill(0);
      this.gen = 1;
    }
    this.n = 0;
    this.wordStart = 0;
    this.tokenBudget = this.config.maxTokens;
    const salt = this.config.salt;

    const html: HtmlScan | undefined = view.html ? scanHtml(view.html) : undefined;
    // A text without its list footer is tokenised as the prefix [0, textChars) or [0, htmlChars) of
    // the text, not as a slice cut from it: profiled in classifyRaw, the tokeniser's character reads
    // on such slices took several times longer (the same characters, the same features).
    const htmlChars = html ? listFooterStart(html.text) : 0;
    const textChars = listFooterStart(view.text);
    const subj = this.words(stripSubjectTag(view.subject), NS_SUBJECT ^ salt);
    this.normaliseWords(this.config.subjectWeight);
    this.wordStart = this.n;
    const textStats = this.words(view.text, NS_BODY ^ salt, textChars);
    const htmlStats = html ? this.words(html.text, NS_BODY ^ salt, htmlChars) : undefined;
    this.normaliseWords();

    const w = this.config.structWeight;
    const ns = NS_LINK ^ salt;
    const urls = html ? [...html.hrefs, ...html.imgSrcs] : [];
    for (const u of textUrls(view.text.slice(0, textChars), 64)) urls.push(u);
    const uw = this.config.urlPathWeight ?? 0;
    if (uw > 0) {
      this.wordStart = this.n;
      const emit = (t: string) => this.token(t, NS_URL_PATH ^ salt, 1);
      for (let i = 0; i < Math.min(64, urls.length); i++) urlPathTokens(urls[i]!, emit);
      this.normaliseWords(uw);
    }
    const hosts = new Set<string>();
    let ipLinks = 0;
    let httpLinks = 0;
    for (const raw of urls) {
      const link = parseLink(raw);
      if (link.scheme) this.token("scheme:" + link.scheme, ns, w);
      if (link.ipHost) {
        ipLinks++;
        this.token("ip-host", ns, w);
      }
      if (link.userInfo) this.token("userinfo", ns, w);
      if (link.port) this.token("port", ns, w);
      if (link.escaped) this.token("escaped", ns, w);
      if (link.scheme === "http" || link.scheme === "https") httpLinks++;
      if (link.host && !link.ipHost && !hosts.has(link.host) && hosts.size < 64) {
        hosts.add(link.host);
        const base = baseDomain(link.host);
        this.token("host:" + link.host, ns, w);
        if (base !== link.host) this.token("dom:" + base, ns, w);
        this.token("tld:" + base.slice(base.lastIndexOf(".") + 1), ns, w);
      }
    }
    // Major type only: parsers disagree on subtypes (mailparser guesses them from file names).
    for (const a of view.attachments) {
      const slash = a.contentType.indexOf("/");
      this.token("att:" + (slash > 0 ? a.contentType.slice(0, slash) : a.contentType), ns, w);
      const dot = a.filename.lastIndexOf(".");
      if (dot >= 0 && a.filename.length - dot <= 6) this.token("ext:" + a.filename.slice(dot + 1).toLowerCase(), ns, w);
    }

    const body: TextStats = sumStats(textStats, htmlStats);
    const htmlShare = htmlChars + textChars > 0 ? htmlChars / (htmlChars + textChars) : 0;
    const capsRatio = body.letters > 0 ? body.upper / body.letters : 0;
    const subjCaps = subj.letters > 0 ? subj.upper / subj.letters : 0;
    const words = Math.max(1, body.tokens);
    const sn = NS_STRUCT ^ salt;
    const kind = view.htmlParts > 0 ? (view.textParts > 0 ? "both" : "html-only") : view.textParts > 0 ? "text-only" : "no-body";
    this.token("kind:" + kind, sn, w);
    this.token("links:" + bucket(httpLinks, [1, 2, 4, 8, 16, 32]), sn, w);
    this.token("hosts:" + bucket(hosts.size, [1, 2, 3, 5, 9]), sn, w);
    this.token("caps:" + bucket(capsRatio, [0.05, 0.1, 0.2, 0.35, 0.5]), sn, w);
    this.token("scaps:" + bucket(subjCaps, [0.2, 0.5, 0.8]) + ":" + (subj.letters > 8 ? 1 : 0), sn, w);
    this.token("len:" + bucket(body.tokens, [10, 30, 100, 300, 1000, 3000]), sn, w);
    this.token("att:" + bucket(view.attachments.length, [1, 2, 4]), sn, w);
    this.token("subj:" + bucket(subj.tokens, [1, 3, 6, 10]), sn, w);
    if (html) {
      this.token("img:" + bucket(html.images, [1, 2, 4, 8, 16]), sn, w);
      this.token("fonts:" + bucket(html.fonts, [1, 3, 10, 30]), sn, w);
      this.token("tables:" + bucket(html.tables, [1, 3, 10]), sn, w);
      if (html.forms > 0) this.token("forms", sn, w);
      if (html.hidden > 0) this.token("hidden", sn, w);
      this.token("tags-per-word:" + bucket(html.tags / words, [0.1, 0.3, 1, 3]), sn, w);
    }
    this.token("exclaim:" + bucket(body.exclaim / words, [0.005, 0.02, 0.05]), sn, w);
    this.token("nonascii:" + bucket(body.nonAscii / Math.max(1, body.letters), [0.01, 0.1, 0.5]), sn, w);

    const numeric = [
      1,
      html ? 1 : 0,
      view.htmlParts > 0 && view.textParts === 0 ? 1 : 0,
      htmlShare,
      Math.min(1, Math.log1p(httpLinks) / 5),
      Math.min(1, Math.log1p(hosts.size) / 4),
      ipLinks > 0 ? 1 : 0,
      capsRatio,
      subjCaps,
      Math.min(1, Math.log1p(view.attachments.length) / 3),
      html ? Math.min(1, Math.log1p(html.images) / 4) : 0,
      Math.min(1, Math.log1p(body.tokens) / 9),
      Math.min(1, (body.exclaim / words) * 20),
      Math.min(1, (body.dollar / words) * 20),
      body.nonAscii / Math.max(1, body.letters + body.nonAscii),
      html && html.hidden > 0 ? 1 : 0,
    ];
    for (let i = 0; i < numeric.length; i++) {
      const v = numeric[i]!;
      if (v !== 0) this.push(this.numericBase + i, v);
    }
    return { indices: this.idx.subarray(0, this.n), values: this.val.subarray(0, this.n) };
  }

  private push(index: number, value: number): void {
    if (this.n === this.idx.length) {
      const idx = new Int32Array(this.n * 2);
      idx.set(this.idx);
      this.idx = idx;
      const val = new Float32Array(this.n * 2);
      val.set(this.val);
      this.val = val;
      const cnt = new Int32Array(this.n * 2);
      cnt.set(this.cnt);
      this.cnt = cnt;
    }
    this.idx[this.n] = index;
    this.val[this.n] = value;
    this.n++;
  }

  /** Adds hashed feature `h` (presence, signed). */
  private add(h: number, weight: number): void {
    const i = h & this.mask;
    if (this.mark[i] === this.gen) {
      // Counted only within the block being normalised (a collision with an earlier block is dropped, as before).
      if (this.pos) {
        const k = this.pos[i]!;
        if (k >= this.wordStart) this.cnt[k]!++;
      }
      return;
    }
    this.mark[i] = this.gen;
    if (this.pos) this.pos[i] = this.n;
    this.push(i, h & 0x80000000 ? -weight : weight);
    this.cnt[this.n - 1] = 1;
  }

  private token(s: string, ns: number, weight: number): void {
    this.add(hashString(s, ns), weight);
  }

  /** Adds a word's unigram and its bigram with the previous word. */
  private emitWord(h: number): void {
    this.add(h, 1);
    if (this.prev !== 0) this.add(hashPair(this.prev, h), 1);
    this.prev = h;
  }

  /** Scales the features since `wordStart` (±1 each, or ±(1 + ln tf) with `tf: "log"`) to L2 norm `weight`. */
  private normaliseWords(weight = 1): void {
    const count = this.n - this.wordStart;
    if (count === 0) return;
    if (this.pos !== undefined) {
      // Hot loop: arrays in locals, 1 + ln(tf) from a table (most counts are small), the sign by comparison
      // (values are never 0); the same numbers as (1 + Math.log(tf)) * Math.sign(value).
      const val = this.val;
      const cnt = this.cnt;
      let sum = 0;
      for (let i = this.wordStart; i < this.n; i++) {
        const c = cnt[i]!;
        const t = c < LOG_TF.length ? LOG_TF[c]! : 1 + Math.log(c);
        const v = val[i]! > 0 ? t : -t;
        val[i] = v;
        sum += v * v;
      }
      const scale = weight / Math.sqrt(sum);
      for (let i = this.wordStart; i < this.n; i++) val[i]! *= scale;
      return;
    }
    const scale = weight / Math.sqrt(count);
    for (let i = this.wordStart; i < this.n; i++) this.val[i]! *= scale;
  }

  /** Tokenises `text[0, end)` into hashed uni- and bigrams in namespace `ns`; returns character statistics. */
  private words(text: string, ns: number, end: number = text.length): TextStats {
    // Hot loop: token state and counters live in locals, not fields.
    this.prev = 0;
    this.ns = ns;
    const start = hashStart(ns);
    let letters = 0, upper = 0, tokens = 0, exclaim = 0, dollar = 0, nonAscii = 0;
    let h = start, len = 0, digits = 0;
    const n = end;
    for (let i = 0; i < n && this.tokenBudget > 0; i++) {
      let c = text.charCodeAt(i);
      if (c < 128) {
        if (c >= 97 && c <= 122) letters++;
        else if (c >= 65 && c <= 90) {
          letters++;
          upper++;
          c |= 32;
        } else if (c >= 48 && c <= 57) digits++;
        else if (c === 39 && len > 0) continue;
        else {
          if (len > 0) {
            tokens += this.endToken(h, len, digits);
            h = start;
            len = 0;
            digits = 0;
          }
          if (c === 33) {
            exclaim++;
            let run = 1;
            while (i + 1 < n && text.charCodeAt(i + 1) === 33) {
              i++;
              run++;
            }
            this.emitWord(H_EXCLAIM ^ ns);
            if (run > 1) this.add(H_EXCLAIM2 ^ ns, 1);
          } else if (c === 36) {
            dollar++;
            this.emitWord(H_DOLLAR ^ ns);
          } else if (c === 37) this.emitWord(H_PERCENT ^ ns);
          continue;
        }
        h = Math.imul(h ^ c, FNV_PRIME);
        len++;
        continue;
      }
      nonAscii++;
      const separator = c === 0xa0 || c === 0xd7 || c === 0xf7 || (c >= 0x2000 && c <= 0x206f);
      const money = c === 0x20ac || c === 0xa3;
      if (separator || money || c >= 0x2e80) {
        if (len > 0) {
          tokens += this.endToken(h, len, digits);
          h = start;
          len = 0;
          digits = 0;
        }
        if (separator) continue;
        if (money) {
          dollar++;
          this.emitWord((c === 0xa3 ? H_POUND : H_EURO) ^ ns);
          continue;
        }
        // CJK, kana, hangul, full-width forms: no spaces between words, so each character is a token.
        this.emitWord(fmix32(Math.imul(start ^ c, FNV_PRIME)));
        tokens++;
        this.tokenBudget--;
        continue;
      }
      if (c < 0x250) c = LOWER[c]!;
      else if (c >= 0x410 && c <= 0x42f) c += 32;
      letters++;
      h = Math.imul(h ^ c, FNV_PRIME);
      len++;
    }
    if (len > 0 && this.tokenBudget > 0) tokens += this.endToken(h, len, digits);
    return { letters, upper, tokens, exclaim, dollar, nonAscii };
  }

  /**
   * Emits a finished token of `len` characters (`digits` of them digits,
   * running hash `h`): digit runs and long or mixed tokens by shape, so ids,
   * dates and hashes generalise; single letters dropped. Returns 1 if a word
   * was emitted.
   */
  private endToken(h: number, len: number, digits: number): number {
    let t: number;
    if (len > 24) t = H_LONG ^ this.ns;
    else if (digits === len) t = H_DIGITS[Math.min(len, 7) - 1]! ^ this.ns;
    else if (digits > 0 && len >= 8) t = H_MIXED ^ this.ns;
    else if (len === 1) return 0;
    else t = fmix32(h);
    this.emitWord(t);
    this.tokenBudget--;
    return 1;
  }
}

function sumStats(a: TextStats, b: TextStats | undefined): TextStats {
  if (!b) return a;
  return {
    letters: a.letters + b.letters, upper: a.upper + b.upper, tokens: a.tokens + b.tokens,
    exclaim: a.exclaim + b.exclaim, dollar: a.dollar + b.dollar, nonAscii: a.nonAscii + b.nonAscii,
  };
}

/** A path segment's or query name's word, or its shape (digit runs, ids, hex, long). */
function urlWordShape(w: string): string {
  const n = w.length;
  if (n === 0) return "";
  // One pass instead of four regular expressions (same answers): digits, and the other lower-case hex letters.
  let digits = 0;
  let hexLetters = 0;
  for (let i = 0; i < n; i++) {
    const c = w.charCodeAt(i);
    if (c >= 48 && c <= 57) digits++;
    else if (c >= 97 && c <= 102) hexLetters++;
  }
  if (digits === n) return "#d" + Math.min(n, 7);
  if (n > 24) return "#long";
  if (digits > 0 && n >= 8) return "#mixed";
  if (n >= 8 && digits + hexLetters === n) return "#hex";
  return w;
}

/**
 * Tokens of an http(s) link's path and query, not its host: depth, file
 * extensions, the words of each path segment (ids by shape), the number of
 * query parameters, their names, and whether a value carries an address.
 */
function urlPathTokens(raw: string, emit: (token: string) => void): void {
  let u = raw.trim();
  const m = /^([a-z][a-z0-9+.-]*):/i.exec(u);
  const scheme = m ? m[1]!.toLowerCase() : /^www\./i.test(u) ? "http" : "";
  if (scheme !== "http" && scheme !== "https") return;
  if (m) u = u.slice(m[0].length);
  u = u.replace(/^\/+/, "");
  const slash = u.search(/[/?#]/);
  if (slash < 0) {
    emit("path:none");
    return;
  }
  let rest = u.slice(slash);
  const hashAt = rest.indexOf("#");
  if (hashAt >= 0) rest = rest.slice(0, hashAt);
  const q = rest.indexOf("?");
  const path = q >= 0 ? rest.slice(0, q) : rest;
  const query = q >= 0 ? rest.slice(q + 1) : "";
  const segs = path.split("/").filter((x) => x.length > 0);
  emit("depth:" + Math.min(segs.length, 5));
  for (const seg0 of segs.slice(0, 8)) {
    let seg = seg0.toLowerCase();
    if (seg.includes("%")) {
      try {
        seg = decodeURIComponent(seg);
      } catch {
        // keep the escaped form
      }
    }
    const dot = seg.lastIndexOf(".");
    if (dot > 0 && seg.length - dot <= 5) {
      emit("ext:" + seg.slice(dot + 1));
      seg = seg.slice(0, dot);
    }
    if (seg.startsWith("~")) emit("tilde");
    for (const w of seg.split(/[^a-z0-9]+/)) {
      const s = urlWordShape(w);
      if (s.length > 1) emit("seg:" + s);
    }
  }
  if (query) {
    const parts = query.split(/[&;]/).slice(0, 16);
    emit("nq:" + Math.min(parts.length, 5));
    for (const p of parts) {
      const eq = p.indexOf("=");
      const name = (eq >= 0 ? p.slice(0, eq) : p).toLowerCase();
      const value = eq >= 0 ? p.slice(eq + 1) : "";
      emit("q:" + urlWordShape(name));
      if (value.includes("@") || value.includes("%40")) emit("q:email-value");
      else if (value) emit("qv:" + urlWordShape(value.toLowerCase()).slice(0, 1 + (/^#/.test(urlWordShape(value)) ? 8 : 0)));
    }
  }
}
