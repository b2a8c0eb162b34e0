import type { JetStreamManager } from "@nats-io/jetstream";
import { FenError, Names, mailEventsFilter } from "../../protocol/index.js";
import type {
  LedgerBlock, LedgerBlockRef, LedgerConsistencyReply, LedgerHeadReply, LedgerMeta, LedgerProofReply,
} from "../../protocol/index.js";
import {
  createReceipt, createTileHashReader, decodeEntry, ledgerErrorCode, parseCheckpoint, proveConsistency, proveInclusion,
} from "../../ledger/index.js";
import { ROLL_DEPTH } from "./sequencer.js";
import type { LedgerStore, Stored } from "./store.js";
import { sameBytes } from "./store.js";
import { firstBySubject, isFenError, selfOrCause } from "../common/js-errors.js";

const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");

function wrap(what: string, err: unknown): FenError {
  const fen = selfOrCause(err, isFenError);
  if (fen) return fen;
  return new FenError("LEDGER_CORRUPT", `${what}: ${ledgerErrorCode(err) ?? "error"}: ${(err as Error)?.message}`, { cause: err });
}

/** Blocks below the head {@link latestComplete} looks at beyond the {@link ROLL_DEPTH} that may be unfinished. */
const COMPLETE_SLACK = 2;

/**
 * The newest block whose roll-forward is complete: the newest block with a
 * `block.<n>` record (present means blocks `0..n` are complete). The head
 * and up to {@link ROLL_DEPTH} - 1 blocks before it may still have their
 * tiles and index written, so it is found within a few blocks below the
 * head; undefined while no block is complete. Proofs are served against it,
 * so every tile they need exists.
 *
 * @throws FenError `LEDGER_CORRUPT` when the head's block has a record
 *   that differs from the head (`block.<n>` is written as the head held it:
 *   the head was moved to another block of that number, e.g. a fork built
 *   on a rolled-back head), or when none of the head's block and the
 *   `ROLL_DEPTH + 2` before it has a record (a writer commits block `n` only
 *   once block `n - ROLL_DEPTH` is complete); `LEDGER_UNAVAILABLE`.
 */
export async function latestComplete(store: LedgerStore): Promise<Stored<LedgerBlockRef> | undefined> {
  const head = await store.readHead();
  if (!head) return undefined;
  const own = await store.readBlockRef(head.value.block);
  if (own) {
    if (!sameBytes(own.bytes, head.bytes)) {
      throw new FenError("LEDGER_CORRUPT", `the head differs from block ${head.value.block}'s record: the head was moved to another block ${head.value.block}`);
    }
    return head;
  }
  const last = Math.max(0, head.value.block - ROLL_DEPTH - COMPLETE_SLACK);
  for (let n = head.value.block - 1; n >= last; n--) {
    const ref = await store.readBlockRef(n);
    if (ref) return ref;
  }
  if (last === 0) return undefined;
  throw new FenError("LEDGER_CORRUPT", `no block record among blocks ${last}..${head.value.block}: the ledger's roll-forward stopped short`);
}

async function requireTip(store: LedgerStore): Promise<Stored<LedgerBlockRef>> {
  const at = await latestComplete(store);
  if (!at) throw new FenError("NOT_FOUND", "the ledger is empty");
  return at;
}

/**
 * Whether MAIL_EVENTS holds any event of a mail (a Direct Get of its first one; a miss is confirmed by the
 * stream leader, so a replica that has not stored the mail's first event yet cannot make it NOT_FOUND).
 */
export function eventsProbe(jsm: JetStreamManager): (mailId: string) => Promise<boolean> {
  return async (mailId) => (await firstBySubject(jsm, Names.eventsStream, mailEventsFilter(mailId), { confirmAbsence: true })) !== null;
}

/** `ledger.head`: the latest complete block's signed checkpoint. */
export async function headOf(store: LedgerStore, meta: LedgerMeta): Promise<LedgerHeadReply> {
  const at = await requireTip(store);
  let root: Uint8Array;
  try {
    const body = at.value.checkpoint.slice(0, at.value.checkpoint.indexOf("\n\n") + 1);
    root = parseCheckpoint(body).rootHash;
  } catch (err) {
    throw wrap(`block ${at.value.block} checkpoint`, err);
  }
  return {
    kind: "ledger.head.reply", v: 1, origin: meta.origin, block: at.value.block, size: at.value.size,
    root: b64(root), checkpoint: at.value.checkpoint, verifierKey: meta.verifierKey,
  };
}

