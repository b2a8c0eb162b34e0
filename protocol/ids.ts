import { createHash } from "node:crypto";

/**
 * A mail id: 26 characters of lower-case RFC 4648 base32 (no padding), i.e.
 * 130 bits of SHA-256. It is a single valid NATS subject token and a valid
 * KV key, so it can be used in subjects and bucket keys as is.
 */
export type MailId = string & { readonly __brand: "MailId" };

const MAIL_ID_RE = /^[a-z2-7]{26}$/;
const B32 = "abcdefghijklmnopqrstuvwxyz234567";

function base32(bytes: Uint8Array, chars: number): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < chars) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= 0xff;
    if (out.length >= chars) break;
  }
  return out;
}

/** True when `s` has the shape of a mail id. */
export function isMailId(s: unknown): s is MailId {
  return typeof s === "string" && MAIL_ID_RE.test(s);
}

/**
 * Derives the mail id from an idempotency key. The same key always gives the
 * same id, which is what makes a resubmission a duplicate even after the
 * JetStream duplicate window has passed.
 */
export function mailIdFromIdempotencyKey(key: string): MailId {
  const h = createHash("sha256").update("fen/idem/v1\0").update(key, "utf8").digest();
  return base32(h, 26) as MailId;
}

/**
 * The mail id of a request without idempotency key: from the mail's
 * {@link contentSha256} and the number of the time window (of
 * `DUPLICATE_WINDOW_MS`) it was submitted in. Without a key, identical
 * mails are one mail only for a while (a client retrying), not forever (an
 * alert sent with the same text every day is sent every day). The gateway
 * also checks the previous window's id, so a retry just across a window
 * boundary is still a duplicate. Hashed in its own namespace: no caller's
 * key (not even "content:<hash>:<window>") gives one of these ids, so no
 * caller can take the id of another sender's keyless mail.
 */
export function mailIdFromContent(contentHash: string, window: number): MailId {
  const h = createHash("sha256").update("fen/content/v1\0").update(`${contentHash}:${window}`, "utf8").digest();
  return base32(h, 26) as MailId;
}

/**
 * SHA-256 (hex) of a submitted mail's canonical form. Stored with the mail
 * (work item, PendingProcessing event) so that a resubmission under the same
 * idempotency key can be told from a different mail reusing the key.
 */
export function contentSha256(canonicalBody: string): string {
  return createHash("sha256").update(canonicalBody, "utf8").digest("hex");
}

/**
 * The RFC 5322 Message-ID of a mail. Derived from the mail id so every retry
 * and every redelivery reuses it (receivers can de-duplicate on it).
 */
export function messageIdFor(mailId: MailId, domain: string): string {
  return `<${mailId}@${domain}>`;
}
