/**
 * FastEmailNet's spam classifier: a TensorFlow.js (wasm backend) logistic
 * model over hashed content features of outbound mail, with its committed
 * model, the `classify` CLI core and typed errors.
 *
 * @module
 */
export { loadClassifier, DEFAULT_THRESHOLD, DEFAULT_BATCH_SIZE, DEFAULT_MAX_MESSAGE_BYTES } from "./classifier.js";
export type { Classifier, Score, LoadClassifierOptions } from "./classifier.js";
export { ClassifierError, ClassifierErrorCode, CLASSIFIER_ERRORS, classifierErrorCode } from "./errors.js";
export type { ClassifierErrorInfo, ClassifierRetryClass } from "./errors.js";
export { runClassifyCommand, ClassifyExit, CLASSIFY_USAGE } from "./cli.js";
export type { ClassifyIo } from "./cli.js";
export { MAILPARSER_OPTIONS, viewFromParsedMail } from "./parsed.js";
export { parseMime } from "./mime.js";
export type { MailView, AttachmentInfo } from "./mime.js";
export { DEFAULT_MODEL_DIR, MODEL_FORMAT_VERSION } from "./model-io.js";
export type { ModelManifest } from "./model-io.js";
export { FEATURE_VERSION, DEFAULT_FEATURE_CONFIG } from "./features.js";
export type { FeatureConfig } from "./features.js";
