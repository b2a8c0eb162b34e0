/**
 * Link targets and their hosts, read leniently from HTML attributes and from
 * plain text. Pure; never throws.
 *
 * @module
 */

/** One link reduced to what the features use. */
export interface LinkInfo {
  /** Lower-cased host without port or user info (`""` when none, e.g. relative links). */
  readonly host: string;
  /** `http`, `https`, `mailto`, `ftp`, or `""`. */
  readonly scheme: string;
  /** The host is an IPv4 literal or a bare number. */
  readonly ipHost: boolean;
  /** The authority carries user info (`http://bank.com@evil.example/`). */
  readonly userInfo: boolean;
  /** The authority names a port. */
  readonly port: boolean;
  /** The host or path uses %-escapes. */
  readonly escaped: boolean;
}

const TEXT_URL = /\b(?:(?:https?|ftp):\/\/|www\.)[^\s<>"'()[\]{}]+/gi;
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;
const NUMERIC = /^(?:0x[0-9a-f]+|\d+)$/;

/** URLs written in plain text (capped at `max`). */
export function textUrls(text: string, max: number): string[] {
  const out: string[] = [];
  if (!text.includes("http") && !text.includes("www.") && !text.includes("HTTP") && !text.includes("WWW.")) return out;
  TEXT_URL.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = TEXT_URL.exec(text)) !== null && out.length < max) out.push(m[0]);
  return out;
}

/** Parses a link target leniently. */
export function parseLink(raw: string): LinkInfo {
  let u = raw.trim();
  let scheme = "";
  const colon = u.indexOf(":");
  if (colon > 0 && colon < 10 && /^[a-z][a-z0-9+.-]*$/i.test(u.slice(0, colon))) {
    scheme = u.slice(0, colon).toLowerCase();
    u = u.slice(colon + 1);
  } else if (/^www\./i.test(u)) scheme = "http";
  if (scheme === "mailto") {
    const at = u.lastIndexOf("@");
    const host = at >= 0 ? u.slice(at + 1).split(/[?>\s]/)[0]!.toLowerCase() : "";
    return { host, scheme, ipHost: false, userInfo: false, port: false, escaped: u.includes("%") };
  }
  if (u.startsWith("//")) u = u.slice(2);
  else if (scheme !== "http" || !/^www\./i.test(u)) {
    if (scheme === "") return { host: "", scheme, ipHost: false, userInfo: false, port: false, escaped: u.includes("%") };
    u = u.replace(/^\/+/, "");
  }
  let end = u.length;
  for (const ch of ["/", "?", "#", "\\"]) {
    const k = u.indexOf(ch);
    if (k >= 0 && k < end) end = k;
  }
  let authority = u.slice(0, end);
  const at = authority.lastIndexOf("@");
  const userInfo = at >= 0;
  if (userInfo) authority = authority.slice(at + 1);
  let port = false;
  const pc = authority.lastIndexOf(":");
  if (pc >= 0 && !authority.startsWith("[")) {
    port = true;
    authority = authority.slice(0, pc);
  }
  let host = authority.toLowerCase().replace(/\.+$/, "");
  const escaped = u.includes("%");
  if (host.includes("%")) {
    try {
      host = decodeURIComponent(host);
    } catch {
      // keep the escaped form
    }
  }
  const ipHost = IPV4.test(host) || NUMERIC.test(host) || host.startsWith("[");
  return { host, scheme, ipHost, userInfo, port, escaped };
}

/** The last two labels of a host (`mail.example.com` → `example.com`); IPs and single labels as is. */
export function baseDomain(host: string): string {
  const last = host.lastIndexOf(".");
  if (last < 0) return host;
  const prev = host.lastIndexOf(".", last - 1);
  return prev < 0 ? host : host.slice(prev + 1);
}
