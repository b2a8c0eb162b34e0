import { LedgerBucketKeys, LedgerCodecs, toFenError } from "../../protocol/index.js";
import type { LedgerBlock, LedgerBlockRef, LedgerMeta, MailId } from "../../protocol/index.js";
import {
  EMPTY_FRONTIER, appendBatch, createMemoryTileStore, createTileHashReader, decodeEntry, encodeFrontier, frontierRoot, hashLeaf,
  ledgerErrorCode, loadFrontier, openCheckpoint, parseVerifierKey, proveConsistency, tilePath, verifyConsistency,
} from "../../ledger/index.js";
import type { Frontier, MemoryTileStore, NoteVerifier } from "../../ledger/index.js";
import { ROLL_DEPTH, refOf } from "./sequencer.js";
import type { LedgerStore, Stored, StoredHead } from "./store.js";
import { sameBytes } from "./store.js";

/** One thing wrong with the stored ledger. */
export interface AuditFault {
  /** Block the fault is in (for a head fault, the block the head names). */
  readonly block: number;
  /** `block` for a block's record, content, tiles or index; `head`; `meta`. */
  readonly where: "block" | "head" | "meta";
  /** Stable code: a `LEDGER_*` library code, or `LEDGER_CORRUPT`. */
  readonly code: string;
  readonly message: string;
}

/** Result of {@link auditLedger}. */
export interface AuditReport {
  /** True when no fault was found. */
  readonly ok: boolean;
  /** Checkpoint origin the log was checked against. */
  readonly origin?: string;
  /** Where the verifier key came from: the caller (`--key`) or the bucket's own `meta` record. */
  readonly trustRoot: "flag" | "bucket" | "none";
  readonly verifierKey?: string;
  /** Blocks verified. */
  readonly blocks: number;
  /** Entries verified (tree size after the last good block). */
  readonly size: number;
  /** Base64 root of the last good block. */
  readonly root?: string;
  /** First bad block, when a fault was found. */
  readonly firstBadBlock?: number;
  readonly faults: readonly AuditFault[];
  /** Harmless findings (e.g. a head block still being rolled forward, unreferenced stages). */
  readonly warnings: readonly string[];
}

/** Progress of a running audit. */
export interface AuditProgress {
  readonly block: number;
  readonly lastBlock: number;
  readonly size: number;
}

const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
const same = (a: Uint8Array | undefined, b: Uint8Array) => a !== undefined && sameBytes(a, b);

function codeOf(err: unknown): string {
  return ledgerErrorCode(err) ?? toFenError(err, "LEDGER_CORRUPT").code;
}

interface Fetched {
  readonly ref?: Stored<LedgerBlockRef>;
  readonly stage?: Stored<LedgerBlock>;
  /** The block has no `block.<n>` record yet: `ref` is the head or was rebuilt from the stage chain. */
  readonly rolling?: boolean;
  readonly error?: unknown;
}

/**
 * Audits the whole `ledger` bucket without trusting any of it: for every
 * block in order it checks the block record and its checkpoint signature,
 * that the staged content hashes to its key and chains to the previous
 * block, decodes every entry strictly, recomputes the Merkle tree from the
 * entries (the root must be the checkpoint's, consecutive checkpoints must
 * be consistent), compares the stored hash tiles and `m.*` index records
 * with what the entries imply, and finally checks the head and that no
 * other `m.*` record exists (a planted one would hide an event from the
 * writers' deduplication). It stops at the first bad block and reports
 * every fault found there.
 *
 * The last {@link ROLL_DEPTH} blocks up to the head may be committed but not
 * rolled forward yet (no `block.<n>` record, tiles and index still being
 * written): when no later block has a record, such a block is checked from
 * the stage chain down from the head, the tiles and index records of it
 * that exist are compared (a missing one is not a fault), and the report
 * warns about it. So deleting those blocks' records hides nothing but the
 * tiles and index records deleted with them (which the next writer to load
 * the head writes again).
 *
 * @param opts.verifierKey - trusted key; without it the bucket's `meta` key is used (and the report says so).
 */
