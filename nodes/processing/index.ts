/** The processing node: work items → parsed, classified, delivered mail. */
export { createProcessingNode } from "./processor.js";
export type { ProcessingDeps, ProcessingNode } from "./processor.js";
export { createBodyReaper, reapBodies } from "./body-reaper.js";
export type { BodyReapDeps, BodyReaper } from "./body-reaper.js";
export { createDelivery, relayOptions } from "./delivery.js";
export type { Delivery, RelayOptions } from "./delivery.js";
export { passThroughClassifier, createBatchingClassifier, classifyAlone, classifyOrFail } from "./classifier.js";
export type { MailClassifier, MailScore } from "./classifier.js";
export { loadMailClassifier } from "./load-classifier.js";
export { backoffDelay } from "./backoff.js";
export type { BackoffPolicy } from "./backoff.js";
export { FAILURE_TABLE, SMTP_REPLY_CHARS, classifyFailure, isTooManyRecipients, recipientRefusals, smtpReplyOf } from "./smtp-outcome.js";
export type { Outcome } from "./smtp-outcome.js";
