/** FastEmailNet's wire: subjects, schemas, headers, error codes, specs. */
export { ErrorCodes, FenError, isErrorCode, toFenError } from "./errors.js";
export type { ErrorCode, ErrorSpec, FieldError, RetryClass } from "./errors.js";
export { Headers } from "./headers.js";
export type { HeaderName } from "./headers.js";
export { MailStates, MAIL_STATES, TERMINAL_STATES, TRANSITIONS, isTerminal, canTransition } from "./lifecycle.js";
export type { MailState } from "./lifecycle.js";
export { isMailId, mailIdFromIdempotencyKey, mailIdFromContent, contentSha256, messageIdFor } from "./ids.js";
export type { MailId } from "./ids.js";
export {
  ServiceSubjects, StreamSubjects, subjectToken, workSubject, eventSubject, mailEventsFilter,
  quarantineSubject, quarantineRequestSubject, mailIdOfSubject, stateEventsFilter, servicePingSubject,
} from "./subjects.js";
export { Names, BodiesBucketStream, BodyObjects, INLINE_BODY_LIMIT, EVENT_MAX_BYTES, DUPLICATE_WINDOW_MS, WORK_ACK_WAIT_MS, CLAIM_TTL_MS, LEDGER_ACK_WAIT_MS, BUCKET_STREAM_LIMITS, streamSpecs, consumerSpecs, bucketSpecs } from "./specs.js";
export type { SpecOptions, StreamSpec, ConsumerSpec, BucketSpec } from "./specs.js";
export { isMailbox, hasLineBreak, isHeaderName, domainOf } from "./address.js";
export {
  AddressSchema, EnvelopeSchema, StructuredMailSchema, RawMailSchema, SubmitRequestSchema, SubmitReplySchema,
  BodyRefSchema, WorkItemSchema, SmtpReplySchema, RecipientRefusalSchema, ClassificationSchema, EventDetailSchema, MailEventSchema,
  StatusRecordSchema, StatusRequestSchema, StatusReplySchema, ClassifyRequestSchema, ClassifyReplySchema,
  QueueRequestSchema, QueueReplySchema, QuarantineRequestSchema, QuarantineReplySchema, ErrorReplySchema, LedgerReceiptRefSchema,
  mailboxOf, fieldErrors, rejectFields, MAX_RECIPIENTS,
} from "./schemas.js";
export type {
  Address, Envelope, StructuredMail, RawMail, SubmitRequest, SubmitReply, BodyRef, WorkItem, SmtpReply, RecipientRefusal,
  Classification, EventDetail, MailEvent, StatusRecord, StatusRequest, StatusReply, ClassifyRequest,
  ClassifyReply, QueueRequest, QueueReply, QuarantineRequest, QuarantineReply, ErrorReply,
} from "./schemas.js";
export { codec } from "./codec.js";
export type { Codec } from "./codec.js";
export { Codecs } from "./codecs.js";
export {
  LedgerBucketKeys, LedgerBucketStream, LedgerCodecs, LedgerMetaSchema, LedgerBlockRefSchema, LedgerBlockSchema, LedgerMailIndexSchema,
  LedgerHeadRequestSchema, LedgerHeadReplySchema, LedgerProofRequestSchema, LedgerProofReplySchema, LedgerReceiptSchema,
  LedgerConsistencyRequestSchema, LedgerConsistencyReplySchema,
} from "./ledger.js";
export type {
  LedgerMeta, LedgerBlockRef, LedgerBlock, LedgerMailIndex, LedgerHeadRequest, LedgerHeadReply, LedgerProofRequest,
  LedgerProofReply, LedgerReceipt, LedgerConsistencyRequest, LedgerConsistencyReply,
} from "./ledger.js";
