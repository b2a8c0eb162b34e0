/**
 * Address and header checks applied where untrusted input enters (the
 * gateway's decode). After decoding, code trusts these fields.
 */

// RFC 5321 dot-atom local part and an LDH domain of at least two labels.
// Quoted local parts and address literals are deliberately not accepted:
// they are rare in submission and a common injection vector.
const LOCAL_RE = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
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
