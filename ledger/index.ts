/**
 * Public surface of the pure ledger library: RFC 6962/9162 Merkle hashing,
 * proofs and their verification, tiled storage layout, C2SP signed notes and
 * checkpoints, canonical entries and offline receipts. No I/O, no logging.
 *
 * A ledger node backs {@link TileReader} with its store (e.g. a KV bucket
 * keyed by {@link tilePath}) and seals a block like this:
 *
 * ```ts
 * const leaves = events.map((e) => hashLeaf(encodeEntry(e)));
 * const frontier = await loadFrontier(createTileHashReader(tiles, size), size); // or decodeFrontier(stored)
 * const r = await appendBatch(frontier, leaves, tiles);
 * await store.put(r.tiles, encodeFrontier(r.frontier));          // tiles first ...
 * const note = signCheckpoint({ origin, size: r.frontier.size, rootHash: r.root }, signer);
 * await store.putCheckpoint(note);                                 // ... checkpoint last
 * const reader = createTileHashReader(tiles, r.frontier.size);
 * const proof = await proveInclusion(reader, leafIndex, r.frontier.size);
 * ```
 *
 * @module
 */
export { appendBatch, type AppendResult } from "./append.js";
export {
  type Checkpoint,
  type OpenedCheckpoint,
  formatCheckpoint,
  openCheckpoint,
  parseCheckpoint,
  signCheckpoint,
} from "./checkpoint.js";
export {
  COMMITMENT_KEY_MIN_BYTES,
  ENTRY_FORMAT_VERSION,
  ENTRY_FORMAT_VERSION_IN_DOUBT,
  ENTRY_MAX_BYTES,
  ENTRY_MAX_RECIPIENTS,
  type ClassificationDetail,
  type EntryDetail,
  type LedgerEntry,
  MailState,
  type SmtpReplyDetail,
  commitRecipient,
  commitRecipients,
  decodeEntry,
  encodeEntry,
  entryLeafHash,
} from "./entry.js";
export {
  LEDGER_ERRORS,
  LedgerError,
  LedgerErrorCode,
  type LedgerErrorInfo,
  type LedgerRetryClass,
  ledgerErrorCode,
} from "./errors.js";
export {
  EMPTY_FRONTIER,
  FRONTIER_FORMAT_VERSION,
  type Frontier,
  type NodeSink,
  appendLeaves,
  createFrontier,
  decodeFrontier,
  encodeFrontier,
  frontierNodeIds,
  frontierRoot,
  loadFrontier,
} from "./frontier.js";
export { EMPTY_ROOT, HASH_SIZE, LEAF_HASH_PREFIX, NODE_HASH_PREFIX, hashChildren, hashLeaf } from "./hash.js";
export type { NodeId } from "./node-id.js";
export {
  NOTE_ALG_ED25519,
  NOTE_MAX_BYTES,
  NOTE_MAX_SIGNATURES,
  NOTE_SIGNATURE_PREFIX,
  type NoteKeyPair,
  type NoteSignature,
  type NoteSigner,
  type NoteVerifier,
  type OpenedNote,
  generateNoteKeyPair,
  isValidKeyName,
  noteKeyId,
  noteKeyPairFromSeed,
  openNote,
  parseSignerKey,
  parseVerifierKey,
  signNote,
} from "./note.js";
export {
  type HashReader,
  type ProofNodes,
  consistencyNodes,
  inclusionNodes,
  proveConsistency,
  proveInclusion,
} from "./proof.js";
export {
  RECEIPT_FORMAT_VERSION,
  RECEIPT_MAX_BYTES,
  RECEIPT_MAX_ENTRIES,
  RECEIPT_TYPE,
  type Receipt,
  type ReceiptEntry,
  type ReceiptInput,
  type VerifiedReceipt,
  createReceipt,
  parseReceipt,
  serializeReceipt,
  verifyReceipt,
} from "./receipt.js";
export {
  TILE_HEIGHT,
  TILE_WIDTH,
  type MemoryTileStore,
  type TileData,
  type TileId,
  type TileReader,
  buildTiles,
  changedTiles,
  createMemoryTileStore,
  createTileHashReader,
  tilePath,
} from "./tiles.js";
export { consistencyProof, inclusionProof, merkleRoot } from "./tree.js";
export {
  consistencyProofLength,
  inclusionProofLength,
  rootFromInclusionProof,
  verifyConsistency,
  verifyInclusion,
} from "./verify.js";
export { verifyGrowth } from "./growth.js";
export type { VerifiedGrowth } from "./growth.js";
