import nodemailer from "nodemailer";
import type { Transporter } from "nodemailer";
import type SMTPPool from "nodemailer/lib/smtp-pool/index.js";
import type { Envelope } from "../../protocol/index.js";
import { classifyFailure, smtpReplyOf } from "./smtp-outcome.js";
import type { Outcome } from "./smtp-outcome.js";

/** Sends raw messages to the configured relay. */
export interface Delivery {
  send(envelope: Envelope, raw: Buffer): Promise<Outcome>;
  close(): void;
}

export interface RelayOptions {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly requireTls: boolean;
  readonly tlsRejectUnauthorized: boolean;
  readonly user?: string | undefined;
  readonly password?: string | undefined;
  readonly poolSize: number;
  readonly timeoutMs: number;
}

/**
 * A pooled nodemailer SMTP transport. STARTTLS is used whenever the relay
 * offers it (nodemailer's default unless `ignoreTLS`); `requireTls` refuses
 * to send in clear. The message is sent as is (`raw`): composition and the
 * Message-ID were fixed at submission, so a retry sends the same bytes.
 */
export function createDelivery(opts: RelayOptions): Delivery {
  const transport: Transporter<SMTPPool.SentMessageInfo> = nodemailer.createTransport({
    pool: true,
    host: opts.host,
    port: opts.port,
    secure: opts.secure,
    requireTLS: opts.requireTls,
    tls: { rejectUnauthorized: opts.tlsRejectUnauthorized },
    maxConnections: opts.poolSize,
    maxMessages: Infinity,
    connectionTimeout: opts.timeoutMs,
    greetingTimeout: opts.timeoutMs,
    socketTimeout: opts.timeoutMs,
    ...(opts.user ? { auth: { user: opts.user, pass: opts.password ?? "" } } : {}),
  });
  return {
    async send(envelope, raw) {
      try {
        const info = await transport.sendMail({ envelope: { from: envelope.from, to: [...envelope.to] }, raw });
        const smtp = smtpReplyOf({ response: info.response }) ?? { code: 250, response: String(info.response) };
        return { kind: "sent", smtp, rejected: (info.rejected ?? []).map(String) };
      } catch (err) {
        return classifyFailure(err);
      }
    },
    close: () => transport.close(),
  };
}
