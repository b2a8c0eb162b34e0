import type { ParsedMail } from "mailparser";

/** A spam score in [0, 1] for one mail. */
export interface MailScore {
  readonly score: number;
}

/**
 * The classifier seam of the processing node. The TensorFlow.js model
 * (nodes/classifier) implements it; the default passes every mail.
 */
export interface MailClassifier {
  /** Model version recorded in every event. */
  readonly version: string;
  classifyParsed(mails: readonly ParsedMail[]): Promise<MailScore[]>;
}

/** Scores every mail 0: nothing is ever quarantined. */
export const passThroughClassifier: MailClassifier = {
  version: "pass-through",
  classifyParsed: async (mails) => mails.map(() => ({ score: 0 })),
};

/**
 * Gathers classify calls from concurrently handled mails into batches (up to
 * `maxBatch`, or whatever arrived within `maxWaitMs`), because batched
 * inference is much cheaper per mail than one call each.
 */
export function createBatchingClassifier(inner: MailClassifier, maxBatch = 64, maxWaitMs = 2): (mail: ParsedMail) => Promise<MailScore> {
  let pending: { mail: ParsedMail; resolve: (s: MailScore) => void; reject: (e: unknown) => void }[] = [];
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const batch = pending;
    pending = [];
    if (batch.length === 0) return;
    inner.classifyParsed(batch.map((b) => b.mail)).then(
      (scores) => batch.forEach((b, i) => b.resolve(scores[i] ?? { score: 0 })),
      (err: unknown) => batch.forEach((b) => b.reject(err)),
    );
  };
  return (mail) => new Promise<MailScore>((resolve, reject) => {
    pending.push({ mail, resolve, reject });
    if (pending.length >= maxBatch) flush();
    else if (!timer) timer = setTimeout(flush, maxWaitMs);
  });
}
