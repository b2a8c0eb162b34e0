/**
 * A single-pass HTML reader for the classifier: visible text, link targets
 * and a few structural counts. No DOM is built; script, style and comments
 * are skipped, inline tags are removed without a separator so that
 * `V<b></b>iagra` reads as one word, block tags become spaces.
 *
 * @module
 */

/** What the classifier takes from an HTML body. */
export interface HtmlScan {
  /** Visible text with entities decoded. */
  readonly text: string;
  /** Raw `href` targets of `<a>`/`<area>` (in order, capped). */
  readonly hrefs: readonly string[];
  /** Raw `src` targets of `<img>` (capped). */
  readonly imgSrcs: readonly string[];
  /** Number of tags seen. */
  readonly tags: number;
  /** `<img>` tags. */
  readonly images: number;
  /** `<font>` tags. */
  readonly fonts: number;
  /** `<table>` tags. */
  readonly tables: number;
  /** `<form>` / `<input>` tags. */
  readonly forms: number;
  /** Inline styles or attributes that hide or shrink text. */
  readonly hidden: number;
}

const MAX_LINKS = 256;

const BLOCK = new Set([
  "br", "p", "div", "tr", "td", "th", "li", "ul", "ol", "table", "tbody", "h1", "h2", "h3", "h4", "h5", "h6",
  "hr", "blockquote", "pre", "title", "center", "dd", "dt", "dl", "option", "body", "html", "head", "form",
]);
const SKIP_CONTENT = new Set(["script", "style", "head", "xml", "noscript"]);
const HREF = /\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i;
const SRC = /\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i;
const HIDDEN = /display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[01](?:px|pt)|\bsize\s*=\s*["']?[01]\b/i;
const ALT = /\balt\s*=\s*(?:"([^"]*)"|'([^']*)')/i;

function attr(re: RegExp, tag: string): string | undefined {
  const m = re.exec(tag);
  return m ? (m[1] ?? m[2] ?? m[3]) : undefined;
}

function isNameChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 58 || c === 45;
}

/** Scans `html` in one pass. Never throws. */
export function scanHtml(html: string): HtmlScan {
  const chunks: string[] = [];
  const hrefs: string[] = [];
  const imgSrcs: string[] = [];
  let tags = 0, images = 0, fonts = 0, tables = 0, forms = 0, hidden = 0;
  let pos = 0;
  const n = html.length;
  const find = memoFinder(html);
  /** Where the title taken last starts. */
  let titleAt = -1;
  while (pos < n) {
    const lt = html.indexOf("<", pos);
    if (lt < 0) {
      chunks.push(html.slice(pos));
      break;
    }
    if (lt > pos) chunks.push(html.slice(pos, lt));
    if (html.startsWith("<!--", lt)) {
      const close = html.indexOf("-->", lt + 4);
      pos = close < 0 ? n : close + 3;
      continue;
    }
    let i = lt + 1;
    const closing = html.charCodeAt(i) === 47;
    if (closing) i++;
    const nameStart = i;
    while (i < n && isNameChar(html.charCodeAt(i))) i++;
    if (i === nameStart) {
      // "<" not starting a tag ("a < b", "<!DOCTYPE", "<?xml"): keep a literal "<" unless it is a declaration.
      const c = html.charCodeAt(nameStart);
      if (c === 33 || c === 63) {
        const gt = html.indexOf(">", lt);
        pos = gt < 0 ? n : gt + 1;
      } else {
        chunks.push("<");
        pos = lt + 1;
      }
      continue;
    }
    const gt = html.indexOf(">", i);
    const tagEnd = gt < 0 ? n : gt;
    const name = html.slice(nameStart, i).toLowerCase();
    pos = gt < 0 ? n : gt + 1;
    tags++;
    if (closing) {
      if (BLOCK.has(name)) chunks.push(" ");
      continue;
    }
    const rest = tagEnd > i + 1 ? html.slice(i, tagEnd) : "";
    if (SKIP_CONTENT.has(name)) {
      if (name === "head") {
        // Keep <title> (once: a text of many <head> tags and one title would repeat it for each); skip the rest
        // of <head>. Without "</head" the scan goes on after the tag, so the searches are memoised (`find`): each
        // <head> of such a text searched to its end again, in time quadratic in its size (a 262 KB mail of
        // "<head>" lines took 66 s).
        const end = find("</head", pos);
        const t1 = find("<title", pos);
        if (t1 >= 0 && t1 !== titleAt && (end < 0 || t1 < end)) {
          titleAt = t1;
          const t2 = html.indexOf(">", t1);
          const t3 = find("</title", t2 + 1);
          if (t2 >= 0 && t3 > t2) chunks.push(" ", html.slice(t2 + 1, t3), " ");
        }
        if (end >= 0) pos = end;
        continue;
      }
      const end = indexOfCi(html, "</" + name, pos);
      pos = end < 0 ? n : end;
      continue;
    }
    if (BLOCK.has(name)) chunks.push(" ");
    if (rest) {
      if (HIDDEN.test(rest)) hidden++;
      if (name === "a" || name === "area") {
        const href = attr(HREF, rest);
        if (href !== undefined && hrefs.length < MAX_LINKS) hrefs.push(href);
      } else if (name === "img") {
        const src = attr(SRC, rest);
        if (src !== undefined && imgSrcs.length < MAX_LINKS) imgSrcs.push(src);
        const alt = attr(ALT, rest);
        if (alt) chunks.push(" ", alt, " ");
      }
    }
    switch (name) {
      case "img": images++; break;
      case "font": fonts++; break;
      case "table": tables++; break;
      case "form": case "input": case "select": case "textarea": forms++; break;
    }
  }
  let text = chunks.join("");
  if (text.includes("&")) text = decodeEntities(text);
  return { text, hrefs, imgSrcs, tags, images, fonts, tables, forms, hidden };
}