/**
 * `ledger.proof`: a receipt for every entry of `mailId` (inclusion proofs
 * against the latest complete checkpoint), read straight from the bucket.
 *
 * `hasEvents` tells a mail whose events are not in a signed block yet
 * (LEDGER_PENDING, ask again) from one that does not exist (NOT_FOUND).
 *
 * @throws FenError `NOT_FOUND` (no entry and no event for the mail), `LEDGER_PENDING`, `LEDGER_UNAVAILABLE`, `LEDGER_CORRUPT`.
 */
export async function proveMail(store: LedgerStore, mailId: string, hasEvents?: (mailId: string) => Promise<boolean>): Promise<LedgerProofReply> {
  const tip = await latestComplete(store);
  const size = tip?.value.size ?? 0;
  const records = tip ? (await store.readMailIndexes([mailId])).get(mailId) ?? [] : [];
  const refs = records.flatMap((rec) => rec.events.map((e) => ({ ...e, block: rec.block, treeSize: rec.treeSize }))).filter((r) => r.index < size);
  if (refs.length === 0) {
    if (await hasEvents?.(mailId)) throw new FenError("LEDGER_PENDING", `mail ${mailId}'s events are not in a signed ledger block yet; ask again shortly`);
    throw new FenError("NOT_FOUND", tip ? `no ledger entry for mail ${mailId}` : "the ledger is empty");
  }
  const at = tip!;
  const bodies = new Map<number, Promise<LedgerBlock>>();
  const bodyOf = (n: number) => {
    let p = bodies.get(n);
    if (!p) {
      p = (async () => {
        const ref = await store.readBlockRef(n);
        const stage = ref && (await store.readStage(ref.value.stage));
        if (!stage) throw new FenError("LEDGER_CORRUPT", `block ${n} or its staged content is missing`);
        return stage.value;
      })();
      bodies.set(n, p);
    }
    return p;
  };
  const reader = createTileHashReader(store.tileReader(size), size);
  try {
    const entries = await Promise.all(refs.map(async (r) => {
      const body = await bodyOf(r.block);
      const text = body.entries[r.index - body.oldSize];
      if (text === undefined) throw new FenError("LEDGER_CORRUPT", `block ${r.block} has no entry ${r.index}`);
      const entry = new Uint8Array(Buffer.from(text, "base64"));
      const decoded = decodeEntry(entry);
      if (decoded.mailId !== mailId || decoded.eventId !== r.eventId) {
        throw new FenError("LEDGER_CORRUPT", `entry ${r.index} is not the indexed event ${r.eventId}`);
      }
      return { leafIndex: r.index, entry, proof: await proveInclusion(reader, r.index, size) };
    }));
    const receipt = createReceipt({ mailId, checkpoint: at.value.checkpoint, entries });
    return {
      kind: "ledger.proof.reply", v: 1, mailId, size,
      refs: refs.map((r) => ({ index: r.index, eventId: r.eventId, treeSize: r.treeSize })),
      receipt: { ...receipt, entries: [...receipt.entries].map((e) => ({ ...e, proof: [...e.proof] })) },
    };
  } catch (err) {
    throw wrap(`proof for ${mailId}`, err);
  }
}

/**
 * `ledger.consistency`: RFC 9162 proof that the tree of `from` leaves is a
 * prefix of the tree of `to` (default: the latest complete block's size).
 *
 * @throws FenError `BAD_REQUEST` unless `from <= to <= head size`.
 */
export async function proveConsistencyBetween(store: LedgerStore, from: number, to?: number): Promise<LedgerConsistencyReply> {
  const at = await requireTip(store);
  const size = at.value.size;
  const end = to ?? size;
  if (from > end || end > size) {
    throw new FenError("BAD_REQUEST", `cannot prove consistency from ${from} to ${end} (the log has ${size} entries)`, {
      fields: [{ field: from > end ? "from" : "to", code: "BAD_REQUEST", message: "out of range" }],
    });
  }
  try {
    const proof = await proveConsistency(createTileHashReader(store.tileReader(size), end), from, end);
    return {
      kind: "ledger.consistency.reply", v: 1, from, to: end, proof: proof.map(b64),
      ...(end === size ? { checkpoint: at.value.checkpoint } : {}),
    };
  } catch (err) {
    throw wrap(`consistency ${from}..${end}`, err);
  }
}
