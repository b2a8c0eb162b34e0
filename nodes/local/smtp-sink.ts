import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { SMTPServer } from "smtp-server";

/** One message the sink accepted. */
export interface SinkMessage {
  readonly from: string;
  readonly to: string[];
  readonly raw: Buffer;
  /** The Message-ID header, when present. */
  readonly messageId: string | undefined;
  /** Where it was written, when the sink keeps files. */
  readonly file: string | undefined;
  /** True when the session had been upgraded with STARTTLS. */
  readonly secure: boolean;
  /** When the sink answered 250 (epoch ms). */
  readonly receivedAt: number;
}

/** A scripted reply for the n-th DATA (1-based); undefined = accept with 250. */
export type Responder = (n: number, messageId: string | undefined) => { code: number; message: string } | undefined;

/**
 * A scripted reply to `RCPT TO:<address>`, the `index`-th recipient (0-based)
 * of its transaction; undefined = accept with 250.
 */
export type RcptResponder = (address: string, index: number) => { code: number; message: string } | undefined;

export interface SmtpSink {
  readonly port: number;
  readonly messages: SinkMessage[];
  /** DATA commands seen, accepted or not. */
  dataCount(): number;
  /** Messages received whole whose reply is still held back by `delayMs`: the client is waiting for their 250. */
  awaitingReply(): number;
  close(): Promise<void>;
}

/** A scripted reply as smtp-server sends it: the error's responseCode and message. */
const smtpError = (r: { code: number; message: string }): Error => Object.assign(new Error(r.message), { responseCode: r.code });

/**
 * A real SMTP server (npm smtp-server) that keeps what it receives: in memory,
 * and as `.eml` files under `dir` when given, so a user can open the
 * delivered mails. `respond` scripts failures (4xx/5xx) for tests.
 */
export async function startSmtpSink(opts: {
  port?: number; host?: string; dir?: string; respond?: Responder; delayMs?: number;
  /** Scripts per-recipient refusals (e.g. 550 unknown user, 450 busy, 452 too many recipients). */
  rcpt?: RcptResponder;
  /** Offer STARTTLS (smtp-server's built-in self-signed certificate). @default false */
  starttls?: boolean;
  /** TLS from the first byte (port 465 style), same certificate. @default false */
  implicitTls?: boolean;
  /**
   * Keep every message received in `messages` (tests read them). `npm start`'s sink, which runs for
   * as long as the user likes, keeps only the files under `dir`: in memory it grew by ~9 MB per 1,000
   * mails, without bound. @default true
   */
  keep?: boolean;
} = {}): Promise<SmtpSink> {
  const messages: SinkMessage[] = [];
  let n = 0;
  let held = 0;
  if (opts.dir) await mkdir(opts.dir, { recursive: true });
  const server = new SMTPServer({
    secure: opts.implicitTls ?? false,
    authOptional: true,
    disabledCommands: opts.starttls ? ["AUTH"] : ["AUTH", "STARTTLS"],
    logger: false,
    // Pooled clients keep connections open; do not wait 30 s for them on close.
    closeTimeout: 500,
    size: 64 * 1024 * 1024,
    onRcptTo(address, session, callback) {
      const scripted = opts.rcpt?.(address.address, session.envelope.rcptTo.length);
      callback(scripted ? smtpError(scripted) : undefined);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        n++;
        const raw = Buffer.concat(chunks);
        // A message may be all header (no empty line).
        const blank = raw.indexOf("\r\n\r\n");
        const head = (blank >= 0 ? raw.subarray(0, blank) : raw).toString("latin1");
        const messageId = /^message-id:\s*(\S+)/im.exec(head)?.[1];
        const scripted = opts.respond?.(n, messageId);
        if (scripted) {
          callback(smtpError(scripted));
          return;
        }
        const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
        const to = session.envelope.rcptTo.map((r) => r.address);
        // A message counts as received when the 250 goes out (after the
        // optional delay that simulates a slow relay).
        const done = (file: string | undefined) => {
          const accept = () => {
            if (opts.keep ?? true) messages.push({ from, to, raw, messageId, file, secure: session.secure, receivedAt: Date.now() });
            callback(null);
          };
          if (opts.delayMs) {
            held++;
            setTimeout(() => { held--; accept(); }, opts.delayMs);
          } else accept();
        };
        if (!opts.dir) return done(undefined);
        const name = `${Date.now()}-${n}-${(messageId ?? "no-id").replace(/[^A-Za-z0-9@.-]/g, "")}.eml`;
        const file = path.join(opts.dir, name);
        writeFile(file, raw).then(() => done(file), (err: unknown) => callback(err as Error));
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolve());
  });
  // A client that dies mid-session (a SIGKILLed node) resets its socket;
  // that is the client's failure, not the sink's.
  server.on("error", () => undefined);
  const addr = server.server.address();
  const port = typeof addr === "object" && addr ? addr.port : (opts.port ?? 0);
  return {
    port,
    messages,
    dataCount: () => n,
    awaitingReply: () => held,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
