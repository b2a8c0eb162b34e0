import { pino } from "pino";
import type { Logger } from "pino";

export type { Logger };

/**
 * Paths pino censors in every log line: recipient addresses and
 * credentials. Child loggers inherit them.
 */
export const REDACT_PATHS = [
  "to", "cc", "bcc", "from", "recipients", "envelope.to", "envelope.from", "*.to", "*.from", "*.recipients",
  "password", "pass", "*.password", "*.pass", "auth", "*.auth", "smtpPassword", "natsPassword",
  "ledgerSigningKey", "ledgerCommitmentKey", "headers.authorization",
];

/** The root logger of a node: JSON to stdout, redacted, level from config. */
export function createLogger(opts: { level: string; node: string; destination?: NodeJS.WritableStream }): Logger {
  return pino(
    { level: opts.level, base: { node: opts.node }, redact: { paths: REDACT_PATHS, censor: "[redacted]" } },
    opts.destination ?? process.stdout,
  );
}