export async function auditLedger(
  store: LedgerStore,
  opts: { verifierKey?: string; onProgress?: (p: AuditProgress) => void } = {},
): Promise<AuditReport> {
  const faults: AuditFault[] = [];
  const warnings: string[] = [];
  const fault = (block: number, where: AuditFault["where"], code: string, message: string) => faults.push({ block, where, code, message });

  let meta: LedgerMeta | undefined;
  try {
    meta = (await store.readMeta())?.value;
  } catch (err) {
    fault(0, "meta", codeOf(err), (err as Error).message);
  }
  const trustRoot = opts.verifierKey ? "flag" : meta ? "bucket" : "none";
  // The verdict stays the given key's; this says why every checkpoint is about to fail (a wrong --key, or a forged bucket).
  if (opts.verifierKey && meta && meta.verifierKey !== opts.verifierKey) {
    warnings.push(`the given key is not the one the bucket's meta record names (${meta.verifierKey}): checkpoints signed by that key fail against it; check --key`);
  }
  const verifierKey = opts.verifierKey ?? meta?.verifierKey;
  const base = { origin: meta?.origin, trustRoot, verifierKey } as const;
  let verifier: NoteVerifier | undefined;
  try {
    if (verifierKey) verifier = parseVerifierKey(verifierKey);
  } catch (err) {
    fault(0, "meta", codeOf(err), `verifier key: ${(err as Error).message}`);
  }
  let head: StoredHead | undefined;
  try {
    head = await store.readHead();
  } catch (err) {
    fault(0, "head", codeOf(err), (err as Error).message);
  }
  const blockNumbers = (await store.keys(LedgerBucketKeys.blocks)).map((k) => Number(k.slice("block.".length))).filter(Number.isSafeInteger);
  const lastRecorded = blockNumbers.length > 0 ? Math.max(...blockNumbers) : -1;
  const lastBlock = Math.max(lastRecorded, head?.value.block ?? -1);
  if (!verifier) {
    if (faults.length === 0) fault(0, "meta", "LEDGER_CORRUPT", "no verifier key: the bucket has no meta record and none was given");
    return { ok: false, ...base, blocks: 0, size: 0, firstBadBlock: 0, faults, warnings };
  }
  if (faults.length > 0) return { ok: false, ...base, blocks: 0, size: 0, firstBadBlock: 0, faults, warnings };

  // Blocks still rolling forward have no record: their records as the head
  // held them come from the stage chain, the head's stage first. A missing
  // or bad stage ends the chain; the loop below reports it at that block.
  const chain = new Map<number, Promise<Fetched>>();
  // Only when the head is past the last recorded block: otherwise no block uses the chain (fetchBlock reads records).
  if (head && head.value.block > lastRecorded) {
    let at: Promise<Fetched> = store.readStage(head.value.stage).then(
      (stage) => ({ ref: head, ...(stage ? { stage } : {}), rolling: true }), (error: unknown) => ({ error }));
    chain.set(head.value.block, at);
    for (let n = head.value.block - 1; n > head.value.block - ROLL_DEPTH && n > lastRecorded && n >= 0; n--) {
      at = at.then(async (above): Promise<Fetched> => {
        const prev = above.stage?.value.prevStage;
        if (!prev) return {};
        const stage = await store.readStage(prev);
        return stage ? { ref: refOf(stage.value, prev), stage, rolling: true } : {};
      }).catch((error: unknown) => ({ error }));
      chain.set(n, at);
    }
  }
  const fetchBlock = async (n: number): Promise<Fetched> => {
    try {
      const ref = await store.readBlockRef(n);
      if (!ref) return n > lastRecorded ? (await chain.get(n)) ?? {} : {};
      return { ref, stage: await store.readStage(ref.value.stage) };
    } catch (err) {
      return { error: err };
    }
  };
  const ahead = new Map<number, Promise<Fetched>>();
  const prefetch = (n: number) => {
    for (let i = n; i <= Math.min(lastBlock, n + 8); i++) if (!ahead.has(i)) ahead.set(i, fetchBlock(i));
  };

  const tiles = createMemoryTileStore();
  const seen = new Map<string, number>();
  /** The `m.*` keys the verified blocks imply; any other is a fault (see below). */
  const derived = new Set<string>();
  const referenced = new Set<string>();
  let frontier: Frontier = EMPTY_FRONTIER;
  let root: Uint8Array | undefined;
  let prevStage = "";
  let verified = 0;
  for (let n = 0; n <= lastBlock; n++) {
    prefetch(n);
    const got = await (ahead.get(n) as Promise<Fetched>);
    ahead.delete(n);
    opts.onProgress?.({ block: n, lastBlock, size: frontier.size });
    const bad = (code: string, message: string) => fault(n, "block", code, message);
    if (got.error) {
      bad(codeOf(got.error), (got.error as Error).message);
      break;
    }
    const ref = got.ref?.value;
    if (!ref) {
      bad("LEDGER_CORRUPT", `block record block.${n} is missing`);
      break;
    }
    const rolled = !got.rolling;
    if (!rolled) {
      warnings.push(`block ${n}${n === head?.value.block ? " (the head)" : ""} is committed but not yet rolled forward; checked from its staged content`);
    }
    if (ref.block !== n) bad("LEDGER_CORRUPT", `block.${n} holds the record of block ${ref.block}`);
    if (ref.oldSize !== frontier.size) bad("LEDGER_CORRUPT", `block ${n} starts at entry ${ref.oldSize}, the previous block ended at ${frontier.size}`);
    let cp;
    try {
      cp = openCheckpoint(ref.checkpoint, verifier, meta ? { origin: meta.origin } : {}).checkpoint;
      if (cp.size !== ref.size) bad("LEDGER_CORRUPT", `block ${n}'s checkpoint is for size ${cp.size}, its record says ${ref.size}`);
    } catch (err) {
      bad(codeOf(err), `block ${n} checkpoint: ${(err as Error).message}`);
    }
    const body = got.stage?.value;
    if (!body) bad("LEDGER_CORRUPT", `block ${n}'s staged content stage.${ref.stage} is missing`);
    if (!cp || !body || faults.length > 0) break;
    referenced.add(ref.stage);
    if (body.block !== n || body.prevStage !== prevStage || body.oldSize !== ref.oldSize || body.checkpoint !== ref.checkpoint) {
      bad("LEDGER_CORRUPT", `block ${n}'s staged content does not chain to block ${n - 1} or differs from its record`);
    }
    if (body.prevFrontier !== b64(encodeFrontier(frontier))) bad("LEDGER_CORRUPT", `block ${n}'s staged frontier is not the tree's`);
    if (ref.oldSize + body.entries.length !== ref.size) bad("LEDGER_CORRUPT", `block ${n} holds ${body.entries.length} entries, its record says ${ref.size - ref.oldSize}`);
    const leaves: Uint8Array[] = [];
    const byMail = new Map<string, { eventId: string; index: number }[]>();
    body.entries.forEach((text, i) => {
      const bytes = new Uint8Array(Buffer.from(text, "base64"));
      leaves.push(hashLeaf(bytes));
      try {
        const e = decodeEntry(bytes);
        const at = ref.oldSize + i;
        const dup = seen.get(e.eventId);
        if (dup !== undefined) bad("LEDGER_CORRUPT", `event ${e.eventId} is in the log twice (entries ${dup} and ${at})`);
        seen.set(e.eventId, at);
        byMail.set(e.mailId, [...(byMail.get(e.mailId) ?? []), { eventId: e.eventId, index: at }]);
      } catch (err) {
        bad(codeOf(err), `entry ${ref.oldSize + i}: ${(err as Error).message}`);
      }
    });
    if (faults.length > 0) break;
    for (const mailId of byMail.keys()) derived.add(LedgerBucketKeys.mailIndex(mailId, n));
    const r = await appendBatch(frontier, leaves, tiles);
    if (!Buffer.from(r.root).equals(Buffer.from(cp.rootHash))) {
      bad("LEDGER_ROOT_MISMATCH", `the entries of block ${n} do not hash to its checkpoint's root`);
      break;
    }
    tiles.writeTiles(r.tiles);
    if (n > 0 && root) {
      try {
        const proof = await proveConsistency(createTileHashReader(tiles, r.frontier.size), frontier.size, r.frontier.size);
        verifyConsistency(frontier.size, r.frontier.size, proof, root, r.root);
      } catch (err) {
        bad(codeOf(err), `checkpoints of blocks ${n - 1} and ${n} are not consistent: ${(err as Error).message}`);
      }
    }
    // A block still rolling forward may lack tiles and index records, not have other ones: those that exist are compared.
    const mails = [...byMail];
    const [storedTiles, records] = await Promise.all([
      Promise.all(r.tiles.map((t) => store.getRaw(LedgerBucketKeys.tile(tilePath(t.id))))),
      Promise.all(mails.map(([mailId]) => store.getRaw(LedgerBucketKeys.mailIndex(mailId, n)))),
    ]);
    const state = rolled ? "is missing or differs" : "differs";
    r.tiles.forEach((t, i) => {
      if ((rolled || storedTiles[i]) && !same(storedTiles[i], t.data)) bad("LEDGER_CORRUPT", `tile ${tilePath(t.id)} of block ${n} ${state} from the entries`);
    });
    mails.forEach(([mailId, events], i) => {
      const want = LedgerCodecs.mailIndex.encode({ kind: "ledger.mail-index", v: 1, mailId: mailId as MailId, block: n, treeSize: ref.size, events });
      if ((rolled || records[i]) && !same(records[i], want)) {
        bad("LEDGER_CORRUPT", `index record ${LedgerBucketKeys.mailIndex(mailId, n)} ${rolled ? "is missing or does not list" : "does not list exactly"} the mail's entries in block ${n}`);
      }
    });
    if (faults.length > 0) break;
    frontier = r.frontier;
    root = r.root;
    prevStage = ref.stage;
    verified++;
  }

  if (faults.length === 0 && lastBlock >= 0) {
    const fromBlock = head ? await store.readBlockRef(head.value.block).catch(() => undefined) : undefined;
    if (!head) fault(lastBlock, "head", "LEDGER_CORRUPT", "the head is missing but blocks exist");
    else if (head.value.block !== lastBlock) {
      fault(head.value.block, "head", "LEDGER_CORRUPT", `the head names block ${head.value.block} but blocks up to ${lastBlock} exist`);
    } else if (fromBlock && !same(fromBlock.bytes, head.bytes)) {
      fault(head.value.block, "head", "LEDGER_CORRUPT", `the head differs from block ${head.value.block}'s record`);
    }
  }
  if (faults.length === 0) await auditIndexKeys(store, derived, lastBlock, fault);
  if (faults.length === 0) {
    const stages = await store.keys(LedgerBucketKeys.stages);
    const orphans = stages.filter((k) => !referenced.has(k.slice("stage.".length)));
    let harmless = 0;
    let ahead = 0;
    for (const key of orphans) {
      const verdict = await auditOrphan(store, key, verifier, meta?.origin, tiles, frontier);
      if (verdict.fault) fault(verdict.fault.block, "block", "LEDGER_CORRUPT", verdict.fault.message);
      else if (verdict.ahead) ahead++;
      else harmless++;
    }
    if (harmless > 0) warnings.push(`${harmless} staged block(s) are referenced by no block (lost races or crashes before a commit); none holds a checkpoint the log disagrees with`);
    if (ahead > 0) warnings.push(`${ahead} staged block(s) referenced by no block hold a checkpoint for more entries than the log has (${frontier.size}): not comparable yet`);
  }
  const first = faults[0];
  return {
    ok: faults.length === 0, ...base, blocks: verified, size: frontier.size, ...(root ? { root: b64(root) } : {}),
    ...(first ? { firstBadBlock: first.block } : {}), faults, warnings,
  };
}

