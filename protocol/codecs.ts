import { codec } from "./codec.js";
import {
  ClassifyReplySchema, ClassifyRequestSchema, ErrorReplySchema, MailEventSchema, QuarantineReplySchema,
  QuarantineRequestSchema, QueueReplySchema, QueueRequestSchema, StatusRecordSchema, StatusReplySchema, StatusRequestSchema, SubmitReplySchema,
  SubmitRequestSchema, WorkItemSchema,
} from "./schemas.js";

/** The codec of every payload type, by what it carries. */
export const Codecs = {
  submitRequest: codec("mail.submit", 1, SubmitRequestSchema),
  submitReply: codec("mail.submit.reply", 1, SubmitReplySchema),
  workItem: codec("mail.work", 1, WorkItemSchema),
  mailEvent: codec("mail.event", 1, MailEventSchema),
  statusRecord: codec("mail.status-record", 1, StatusRecordSchema),
  statusRequest: codec("mail.status", 1, StatusRequestSchema),
  statusReply: codec("mail.status.reply", 1, StatusReplySchema),
  classifyRequest: codec("mail.classify", 1, ClassifyRequestSchema),
  classifyReply: codec("mail.classify.reply", 1, ClassifyReplySchema),
  queueRequest: codec("mail.queue", 1, QueueRequestSchema),
  queueReply: codec("mail.queue.reply", 1, QueueReplySchema),
  quarantineRequest: codec("mail.quarantine", 1, QuarantineRequestSchema, QuarantineRequestSchema.options.map((o) => o.shape.kind.value)),
  quarantineReply: codec("mail.quarantine.reply", 1, QuarantineReplySchema),
  errorReply: codec("error", 1, ErrorReplySchema),
} as const;
