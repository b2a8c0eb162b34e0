import { z } from "zod";
import { codec } from "./codec.js";
import { FenError } from "./errors.js";
import { isMailId } from "./ids.js";
import { LedgerReceiptRefSchema } from "./schemas.js";
import { Names } from "./specs.js";

/**
 * The ledger's wire: the key layout of the `ledger` KV bucket (read by the
 * ledger node, the gateway and the verifier CLI), the records stored under
 * those keys, and the request/reply payloads of the `fen-ledger` service
 * (`ledger.head`, `ledger.proof`, `ledger.consistency`). `ledger/LEDGER.md`
 * documents the layout for auditors.
 */

const HEX64 = /^[0-9a-f]{64}$/;
const Base64 = z.string().regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, "not base64");
const Size = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

function bad(message: string): FenError {
  return new FenError("BAD_REQUEST", message);
}

/**
 * Keys of the `ledger` bucket. Immutable keys (`meta`, `stage.*`, `block.*`,
 * `m.*`, `tile/*`) are only ever created (create-if-absent); `head` moves
 * only by compare-and-swap on its revision.
 */
export const LedgerBucketKeys = {
  /** The log's identity: origin and public verifier key ({@link LedgerMetaSchema}). */
  meta: "meta",
  /** The latest committed block ({@link LedgerBlockRefSchema}); compare-and-swap only. */
  head: "head",
  /** Filter of every block record. */
  blocks: "block.>",
  /** Filter of every staged block body. */
  stages: "stage.>",
  /** Filter of every mail's index records. */
  mailIndexesAll: "m.>",
  /** `block.<n>`: block `n`'s record, identical to what `head` held when `n` was committed. */
  block(n: number): string {
    if (!Number.isSafeInteger(n) || n < 0) throw bad(`not a block number: ${n}`);
    return `block.${n}`;
  },
  /** `stage.<sha256 hex>`: a block body ({@link LedgerBlockSchema}), keyed by the SHA-256 of its bytes. */
  stage(sha256Hex: string): string {
    if (!HEX64.test(sha256Hex)) throw bad(`not a SHA-256 hex digest: ${JSON.stringify(sha256Hex)}`);
    return `stage.${sha256Hex}`;
  },
  /** Filter of every index record of one mail. */
  mailIndexes(mailId: string): string {
    if (!isMailId(mailId)) throw bad(`not a mail id: ${JSON.stringify(mailId)}`);
    return `m.${mailId}.>`;
  },
  /** `m.<mailId>.<block>`: the mail's entries in block `block` ({@link LedgerMailIndexSchema}). */
  mailIndex(mailId: string, block: number): string {
    if (!isMailId(mailId)) throw bad(`not a mail id: ${JSON.stringify(mailId)}`);
    if (!Number.isSafeInteger(block) || block < 0) throw bad(`not a block number: ${block}`);
    return `m.${mailId}.${block}`;
  },
  /** A C2SP tlog-tiles hash tile path (e.g. `tile/0/x001/234.p/17`), checked against the KV key charset. */
  tile(path: string): string {
    if (!/^tile\/[0-6]\/(?:x\d{3}\/)*\d{3}(?:\.p\/\d{1,3})?$/.test(path)) throw bad(`not a tile path: ${JSON.stringify(path)}`);
    return path;
  },
} as const;

/** `meta`: the log's origin and the verifier key of its checkpoints, v1. */
export const LedgerMetaSchema = z.object({
  kind: z.literal("ledger.meta"),
  v: z.literal(1),
  /** Checkpoint origin line. */
  origin: z.string().min(1),
  /** C2SP signed-note verifier key `<name>+<hex8>+<base64>`. */
  verifierKey: z.string().min(1),
}).strict();
export type LedgerMeta = z.infer<typeof LedgerMetaSchema>;

/** `head` and `block.<n>`: one committed block, v1. */
export const LedgerBlockRefSchema = z.object({
  kind: z.literal("ledger.block-ref"),
  v: z.literal(1),
  /** Block number, from 0. */
  block: Size,
  /** Tree size before the block (index of its first entry). */
  oldSize: Size,
  /** Tree size after the block. */
  size: Size,
  /** SHA-256 (hex) of the block body under `stage.<hex>`. */
  stage: z.string().regex(HEX64),
  /** Signed checkpoint note for `size`. */
  checkpoint: z.string().min(1),
}).strict();
export type LedgerBlockRef = z.infer<typeof LedgerBlockRefSchema>;

/** `stage.<sha256>`: a block's full content, from which anyone can roll it forward, v1. */
export const LedgerBlockSchema = z.object({
  kind: z.literal("ledger.block"),
  v: z.literal(1),
  /** Block number, from 0. */
  block: Size,
  /** Stage digest of the previous block; `""` for block 0. */
  prevStage: z.union([z.literal(""), z.string().regex(HEX64)]),
  /** Tree size before the block. */
  oldSize: Size,
  /** Base64 of the tree's frontier at `oldSize` (ledger `encodeFrontier`). */
  prevFrontier: Base64,
  /** Base64 of each encoded entry (ledger `encodeEntry`), in log order. */
  entries: z.array(Base64).min(1).max(4096),
  /** Signed checkpoint note for `oldSize + entries.length`. */
  checkpoint: z.string().min(1),
}).strict();
export type LedgerBlock = z.infer<typeof LedgerBlockSchema>;