/** Faults named one by one before the rest are counted in one more. */
const MAX_NAMED_FAULTS = 20;

/**
 * Faults every `m.*` index record the log's blocks do not imply (`derived`:
 * one per mail per block, each already compared byte for byte). Index
 * records are not signed, and a writer deduplicates against them, so a
 * planted one would hide an event id from it; a writer checks each record
 * it deduplicates against with the block's signed content, and the audit
 * names every record it did not derive. Listing the keys costs less than
 * the one read per derived record the audit already made. Records of a
 * block committed after the audit read the head (up to the head as read
 * now) are another writer's, not faults.
 */
async function auditIndexKeys(
  store: LedgerStore, derived: ReadonlySet<string>, lastBlock: number,
  fault: (block: number, where: AuditFault["where"], code: string, message: string) => void,
): Promise<void> {
  const keys = await store.keys(LedgerBucketKeys.mailIndexesAll);
  const strays = keys.filter((k) => !derived.has(k));
  if (strays.length === 0) return;
  const headNow = (await store.readHead())?.value.block ?? -1;
  let named = 0;
  let more = 0;
  for (const key of strays) {
    const b = Number(key.slice(key.lastIndexOf(".") + 1));
    if (Number.isSafeInteger(b) && b > lastBlock && b <= headNow) continue;
    if (named >= MAX_NAMED_FAULTS) {
      more++;
      continue;
    }
    named++;
    const past = !Number.isSafeInteger(b) || b > lastBlock;
    fault(past ? lastBlock + 1 : b, "block", "LEDGER_CORRUPT", past
      ? `index record ${key} names no block of the log (it has blocks 0..${lastBlock}): planted or left by a rewrite`
      : `index record ${key} is not one block ${b} implies (it holds no entry of that mail): planted or left by a rewrite`);
  }
  if (more > 0) fault(lastBlock + 1, "block", "LEDGER_CORRUPT", `${more} more index records the log's blocks do not imply`);
}

