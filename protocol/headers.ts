/**
 * Header names FastEmailNet puts on NATS messages. JetStream's own headers are
 * listed here too so that no node spells them itself.
 */
export const Headers = {
  /** JetStream de-duplication id (the stream's duplicate window applies). */
  MsgId: "Nats-Msg-Id",
  /** JetStream optimistic concurrency on the stream's last sequence. */
  ExpectedLastSubjectSequence: "Nats-Expected-Last-Subject-Sequence",
  /** Stable error code of a failed request (see ErrorCodes). */
  ErrorCode: "Fen-Error-Code",
  /** The mail a message is about. */
  MailId: "Fen-Mail-Id",
  /** Payload schema id, `<kind>/v<version>`. */
  Schema: "Fen-Schema",
  /** Micro-service error headers understood by `nats micro` and clients. */
  ServiceError: "Nats-Service-Error",
  ServiceErrorCode: "Nats-Service-Error-Code",
} as const;

/** A header name from the table above. */
export type HeaderName = (typeof Headers)[keyof typeof Headers];
