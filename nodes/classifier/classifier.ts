/**
 * The classifier the processing node and the CLI use: load the committed
 * model once, then score batches of mails.
 *
 * Scoring path per mail: MIME read (`mime.ts`) → feature hashing
 * (`features.ts`) → batched TensorFlow.js inference (`linear.ts`, wasm
 * backend). Everything but inference is synchronous JavaScript; batches
 * yield to the event loop between them.
 *
 * @module
 */
import type { ParsedMail } from "mailparser";
import { initBackend, tf } from "./backend.js";
import { ClassifierError, ClassifierErrorCode } from "./errors.js";
import { FeatureExtractor } from "./features.js";
import type { FeatureConfig } from "./features.js";
import { BatchBuilder, linearScores } from "./linear.js";
import { parseMime } from "./mime.js";
import type { MailView } from "./mime.js";
import { DEFAULT_MODEL_DIR, loadModel } from "./model-io.js";
import type { ModelManifest } from "./model-io.js";
import { viewFromParsedMail } from "./parsed.js";

/**
 * Default verdict threshold: a mail is spam when `score >= DEFAULT_THRESHOLD`.
 * The documented metrics use it. Verdicts are the caller's configuration;
 * raise it to trade recall for fewer false positives.
 */
export const DEFAULT_THRESHOLD = 0.5;

/** Default number of mails per inference batch (the processing node's batch). */
export const DEFAULT_BATCH_SIZE = 64;

/** Default cap on the bytes of one raw message that are read (the rest is ignored). */
export const DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/** One mail's score. */
export interface Score {
  /** Spam probability in `[0, 1]`. */
  readonly score: number;
}

/** A loaded classifier. Concurrent calls are safe: each batch is extracted and scored synchronously. */
export interface Classifier {
  /** Model version hash (16 hex digits), from the model's manifest. */
  readonly version: string;
  /** The manifest of the loaded model. */
  readonly manifest: ModelManifest;
  /** Scores mails already parsed by `mailparser` (parse with `MAILPARSER_OPTIONS` to match `classifyRaw`). */
  classifyParsed(mails: readonly ParsedMail[]): Promise<Score[]>;
  /** Scores raw RFC 5322 messages; the processing node's path. */
  classifyRaw(raw: readonly Uint8Array[]): Promise<Score[]>;
  /** Scores mails already reduced to {@link MailView}s. */
  classifyViews(views: readonly MailView[]): Promise<Score[]>;
  /** Frees the model's tensors; later calls reject. */
  dispose(): void;
}

/** Options of {@link loadClassifier}. */
export interface LoadClassifierOptions {
  /** Model directory. @default the committed model, `nodes/classifier/model/` */
  readonly modelDir?: string;
  /** Mails per inference batch. @default 64 */
  readonly batchSize?: number;
  /** Bytes of a raw message read at most. @default 8 MiB */
  readonly maxMessageBytes?: number;
}

/**
 * Loads and verifies the model and starts the wasm backend.
 * @throws {ClassifierError} `CLASSIFIER_MODEL_MISSING`, `CLASSIFIER_MODEL_CORRUPT`,
 *   `CLASSIFIER_MODEL_HASH_MISMATCH`, `CLASSIFIER_MODEL_INCOMPATIBLE` or
 *   `CLASSIFIER_BACKEND_FAILED`: a node must refuse to start on any of them.
 */
export async function loadClassifier(opts: LoadClassifierOptions = {}): Promise<Classifier> {
  const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  const maxBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError("batchSize must be a positive integer");
  await initBackend();
  const { manifest, model } = await loadModel(opts.modelDir ?? DEFAULT_MODEL_DIR);
  const [k, b] = model.layers[0]!.getWeights();
  const kernel = tf.reshape(k!, [-1]) as tf.Tensor1D;
  const bias = tf.reshape(b!, [-1]) as tf.Tensor1D;
  model.dispose();
  return new TfClassifier(manifest, kernel, bias, batchSize, maxBytes);
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

class TfClassifier implements Classifier {
  readonly version: string;
  private readonly extractor: FeatureExtractor;
  private readonly batch = new BatchBuilder();
  private disposed = false;

  constructor(
    readonly manifest: ModelManifest,
    private readonly kernel: tf.Tensor1D,
    private readonly bias: tf.Tensor1D,
    private readonly batchSize: number,
    private readonly maxBytes: number,
  ) {
    this.version = manifest.version;
    this.extractor = new FeatureExtractor(manifest.features as FeatureConfig);
  }

  async classifyParsed(mails: readonly ParsedMail[]): Promise<Score[]> {
    return this.run(mails.length, (i) => viewFromParsedMail(mails[i]!));
  }

  async classifyRaw(raw: readonly Uint8Array[]): Promise<Score[]> {
    raw.forEach((r, i) => {
      if (!(r instanceof Uint8Array)) throw new ClassifierError(ClassifierErrorCode.InputInvalid, `input ${i} is not a Buffer/Uint8Array`);
    });
    return this.run(raw.length, (i) => {
      const r = raw[i]!;
      return parseMime(r.length > this.maxBytes ? r.subarray(0, this.maxBytes) : r);
    });
  }

  async classifyViews(views: readonly MailView[]): Promise<Score[]> {
    return this.run(views.length, (i) => views[i]!);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.kernel.dispose();
    this.bias.dispose();
  }

  private async run(n: number, view: (i: number) => MailView): Promise<Score[]> {
    if (this.disposed) throw new ClassifierError(ClassifierErrorCode.InferenceFailed, "classifier is disposed");
    const out: Score[] = new Array<Score>(n);
    for (let start = 0; start < n; start += this.batchSize) {
      if (start > 0) await yieldToLoop();
      const end = Math.min(n, start + this.batchSize);
      this.batch.reset();
      for (let i = start; i < end; i++) this.batch.push(this.extractor.extractTransient(view(i)));
      let scores: Float32Array;
      try {
        scores = linearScores(this.kernel, this.bias, this.batch.build());
      } catch (cause) {
        throw new ClassifierError(ClassifierErrorCode.InferenceFailed, "TensorFlow.js inference failed", { cause });
      }
      for (let i = start; i < end; i++) out[i] = { score: scores[i - start]! };
    }
    return out;
  }
}
