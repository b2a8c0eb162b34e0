import { expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { firstBySubject, firstBySubjectFromLeader } from "../../nodes/common/js-errors.js";
import { Names, eventSubject } from "../../protocol/index.js";
import { useProvisionedCluster } from "../helpers/suite.js";

/**
 * What a read that callers act on (send a mail again, reject it for want of
 * its body, end a history) counts as absence: only the stream's own "no
 * message found". A stream that does not exist, as one not yet recovered
 * after a restart answers, is an error, not an empty stream.
 */
const c = useProvisionedCluster();

it("absence is the stream's 'no message found'; 'no such stream' is an error", async () => {
  const jsm = await jetstreamManager(c.nc);
  const subject = eventSubject("absenceprobeaaaaaaaaaaaaaa", "Sent");
  expect(await firstBySubjectFromLeader(jsm, Names.eventsStream, subject, 1)).toBeNull();
  expect(await firstBySubject(jsm, Names.eventsStream, subject, { confirmAbsence: true })).toBeNull();
  await jetstream(c.nc).publish(subject, new Uint8Array([1]));
  expect((await firstBySubjectFromLeader(jsm, Names.eventsStream, subject, 1))?.subject).toBe(subject);

  const err = await firstBySubjectFromLeader(jsm, "NO_SUCH_STREAM", subject, 1).then(() => undefined, (e: unknown) => e);
  expect(err).toMatchObject({ code: 10059 });
}, 30_000);
