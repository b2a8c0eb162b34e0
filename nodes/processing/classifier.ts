import { FenError } from "../../protocol/index.js";

/** A spam score in [0, 1] for one mail. */
export interface MailScore {
  readonly score: number;
}

/**
 * The classifier seam of the processing node. The TensorFlow.js model
 * (nodes/classifier) implements it; the default passes every mail.
 *
 * It takes the raw RFC 5322 bytes: the model reads them with its own MIME
 * reader (`classifyRaw`), several times faster than scoring a mailparser
 * result, and with the same verdicts (test/classifier/fixtures.test.ts).
 */
export interface MailClassifier {
  /** Model version recorded in every event. */
  readonly version: string;
  /** One score per raw message, in order. */
  classifyRaw(raws: readonly Uint8Array[]): Promise<MailScore[]>;
}

/** Scores every mail 0: nothing is ever quarantined. */
export const passThroughClassifier: MailClassifier = {
  version: "pass-through",
  classifyRaw: async (raws) => raws.map(() => ({ score: 0 })),
};

/**
 * `classifier.classifyRaw(raws)`, its failure as `CLASSIFIER_FAILED`
 * (transient): the code the registry documents for a mail the classifier
 * could not score, rather than `INTERNAL`.
 */
export async function classifyOrFail(classifier: MailClassifier, raws: readonly Uint8Array[]): Promise<MailScore[]> {
  try {
    return await classifier.classifyRaw(raws);
  } catch (err) {
    if (err instanceof FenError) throw err;
    throw new FenError("CLASSIFIER_FAILED", `the classifier could not score the mail: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** What is scored to tell a failing classifier from a failing mail: a short, plain mail. */
const CANARY = new TextEncoder().encode("From: canary@fastemailnet.invalid\r\nTo: canary@fastemailnet.invalid\r\nSubject: canary\r\n\r\nA short plain mail.\r\n");

/** Whether `err` (or its cause) says itself that asking again can succeed (e.g. the model's "inference failed"). */
const saysTransient = (err: unknown): boolean => {
  const c = (err as { cause?: unknown } | undefined)?.cause as { retry?: unknown; transient?: unknown } | undefined;
  return c?.retry === "transient" || c?.transient === true;
};

/**
 * Scores one mail alone. If that fails, the failure is the mail's
 * (`CLASSIFIER_UNSCORABLE`, permanent) only when it is not one the
 * classifier calls transient, a canary scores, and the mail then fails
 * again; otherwise it is the classifier's (`CLASSIFIER_FAILED`, transient).
 */
export async function classifyAlone(classifier: MailClassifier, raw: Uint8Array): Promise<MailScore> {
  const once = async () => (await classifyOrFail(classifier, [raw]))[0] ?? { score: 0 };
  try {
    return await once();
  } catch (err) {
    if (saysTransient(err)) throw err;
    const canaryScored = await Promise.resolve().then(() => classifier.classifyRaw([CANARY])).then(() => true, () => false);
    if (!canaryScored) throw err;
    try {
      return await once();
    } catch (again) {
      if (saysTransient(again)) throw again;
      throw new FenError("CLASSIFIER_UNSCORABLE", `the classifier fails on this mail alone, twice, while it scores a canary (${(again as Error).message})`, { cause: again });
    }
  }
}

/**
 * Gathers classify calls from concurrently handled mails into batches (up to
 * `maxBatch`, or whatever arrived within `maxWaitMs`), because batched
 * inference is much cheaper per mail than one call each.
 *
 * A batch that fails (or answers with a wrong number of scores) is scored
 * again one mail at a time ({@link classifyAlone}), so one mail the
 * classifier cannot score does not fail the others, and fails as
 * `CLASSIFIER_UNSCORABLE` itself.
 */
export function createBatchingClassifier(inner: MailClassifier, maxBatch = 64, maxWaitMs = 2): (raw: Uint8Array) => Promise<MailScore> {
  let pending: { raw: Uint8Array; resolve: (s: MailScore) => void; reject: (e: unknown) => void }[] = [];
  let timer: NodeJS.Timeout | undefined;
  const alone = (raw: Uint8Array) => classifyAlone(inner, raw);
  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const batch = pending;
    pending = [];
    if (batch.length === 0) return;
    const oneByOne = async () => { for (const b of batch) await alone(b.raw).then(b.resolve, b.reject); };
    void classifyOrFail(inner, batch.map((b) => b.raw)).then(
      async (scores) => {
        // A classifier that answers with fewer scores than mails (or none) is asked about each mail alone.
        if (!Array.isArray(scores) || scores.length !== batch.length) return oneByOne();
        batch.forEach((b, i) => b.resolve(scores[i]!));
      },
      // One at a time, in turn: a fault that is the classifier's fails each quickly.
      oneByOne,
    ).catch((err: unknown) => batch.forEach((b) => b.reject(err))); // settles what is still pending (later calls are no-ops)
  };
  return (raw) => new Promise<MailScore>((resolve, reject) => {
    pending.push({ raw, resolve, reject });
    if (pending.length >= maxBatch) flush();
    else if (!timer) timer = setTimeout(flush, maxWaitMs);
  });
}
