import { FenError } from "../../protocol/index.js";

/**
 * Structural checks of a raw RFC 5322/MIME message, done at submission so a
 * broken message is refused with INVALID_MIME before anything is stored.
 * The checks are what a relay would choke on or a reader would misparse:
 * header syntax, a From field, NUL bytes, lines of at most 998 octets,
 * once-only fields (Message-ID, From, Content-Type...) once, a Message-ID
 * without control characters and of at most 998 octets (the gateway keeps it), multipart
 * boundaries that are declared and present (recursively), and base64 parts
 * that decode.
 *
 * `field` is the request field a refusal names: `mail.raw` for a raw mail,
 * `mail` for the message composed from a structured mail's fields.
 *
 * @throws FenError INVALID_MIME naming `field`.
 */
export function checkMime(raw: Buffer, field: "mail.raw" | "mail" = "mail.raw"): { readonly messageId: string | undefined } {
  try {
    return checkMessage(raw);
  } catch (err) {
    if (!(err instanceof MimeDefect)) throw err;
    const what = field === "mail" ? "the message composed from the mail's fields is broken MIME" : "broken MIME";
    throw new FenError("INVALID_MIME", `${what}: ${err.message}`, { fields: [{ field, code: "INVALID_MIME", message: err.message }] });
  }
}

/** What {@link checkMessage} found wrong; becomes INVALID_MIME at checkMime, never leaves this module. */
class MimeDefect extends Error {
  override readonly name = "MimeDefect";
}

function fail(why: string): never {
  throw new MimeDefect(why);
}

function checkMessage(raw: Buffer): { readonly messageId: string | undefined } {
  if (raw.includes(0)) fail("message contains NUL bytes");
  const text = raw.toString("latin1");
  // A CR that does not end a line is read as a line end by some relays and
  // not by others: the stuff of SMTP smuggling ("\r.\r\n").
  if (/\r(?!\n)/.test(text)) fail("message contains a CR that is not followed by LF");
  // RFC 5322 2.1.1: relays break longer lines (which breaks signatures and encodings) or refuse the message.
  for (let start = 0, line = 1; start < text.length; line++) {
    const lf = text.indexOf("\n", start);
    const end = lf < 0 ? text.length : lf;
    const length = end - start - (text[end - 1] === "\r" ? 1 : 0);
    if (length > 998) fail(`line ${line} is ${length} octets long; RFC 5322 allows 998 (encode the part as quoted-printable or base64)`);
    start = end + 1;
  }
  const headers = checkEntity(text, 0, true);
  const messageId = headers.get("message-id")?.trim();
  if (messageId !== undefined) checkMessageId(messageId);
  return { messageId };
}

/** Longest Message-ID (unfolded) a raw message may have: one header line's worth (RFC 5322 2.1.1). */
const MAX_MESSAGE_ID_OCTETS = 998;

/**
 * A raw message's own Message-ID is kept as the mail's: it is copied into
 * the work item (which MAIL_WORK's max_msg_size bounds), the reply and the
 * logs, and recipients thread on it. So it is bounded and free of control characters; an
 * empty one would make the mail have none. An unusual one (not the
 * `<left@right>` of RFC 5322 3.6.4: "<abc@>", no brackets; 2 of 8,300 ham
 * in the SpamAssassin corpus) is the sender's to keep, as a relay keeps it.
 */
function checkMessageId(id: string): void {
  const advice = "leave the field out and the gateway assigns one";
  if (id === "") fail("the Message-ID field is empty");
  if (id.length > MAX_MESSAGE_ID_OCTETS) fail(`the Message-ID is ${id.length} octets long; at most ${MAX_MESSAGE_ID_OCTETS} are taken (${advice})`);
  // Octets past ASCII are taken: RFC 6532 allows UTF-8 in a msg-id, as in the From and Subject.
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) fail(`the Message-ID contains a control character (${advice})`);
  }
}

const HEADER_LINE = /^[!-9;-~]+:/;

/**
 * Fields an entity may have once only (RFC 5322 3.6 for the message, RFC
 * 2045 for every entity). Readers disagree on which of two they use (the
 * first or the last Message-ID, From, Content-Type), so a message that has
 * two would be read differently by the relay, its recipients and us (the
 * Message-ID in the reply). Bcc is not here: the gateway removes Bcc fields.
 */
const ONCE_PER_MESSAGE = new Set(["date", "from", "sender", "reply-to", "to", "cc", "message-id", "in-reply-to", "references", "subject"]);
const ONCE_PER_ENTITY = new Set(["content-type", "content-transfer-encoding", "mime-version"]);

/**
 * An entity's header fields and body. The header section ends at the first
 * empty line (RFC 5322 2.1, RFC 2045 3); an entity that starts with one has
 * an empty header section and is all body (RFC 2046 5.1.1: a part with the
 * default header fields).
 */