/**
 * {@link indexOfCi} over one text, remembering each needle's last answer: the first hit at or after `from` is
 * the same for every `from` between the last search's start and its hit (and none is found past a miss).
 */
function memoFinder(s: string): (needle: string, from: number) => number {
  const last = new Map<string, { from: number; at: number }>();
  return (needle, from) => {
    const m = last.get(needle);
    if (m && from >= m.from && (m.at < 0 || from <= m.at)) return m.at;
    const at = indexOfCi(s, needle, from);
    last.set(needle, { from, at });
    return at;
  };
}

function indexOfCi(s: string, needle: string, from: number): number {
  // needle is lower-case ASCII; try the two common spellings before a scan.
  const a = s.indexOf(needle, from);
  const upper = needle.toUpperCase();
  const b = s.indexOf(upper, from);
  let best = a < 0 ? b : b < 0 ? a : Math.min(a, b);
  // Mixed case ("</Script"): fall back to a case-insensitive scan only up to the best hit.
  const limit = best < 0 ? s.length : best;
  const first = needle.charCodeAt(0);
  for (let i = from; i < limit; i++) {
    if (s.charCodeAt(i) === first && s.slice(i, i + needle.length).toLowerCase() === needle) {
      best = i;
      break;
    }
  }
  return best;
}

const NAMED: Record<string, string> = {
  nbsp: " ", amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", copy: "©", reg: "®", trade: "™",
  euro: "€", pound: "£", yen: "¥", cent: "¢", middot: "·", bull: "•", hellip: "…", mdash: "—", ndash: "–",
  laquo: "«", raquo: "»", ldquo: "“", rdquo: "”", lsquo: "‘", rsquo: "’", shy: "", times: "×",
  eacute: "é", egrave: "è", agrave: "à", aacute: "á", ccedil: "ç", uuml: "ü", ouml: "ö", auml: "ä",
  szlig: "ß", ntilde: "ñ", iexcl: "¡", iquest: "¿", deg: "°", para: "¶", sect: "§",
};
const ENTITY = /&(#[xX][0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z][a-zA-Z0-9]{1,7});?/g;

/** Decodes the common named and all numeric character references. */
export function decodeEntities(s: string): string {
  return s.replace(ENTITY, (m, e: string) => {
    if (e.charCodeAt(0) === 35) {
      const hex = e.charCodeAt(1) === 120 || e.charCodeAt(1) === 88;
      const cp = parseInt(e.slice(hex ? 2 : 1), hex ? 16 : 10);
      return cp > 0 && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff) ? String.fromCodePoint(cp) : " ";
    }
    const v = NAMED[e] ?? NAMED[e.toLowerCase()];
    return v ?? m;
  });
}
