import type { JetStreamManager } from "@nats-io/jetstream";
import { Codecs, FenError, Names, mailEventsFilter } from "../../protocol/index.js";
import type { MailEvent, StatusReply } from "../../protocol/index.js";
import type { MailStateStore } from "../common/mail-state.js";
import { isNotFound } from "../common/js-errors.js";

/**
 * Reads every life-cycle event of one mail, in stream order, with batched
 * Direct Get (served by any replica, no consumer created per request).
 */
export async function readHistory(jsm: JetStreamManager, mailId: string): Promise<MailEvent[]> {
  const out: MailEvent[] = [];
  let seq = 1;
  for (;;) {
    let got = 0;
    try {
      const it = await jsm.direct.getBatch(Names.eventsStream, { seq, next_by_subj: mailEventsFilter(mailId), batch: 256 });
      for await (const m of it) {
        out.push(Codecs.mailEvent.decode(m.data));
        seq = m.seq + 1;
        got++;
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (got < 256) return out;
  }
}

/** Handles `mail.status`: the current state from KV and the full history. */
export function createStatusHandler(deps: { jsm: JetStreamManager; state: MailStateStore }): (data: Uint8Array) => Promise<StatusReply> {
  return async (data) => {
    const req = Codecs.statusRequest.decode(data);
    const current = await deps.state.get(req.mailId);
    if (!current) {
      throw new FenError("NOT_FOUND", `no mail ${req.mailId}`, { fields: [{ field: "mailId", code: "NOT_FOUND", message: "unknown mail id" }] });
    }
    const history = await readHistory(deps.jsm, req.mailId);
    const r = current.record;
    return { kind: "mail.status.reply", v: 1, mailId: r.mailId, state: r.state, attempt: r.attempt, updatedAt: r.updatedAt, history };
  };
}