function splitEntity(text: string, top: boolean): { headers: Map<string, string>; body: string } {
  const m = /^\r?\n|\r?\n\r?\n/.exec(text);
  const head = m ? text.slice(0, m.index) : text;
  const body = m ? text.slice(m.index + m[0].length) : "";
  const headers = new Map<string, string>();
  let current: string | undefined;
  for (const line of head.split(/\r?\n/)) {
    // Only the end of a head that no empty line ends (the whole message is a header section) can give one.
    if (line === "") continue;
    if (/^[ \t]/.test(line)) {
      if (current === undefined) fail("header section starts with a continuation line");
      headers.set(current, `${headers.get(current) ?? ""} ${line.trim()}`);
      continue;
    }
    if (!HEADER_LINE.test(line)) fail(`not a header field: ${JSON.stringify(line.slice(0, 60))}`);
    const name = line.slice(0, line.indexOf(":")).toLowerCase();
    if (headers.has(name) && (ONCE_PER_ENTITY.has(name) || (top && ONCE_PER_MESSAGE.has(name)))) {
      fail(`more than one ${line.slice(0, line.indexOf(":"))} field`);
    }
    current = name;
    headers.set(name, line.slice(line.indexOf(":") + 1).trim());
  }
  return { headers, body };
}

function param(value: string, name: string): string | undefined {
  const re = new RegExp(`;\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, "i");
  const m = re.exec(value);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** Checks one entity (recursively its parts); returns its header fields. */
function checkEntity(text: string, depth: number, top: boolean): Map<string, string> {
  if (depth > 20) fail("MIME nesting deeper than 20");
  const { headers, body } = splitEntity(text, top);
  // A message that starts with an empty line is all body (RFC 5322 2.1): its From, Subject... would go out
  // as text, under the Message-ID the gateway puts above them.
  if (top && headers.size === 0) fail("no header section (the message is empty or starts with an empty line)");
  if (top && !headers.has("from")) fail("no From header field");
  const ctype = (headers.get("content-type") ?? "text/plain").trim();
  const cte = (headers.get("content-transfer-encoding") ?? "7bit").trim().toLowerCase();
  if (/^multipart\//i.test(ctype)) {
    const boundary = param(ctype, "boundary");
    if (!boundary) fail("multipart without a boundary parameter");
    if (boundary.length > 70) fail("boundary longer than 70 characters");
    const delim = `--${boundary}`;
    const lines = body.split(/\r?\n/);
    const starts: number[] = [];
    let closed = -1;
    lines.forEach((l, i) => {
      const t = l.trimEnd();
      if (t === `${delim}--` && closed < 0) closed = i;
      else if (t === delim && closed < 0) starts.push(i);
    });
    if (starts.length === 0) fail(`multipart boundary "${boundary}" never occurs in the body`);
    if (closed < 0) fail(`multipart boundary "${boundary}" is never closed`);
    for (let k = 0; k < starts.length; k++) {
      const from = starts[k]! + 1;
      const to = k + 1 < starts.length ? starts[k + 1]! : closed;
      checkEntity(lines.slice(from, to).join("\r\n"), depth + 1, false);
    }
  } else if (cte === "base64") {
    const compact = body.replace(/[\r\n\t ]/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) fail("base64 part contains characters outside the base64 alphabet");
  } else if (!["7bit", "8bit", "binary", "quoted-printable"].includes(cte)) {
    fail(`unknown Content-Transfer-Encoding ${JSON.stringify(cte)}`);
  }
  return headers;
}

/**
 * Where the header section of `raw` ends: just after the line break of its
 * last field (before the empty line), or the length. The empty line is the
 * first LF followed by LF or CRLF, as `splitEntity` reads it.
 */
function headerEnd(raw: Buffer): number {
  const ends = [raw.indexOf("\n\n"), raw.indexOf("\n\r\n")].filter((i) => i >= 0);
  return ends.length ? Math.min(...ends) + 1 : raw.length;
}

/**
 * `raw` without its Bcc and Resent-Bcc header fields (folded lines
 * included), as sendmail and Postfix's cleanup remove them: the blind
 * copies' addresses are in the envelope, and the header would show them to
 * every recipient.
 */
export function withoutBcc(raw: Buffer): Buffer {
  const end = headerEnd(raw);
  const head = raw.subarray(0, end).toString("latin1");
  const BCC = /^(resent-)?bcc[ \t]*:/i;
  if (!new RegExp(BCC.source, "im").test(head)) return raw;
  let dropping = false;
  const kept = head.split(/(?<=\n)/).filter((line) => {
    if (!/^[ \t]/.test(line)) dropping = BCC.test(line);
    return !dropping;
  });
  return Buffer.concat([Buffer.from(kept.join(""), "latin1"), raw.subarray(end)]);
}
