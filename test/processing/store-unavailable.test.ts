import { afterAll, beforeAll, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { Codecs, Names, ServiceSubjects } from "../../protocol/index.js";
import type { Actor } from "../../nodes/common/actor.js";
import { callService } from "../../nodes/common/rpc.js";
import type { TestCluster } from "../helpers/cluster.js";
import { askWhileLeaderStopped, clusterAwayFromLeaderOf, startGateway, startProcessing, structured, submit } from "../helpers/system.js";

/**
 * An operator's request while the mail_status stream's leader does not
 * answer (mid leader change): the status reads fail for a moment, which is
 * STORE_UNAVAILABLE (ask again), not INTERNAL with an error in the node's
 * log. The relay port is closed: mails stay in MAIL_WORK, Deferred.
 */
let cluster: TestCluster;
let admin: NatsConnection;
let nc: NatsConnection;
const actors: Actor[] = [];
/** The server the nodes and the test's client use: never the mail_status stream's leader. */
let home: number;

beforeAll(async () => {
  ({ cluster, admin, nc, home } = await clusterAwayFromLeaderOf(`KV_${Names.statusBucket}`));
  actors.push(await startGateway(nc), await startProcessing(nc, 1, { FEN_RETRY_BASE_MS: "60000", FEN_RETRY_MAX_MS: "60000" }));
});
afterAll(async () => {
  for (const a of actors) await a.drain();
  await nc?.close();
  await admin?.close();
  await cluster?.dispose();
});

const queue = () => callService(nc, ServiceSubjects.queue, Codecs.queueRequest, { kind: "mail.queue", v: 1, limit: 10, after: 0 }, Codecs.queueReply);

it("mail.queue while the mail_status stream's leader does not answer: STORE_UNAVAILABLE (retry), not INTERNAL", async () => {
  await submit(nc, structured("queued", { key: "queued" }));
  expect((await queue()).mails).toHaveLength(1);
  // The leader stops answering, as during a leader change: every answer is right or STORE_UNAVAILABLE, never INTERNAL.
  const answers = await askWhileLeaderStopped({ cluster, admin, home }, `KV_${Names.statusBucket}`, () => queue());
  expect(answers.filter((a) => a !== "ok" && a !== "STORE_UNAVAILABLE")).toEqual([]);
  expect(answers).toContain("STORE_UNAVAILABLE");
  expect((await queue()).mails).toHaveLength(1);
}, 90_000);
