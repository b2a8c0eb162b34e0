import { domainToASCII } from "node:url";

/**
 * Address and header checks applied where untrusted input enters (the
 * gateway's decode). After decoding, code trusts these fields.
 */

// RFC 5321 dot-atom local part and an LDH domain of at least two labels.
// Quoted local parts and address literals are deliberately not accepted:
// they are rare in submission and a common injection vector.
const LOCAL_RE = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
/** True when `s` has a character beyond U+007F. */
const hasNonAscii = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return true;
  return false;
};
const LABEL_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** True for an RFC 5321 mailbox `local@domain` within the RFC's lengths. */
export function isMailbox(addr: string): boolean {
  if (addr.length > 254) return false;
  const at = addr.lastIndexOf("@");
  if (at <= 0 || at > 64) return false;
  const local = addr.slice(0, at);
  const domain = addr.slice(at + 1);
  if (!LOCAL_RE.test(local)) return false;
  const labels = domain.split(".");
  if (labels.length < 2) return false;
  return labels.every((l) => LABEL_RE.test(l)) && !/^[0-9]+$/.test(labels[labels.length - 1] ?? "");
}

/**
 * The mailbox with an internationalised domain (U-labels, `bücher.example`)
 * in its ASCII form (A-labels, `xn--bcher-kva.example`, IDNA/UTS #46), which
 * every relay understands; any other input is returned unchanged. A non-ASCII
 * local part stays as it is (and fails {@link isMailbox}): it would need
 * SMTPUTF8, which this system does not send.
 */
export function asciiDomainMailbox(addr: string): string {
  const at = addr.lastIndexOf("@");
  if (at <= 0) return addr;
  const domain = addr.slice(at + 1);
  if (!hasNonAscii(domain) || /[\r\n]/.test(domain)) return addr;
  const ascii = domainToASCII(domain);
  return ascii ? addr.slice(0, at + 1) + ascii : addr;
}

/** True when the local part (before the last `@`) has a non-ASCII character. */
export function hasNonAsciiLocalPart(addr: string): boolean {
  return hasNonAscii(addr.slice(0, Math.max(0, addr.lastIndexOf("@"))));
}

/** True when `s` contains a CR or LF (header injection). */
export function hasLineBreak(s: string): boolean {
  return /[\r\n]/.test(s);
}

/** RFC 5322 field name: printable ASCII except colon. */
export function isHeaderName(s: string): boolean {
  return /^[!-9;-~]{1,76}$/.test(s);
}

/** The domain of a mailbox, lower-cased. */
export function domainOf(addr: string): string {
  return addr.slice(addr.lastIndexOf("@") + 1).toLowerCase();
}
