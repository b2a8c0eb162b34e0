import type { JetStreamManager } from "@nats-io/jetstream";
import { Codecs, FenError, LedgerBucketKeys, LedgerBucketStream, LedgerCodecs, Names, eventSubject, mailEventsFilter, workSubject } from "../../protocol/index.js";
import type { MailEvent, StatusReply, WorkItem } from "../../protocol/index.js";
import { eventIdOf } from "../common/mail-state.js";
import type { MailStateStore } from "../common/mail-state.js";
import { decodeStored, firstBySubject, firstBySubjectFromLeader, isNotFound, storeRead } from "../common/js-errors.js";

type LedgerReceiptRef = NonNullable<StatusReply["ledger"]>[number];

/**
 * Reads every life-cycle event of one mail, in stream order, with batched
 * Direct Get (served by any replica, no consumer created per request), or,
 * with `fromLeader`, one event per request through the stream leader: a
 * replica may not have stored the newest events yet, the leader has every
 * acknowledged one.
 */
export async function readHistory(jsm: JetStreamManager, mailId: string, opts: { fromLeader?: boolean } = {}): Promise<MailEvent[]> {
  const out: MailEvent[] = [];
  if (opts.fromLeader) {
    for (let seq = 1; ;) {
      const m = await firstBySubjectFromLeader(jsm, Names.eventsStream, mailEventsFilter(mailId), seq);
      if (!m) return out;
      out.push(decodeStored(Codecs.mailEvent, m.data, `event ${m.seq} of ${Names.eventsStream}`));
      seq = m.seq + 1;
    }
  }
  let seq = 1;
  for (;;) {
    let got = 0;
    try {
      const it = await jsm.direct.getBatch(Names.eventsStream, { seq, next_by_subj: mailEventsFilter(mailId), batch: 256 });
      for await (const m of it) {
        out.push(decodeStored(Codecs.mailEvent, m.data, `event ${m.seq} of ${Names.eventsStream}`));
        seq = m.seq + 1;
        got++;
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (got < 256) return out;
  }
}

/**
 * The mail's PendingProcessing event, when stored (one Direct Get): a
 * submitted mail that no node has claimed yet has no status entry, only its
 * work item and this event (see MailStateStore).
 */
export async function pendingEvent(jsm: JetStreamManager, mailId: string): Promise<MailEvent | undefined> {
  const m = await firstBySubject(jsm, Names.eventsStream, eventSubject(mailId, "PendingProcessing"));
  return m ? decodeStored(Codecs.mailEvent, m.data, `event ${m.seq} of ${Names.eventsStream}`) : undefined;
}

/**
 * The mail's ledger entries (`m.<mailId>.<block>` index records of the
 * `ledger` bucket, one batched Direct Get), or undefined when the ledger
 * cannot be read: status never fails because of the ledger.
 */
export async function readLedgerRefs(jsm: JetStreamManager, mailId: string): Promise<LedgerReceiptRef[] | undefined> {
  const refs: LedgerReceiptRef[] = [];
  try {
    const it = await jsm.direct.getLastMessagesFor(LedgerBucketStream.name, {
      multi_last: [LedgerBucketStream.subject(LedgerBucketKeys.mailIndexes(mailId))],
    });
    for await (const m of it) {
      if (m.data.length === 0) continue;
      const rec = LedgerCodecs.mailIndex.decode(m.data);
      for (const e of rec.events) refs.push({ index: e.index, eventId: e.eventId, treeSize: rec.treeSize });
    }
  } catch (err) {
    if (!isNotFound(err) && !/no results/i.test(String((err as Error)?.message))) return undefined;
  }
  return refs.sort((a, b) => a.index - b.index);
}

/**
 * A mail with neither a status entry nor an event: accepted if its work item
 * is stored, for the gateway publishes the PendingProcessing event only after
 * the work item (the event's publish can fail, e.g. while MAIL_EVENTS changes
 * leaders, or the gateway die in between; the node that takes the item
 * publishes the event then). Such a mail is PendingProcessing, with no history
 * yet; without a work item there is no such mail.
 */
async function unclaimed(jsm: JetStreamManager, mailId: StatusReply["mailId"]): Promise<StatusReply | undefined> {
  // A miss is confirmed by the stream's leader: a lagging replica would answer NOT_FOUND for an accepted mail.
  const m = await storeRead("the work item", () => firstBySubject(jsm, Names.workStream, workSubject(mailId), { confirmAbsence: true }));
  if (!m) return undefined;
  // An item this gateway cannot read (a newer version's, during a rolling upgrade) still shows the mail exists.
  let item: WorkItem | undefined;
  try { item = Codecs.workItem.decode(m.data); } catch { item = undefined; }
  return {
    kind: "mail.status.reply", v: 1, mailId, state: "PendingProcessing", attempt: 0, updatedAt: item?.submittedAt ?? m.time.toISOString(),
    ...(item ? { recipients: item.envelope.to } : {}), history: [],
  };
}

/**
 * Handles `mail.status`: the current state from KV (or, for a mail no node
 * has claimed yet, PendingProcessing: from its events, or from its work item
 * when even its PendingProcessing event is missing), the full history and
 * the mail's ledger entries.
 */
export function createStatusHandler(deps: {
  jsm: JetStreamManager; state: MailStateStore;
  /** The servers' max_payload (the connection's INFO), if known: a reply is kept under it. */
  maxPayload?: () => number | undefined;
}): (data: Uint8Array) => Promise<StatusReply> {
  const budget = () => Math.max(REPLY_SLACK, Math.min(STATUS_REPLY_BUDGET, (deps.maxPayload?.() ?? Infinity) - REPLY_SLACK));
  const reply = (mailId: StatusReply["mailId"], now: Now, history: MailEvent[], ledger: StatusReply["ledger"]) => replyOf(mailId, now, history, ledger, budget());
  return async (data) => {
    const req = Codecs.statusRequest.decode(data);
    const [current, replicaHistory, ledger] = await Promise.all([
      deps.state.get(req.mailId), storeRead("the history", () => readHistory(deps.jsm, req.mailId)),
      readLedgerRefs(deps.jsm, req.mailId),
    ]);
    // The state entry is read from the leader and written after its event is stored (MailStateStore), so
    // a history without the current state's event, or an empty one, came from a lagging replica: read
    // again through the leader rather than answer NOT_FOUND or a history that stops short.
    const upToDate = current
      ? replicaHistory.some((e) => e.eventId === eventIdOf(req.mailId, current.record.state, current.record.attempt))
      : replicaHistory.length > 0;
    const history = upToDate ? replicaHistory : await storeRead("the history", () => readHistory(deps.jsm, req.mailId, { fromLeader: true }));
    const last = history.at(-1);
    // No entry (read from the leader), and events past PendingProcessing: a claim whose events went out and whose
    // entry was not created (its node died, or lost the store, in between). The mail is PendingProcessing (see
    // MailStateStore) until its work item comes back, whatever those events say.
    const first = history[0];
    const now = current ? current.record
      : last && last.state !== "PendingProcessing" && first ? { state: "PendingProcessing" as const, attempt: 0, updatedAt: first.at }
        : last && { state: last.state, attempt: last.attempt, updatedAt: last.at };
    if (!now) {
      const pending = await unclaimed(deps.jsm, req.mailId);
      if (pending) return pending;
      // No work item either: unknown, or a node claimed, delivered and acked it (the work queue drops it) since
      // the reads above. The status entry is written before that ack: read once more before answering NOT_FOUND.
      const again = await deps.state.get(req.mailId);
      if (!again) throw new FenError("NOT_FOUND", `no mail ${req.mailId}`, { fields: [{ field: "mailId", code: "NOT_FOUND", message: "unknown mail id" }] });
      const settled = await storeRead("the history", () => readHistory(deps.jsm, req.mailId, { fromLeader: true }));
      return reply(req.mailId, again.record, settled, ledger);
    }
    return reply(req.mailId, now, history, ledger);
  };
}

/**
 * Most bytes of a status reply, about, however long the mail's history: a mail with hundreds of long recipients
 * refused at each of dozens of attempts has a history of many MB (16.4 MB for 900 recipients and 38 deferrals),
 * and a reply over the servers' max_payload cannot be sent: every status request for that mail went unanswered.
 * Less with a smaller max_payload (see {@link createStatusHandler}).
 */
const STATUS_REPLY_BUDGET = 4 * 1024 * 1024;

/** Room kept under the servers' max_payload for what a reply carries besides its JSON (headers). */
const REPLY_SLACK = 64 * 1024;

type Now = { state: StatusReply["state"]; attempt: number; updatedAt: string };

/**
 * The reply for mail `mailId` whose current state is `now`, with its history (recipients given once when all
 * agree). Over `budget` bytes (encoded) the per-recipient lists (`pending`, `rejected`) of the oldest events are
 * left out until it fits (`trimmed` counts them; the newest event keeps its lists, MAIL_EVENTS keeps every event
 * whole).
 */
function replyOf(mailId: StatusReply["mailId"], now: Now, history: MailEvent[], ledger: StatusReply["ledger"], budget: number): StatusReply {
  const recipients = history[0]?.recipients;
  const same = (r: readonly string[]) => recipients !== undefined && r.length === recipients.length && r.every((x, i) => x === recipients[i]);
  const out: StatusReply = {
    kind: "mail.status.reply", v: 1, mailId, state: now.state, attempt: now.attempt, updatedAt: now.updatedAt,
    ...(recipients ? { recipients } : {}),
    history: history.map(({ recipients: r, ...ev }) => (same(r) ? ev : { ...ev, recipients: r })),
    ...(ledger && ledger.length > 0 ? { ledger } : {}),
  };
  const hasLists = (e: { detail: MailEvent["detail"] }) => e.detail.pending !== undefined || e.detail.rejected !== undefined;
  if (!out.history.some(hasLists)) return out;
  let over = Buffer.byteLength(JSON.stringify(out)) - budget;
  let trimmed = 0;
  for (let i = 0; over > 0 && i < out.history.length - 1; i++) {
    const e = out.history[i] as StatusReply["history"][number];
    if (!hasLists(e)) continue;
    const { pending, rejected, ...detail } = e.detail;
    out.history[i] = { ...e, detail };
    // Each list left out takes its key, its JSON and a comma with it: at least this much is saved.
    over -= Buffer.byteLength(JSON.stringify([pending ?? [], rejected ?? []]));
    trimmed++;
  }
  return trimmed > 0 ? { ...out, trimmed } : out;
}