/**
 * The stream behind the `ledger` bucket, for reads the KV API has no call
 * for (one Direct Get of the last record of many keys at once).
 */
export const LedgerBucketStream = {
  /** Stream name. */
  name: `KV_${Names.ledgerBucket}`,
  /** Subject of a key or key filter. */
  subject(keyOrFilter: string): string {
    return `$KV.${Names.ledgerBucket}.${keyOrFilter}`;
  },
} as const;

/** `m.<mailId>.<block>`: where one mail's events sit in one block, v1. */
export const LedgerMailIndexSchema = z.object({
  kind: z.literal("ledger.mail-index"),
  v: z.literal(1),
  mailId: z.string().refine(isMailId, "not a mail id"),
  /** Block that appended them. */
  block: Size,
  /** Tree size of that block's checkpoint. */
  treeSize: Size,
  /** The mail's entries in the block, in log order. */
  events: z.array(z.object({ eventId: z.string().min(1), index: Size }).strict()).min(1),
}).strict();
export type LedgerMailIndex = z.infer<typeof LedgerMailIndexSchema>;

/** `ledger.head` request, v1. */
export const LedgerHeadRequestSchema = z.object({ kind: z.literal("ledger.head"), v: z.literal(1) }).strict();
export type LedgerHeadRequest = z.infer<typeof LedgerHeadRequestSchema>;

/** `ledger.head` reply, v1: the latest signed checkpoint. */
export const LedgerHeadReplySchema = z.object({
  kind: z.literal("ledger.head.reply"),
  v: z.literal(1),
  origin: z.string(),
  block: Size,
  size: Size,
  /** Base64 root hash. */
  root: Base64,
  /** Signed checkpoint note. */
  checkpoint: z.string(),
  /** The key the log says it signs with; pin your own copy rather than trusting this one. */
  verifierKey: z.string(),
}).strict();
export type LedgerHeadReply = z.infer<typeof LedgerHeadReplySchema>;

/** `ledger.proof` request, v1: a receipt for every entry of one mail. */
export const LedgerProofRequestSchema = z.object({
  kind: z.literal("ledger.proof"),
  v: z.literal(1),
  mailId: z.string().refine(isMailId, "not a mail id"),
}).strict();
export type LedgerProofRequest = z.infer<typeof LedgerProofRequestSchema>;

/** An offline receipt (`fastemailnet.ledger.receipt` v1; `ledger/receipt.ts` verifies it). */
export const LedgerReceiptSchema = z.object({
  type: z.literal("fastemailnet.ledger.receipt"),
  v: z.literal(1),
  mailId: z.string(),
  checkpoint: z.string(),
  entries: z.array(z.object({ leafIndex: Size, entry: Base64, proof: z.array(Base64).max(64) }).strict()).min(1),
}).strict();
export type LedgerReceipt = z.infer<typeof LedgerReceiptSchema>;

/** `ledger.proof` reply, v1. */
export const LedgerProofReplySchema = z.object({
  kind: z.literal("ledger.proof.reply"),
  v: z.literal(1),
  mailId: z.string(),
  /** Tree size the proofs are against (the receipt's checkpoint). */
  size: Size,
  refs: z.array(LedgerReceiptRefSchema),
  receipt: LedgerReceiptSchema,
}).strict();
export type LedgerProofReply = z.infer<typeof LedgerProofReplySchema>;

/** `ledger.consistency` request, v1: proof that the tree at `from` is a prefix of the tree at `to`. */
export const LedgerConsistencyRequestSchema = z.object({
  kind: z.literal("ledger.consistency"),
  v: z.literal(1),
  from: Size,
  /** @default the head's size */
  to: Size.optional(),
}).strict();
export type LedgerConsistencyRequest = z.infer<typeof LedgerConsistencyRequestSchema>;

/** `ledger.consistency` reply, v1. */
export const LedgerConsistencyReplySchema = z.object({
  kind: z.literal("ledger.consistency.reply"),
  v: z.literal(1),
  from: Size,
  to: Size,
  /** RFC 9162 consistency proof, base64 hashes. */
  proof: z.array(Base64),
  /** The head's signed checkpoint, present when `to` is the head's size. */
  checkpoint: z.string().optional(),
}).strict();
export type LedgerConsistencyReply = z.infer<typeof LedgerConsistencyReplySchema>;

/** Codecs of the ledger's records and service payloads. */
export const LedgerCodecs = {
  meta: codec("ledger.meta", 1, LedgerMetaSchema),
  blockRef: codec("ledger.block-ref", 1, LedgerBlockRefSchema),
  block: codec("ledger.block", 1, LedgerBlockSchema),
  mailIndex: codec("ledger.mail-index", 1, LedgerMailIndexSchema),
  headRequest: codec("ledger.head", 1, LedgerHeadRequestSchema),
  headReply: codec("ledger.head.reply", 1, LedgerHeadReplySchema),
  proofRequest: codec("ledger.proof", 1, LedgerProofRequestSchema),
  proofReply: codec("ledger.proof.reply", 1, LedgerProofReplySchema),
  consistencyRequest: codec("ledger.consistency", 1, LedgerConsistencyRequestSchema),
  consistencyReply: codec("ledger.consistency.reply", 1, LedgerConsistencyReplySchema),
} as const;
