/**
 * Typed errors of the spam classifier.
 *
 * Every failure the classifier reports is a {@link ClassifierError} whose
 * `code` is one of {@link ClassifierErrorCode}. Codes are stable: callers
 * (the processing node refusing to start, the CLI choosing an exit code)
 * classify by code, never by message text. {@link CLASSIFIER_ERRORS} is the
 * registry; `ERRORS.md` in this folder documents each code and a test keeps
 * both in step.
 *
 * @module
 */

/** Whether retrying the same operation can succeed. */
export type ClassifierRetryClass = "permanent" | "transient";

/**
 * Stable error codes of the classifier.
 * Codes are never reused or renamed; new codes are appended.
 */
export const ClassifierErrorCode = {
  /** A model file (manifest, topology or weights) does not exist or cannot be read. */
  ModelMissing: "CLASSIFIER_MODEL_MISSING",
  /** A model file is not valid JSON, has the wrong shape, or its weights do not match the topology. */
  ModelCorrupt: "CLASSIFIER_MODEL_CORRUPT",
  /** The model files do not hash to the version recorded in the manifest. */
  ModelHashMismatch: "CLASSIFIER_MODEL_HASH_MISMATCH",
  /** The model was written by an incompatible format or feature-extraction version. */
  ModelIncompatible: "CLASSIFIER_MODEL_INCOMPATIBLE",
  /** The TensorFlow.js wasm backend could not be initialised. */
  BackendFailed: "CLASSIFIER_BACKEND_FAILED",
  /** Inference failed on a batch (a TensorFlow.js error). */
  InferenceFailed: "CLASSIFIER_INFERENCE_FAILED",
  /** An input is not a message the classifier accepts (not bytes, too large). */
  InputInvalid: "CLASSIFIER_INPUT_INVALID",
  /** The training corpus (devDependency) or a labelled list is missing or malformed. */
  CorpusMissing: "CLASSIFIER_CORPUS_MISSING",
  /** The bogofilter peer failed while training or scoring. */
  PeerFailed: "CLASSIFIER_PEER_FAILED",
} as const;

/** Union of all classifier error code strings. */
export type ClassifierErrorCode = (typeof ClassifierErrorCode)[keyof typeof ClassifierErrorCode];

/** Registry row for one error code. */
export interface ClassifierErrorInfo {
  /** Retry class of every error carrying this code. */
  readonly retry: ClassifierRetryClass;
  /** One-line description, mirrored in `nodes/classifier/ERRORS.md`. */
  readonly summary: string;
}

/** The error-code registry: one row per code. */
export const CLASSIFIER_ERRORS: Readonly<Record<ClassifierErrorCode, ClassifierErrorInfo>> = Object.freeze({
  CLASSIFIER_MODEL_MISSING: { retry: "permanent", summary: "A model file does not exist or cannot be read." },
  CLASSIFIER_MODEL_CORRUPT: { retry: "permanent", summary: "A model file is malformed or its weights do not fit the topology." },
  CLASSIFIER_MODEL_HASH_MISMATCH: { retry: "permanent", summary: "The model files do not hash to the recorded version." },
  CLASSIFIER_MODEL_INCOMPATIBLE: { retry: "permanent", summary: "Model format or feature version not supported by this code." },
  CLASSIFIER_BACKEND_FAILED: { retry: "permanent", summary: "The TensorFlow.js wasm backend could not be initialised." },
  CLASSIFIER_INFERENCE_FAILED: { retry: "transient", summary: "Inference on a batch failed." },
  CLASSIFIER_INPUT_INVALID: { retry: "permanent", summary: "An input is not an acceptable message." },
  CLASSIFIER_CORPUS_MISSING: { retry: "permanent", summary: "Training corpus or labelled list missing or malformed." },
  CLASSIFIER_PEER_FAILED: { retry: "transient", summary: "The bogofilter peer failed." },
});

/**
 * The only error type thrown by the classifier.
 *
 * `code` is stable and `retry` derives from it; `cause` chains the underlying
 * error where there is one (e.g. the `ENOENT` of a missing model file).
 */
export class ClassifierError extends Error {
  /** Stable error code; classify by this, not by `message`. */
  readonly code: ClassifierErrorCode;
  /** Whether a retry can succeed; derived from {@link CLASSIFIER_ERRORS}. */
  readonly retry: ClassifierRetryClass;

  constructor(code: ClassifierErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ClassifierError";
    this.code = code;
    this.retry = CLASSIFIER_ERRORS[code].retry;
  }
}

/**
 * Returns the classifier error code carried by `err`, or `undefined`.
 * Inspects the `code` property, not the prototype chain, so it works across
 * realms and serialisation boundaries.
 */
export function classifierErrorCode(err: unknown): ClassifierErrorCode | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && Object.hasOwn(CLASSIFIER_ERRORS, code) ? (code as ClassifierErrorCode) : undefined;
}