/**
 * Whether a staged block no block references is harmless. Its checkpoint
 * is signed before the head swap, so one left by a writer that died
 * between staging and swapping (the key-by-key path), or planted from such
 * a one, may verify: a checkpoint the log disagrees with at that size is a
 * second signed history, against which receipts verify, so it is a fault.
 * One that does not verify, or whose root is the log's at its size, is
 * harmless; one for more entries than the log has cannot be compared yet.
 */
async function auditOrphan(
  store: LedgerStore, key: string, verifier: NoteVerifier, origin: string | undefined, tiles: MemoryTileStore, log: Frontier,
): Promise<{ fault?: { block: number; message: string }; ahead?: boolean }> {
  const bytes = await store.getRaw(key);
  if (!bytes) return {};
  let body: LedgerBlock;
  let size: number;
  let root: Uint8Array;
  try {
    body = LedgerCodecs.block.decode(bytes);
    ({ size, rootHash: root } = openCheckpoint(body.checkpoint, verifier, origin ? { origin } : {}).checkpoint);
  } catch {
    return {};
  }
  if (size > log.size) return { ahead: true };
  const at = frontierRoot(await loadFrontier(createTileHashReader(tiles, log.size), size));
  if (sameBytes(at, root)) return {};
  return {
    fault: {
      block: body.block,
      message: `staged block ${key} (block ${body.block}, referenced by no block) holds a checkpoint the key signed for ${size} entries whose root is not the log's at that size: `
        + "a second signed history, against which receipts verify (left by a writer that died between staging and its head swap, or a fork); "
        + "if the log is the one to keep, purge the key",
    },
  };
}
