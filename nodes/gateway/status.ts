import type { JetStreamClient } from "@nats-io/jetstream";
import { Codecs, FenError, Names, mailEventsFilter } from "../../protocol/index.js";
import type { MailEvent, StatusReply } from "../../protocol/index.js";
import type { MailStateStore } from "../common/mail-state.js";

/** Reads every life-cycle event of one mail, in stream order. */
export async function readHistory(js: JetStreamClient, mailId: string): Promise<MailEvent[]> {
  const consumer = await js.consumers.get(Names.eventsStream, { filter_subjects: [mailEventsFilter(mailId)] });
  const out: MailEvent[] = [];
  try {
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 256, expires: 1000 });
      let last = -1;
      let got = 0;
      for await (const m of batch) {
        out.push(Codecs.mailEvent.decode(m.data));
        got++;
        last = m.info.pending;
        if (last === 0) break;
      }
      if (last === 0 || got === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
  return out;
}

/** Handles `mail.status`: the current state from KV and the full history. */
export function createStatusHandler(deps: { js: JetStreamClient; state: MailStateStore }): (data: Uint8Array) => Promise<StatusReply> {
  return async (data) => {
    const req = Codecs.statusRequest.decode(data);
    const current = await deps.state.get(req.mailId);
    if (!current) {
      throw new FenError("NOT_FOUND", `no mail ${req.mailId}`, { fields: [{ field: "mailId", code: "NOT_FOUND", message: "unknown mail id" }] });
    }
    const history = await readHistory(deps.js, req.mailId);
    const r = current.record;
    return { kind: "mail.status.reply", v: 1, mailId: r.mailId, state: r.state, attempt: r.attempt, updatedAt: r.updatedAt, history };
  };
}
