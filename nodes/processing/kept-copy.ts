import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { Names, quarantineSubject } from "../../protocol/index.js";
import type { MailId } from "../../protocol/index.js";
import { isNotFound, lastBySubjectFromLeader, storeRead } from "../common/js-errors.js";

/**
 * The kept copy of quarantined mail `mailId` (its work item in MAIL_QUARANTINE), read through the stream's
 * leader, or null when there is none.
 */
export function readKeptCopy(jsm: JetStreamManager, mailId: MailId): Promise<StoredMsg | null> {
  // A stream that does not answer for what it holds (not recovered yet after a restart: "no such stream") is an
  // error, not "no copy": callers act on absence (NOT_FOUND, a release carried on without its copy).
  return storeRead("the kept copy", () => lastBySubjectFromLeader(jsm, Names.quarantineStream, quarantineSubject(mailId)));
}

/**
 * Removes the kept copy at `seq`. Done also when it is gone already: a repeat of the same request, or the node
 * that took the released mail's work item, may have removed it first (the server then answers 10057 "no
 * message found", a code it gives any failed delete, hence the read).
 */
export async function removeKeptCopy(jsm: JetStreamManager, seq: number): Promise<void> {
  await jsm.streams.deleteMessage(Names.quarantineStream, seq, false).catch(async (err: unknown) => {
    const gone = await jsm.streams.getMessage(Names.quarantineStream, { seq }).then((m) => m === null, (e: unknown) => isNotFound(e));
    if (!gone) throw err;
  });
}
