import { expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Codecs, Names, mailIdFromIdempotencyKey } from "../../protocol/index.js";
import type { StatusRecord } from "../../protocol/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { useProvisionedCluster } from "../helpers/suite.js";

/**
 * A status entry this version cannot read is no fault of the caller's request. Before, `get` parsed it with the
 * schema's own error: BAD_REQUEST "invalid mail.status-record", which mail.status passed on to the user (and a
 * processing node treated as the mail's fault).
 */
const env = useProvisionedCluster();

it("a status entry written by a newer version is STORE_UNAVAILABLE (ask again), junk is INTERNAL; never BAD_REQUEST", async () => {
  const js = jetstream(env.nc);
  const kv = await new Kvm(js).open(Names.statusBucket);
  const store = createMailStateStore({ js, kv, clock: systemClock, node: "test" });
  const mailId = mailIdFromIdempotencyKey("status-read");
  const record: StatusRecord = {
    kind: "mail.status-record", v: 1, mailId, state: "PendingProcessing", attempt: 0,
    updatedAt: new Date(0).toISOString(), submittedAt: new Date(0).toISOString(), detail: {},
  };
  await kv.put(mailId, Codecs.statusRecord.encode(record));
  expect((await store.get(mailId))?.record.state).toBe("PendingProcessing");

  await kv.put(mailId, JSON.stringify({ ...record, fromTheFuture: true }));
  await expect(store.get(mailId)).rejects.toMatchObject({ code: "STORE_UNAVAILABLE", message: expect.stringMatching(/newer version/) });
  await kv.put(mailId, "not json");
  await expect(store.get(mailId)).rejects.toMatchObject({ code: "INTERNAL", message: expect.stringContaining(`the status entry of ${mailId} does not decode`) });
});
