import { afterAll, beforeAll, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { Names, mailIdFromIdempotencyKey, workSubject } from "../../protocol/index.js";
import type { Actor } from "../../nodes/common/actor.js";
import type { TestCluster } from "../helpers/cluster.js";
import { clusterAwayFromLeaderOf, startGateway, structured, submit } from "../helpers/system.js";

/**
 * A work item's publish that the MAIL_WORK leader takes and never answers
 * (it stops, or drops the publish as it steps down) is made again with the
 * same Nats-Msg-Id, so the submission is answered once a leader stores it,
 * inside FEN_SUBMIT_TIMEOUT_MS, instead of STORE_UNAVAILABLE at that
 * timeout (or no reply at all for a publisher with a shorter timeout). No
 * processing node runs: the work item stays in the stream to be counted.
 */
let cluster: TestCluster;
let admin: NatsConnection;
let nc: NatsConnection;
let gateway: Actor;
let home: number;

const SUBMIT_TIMEOUT_MS = 20_000;

beforeAll(async () => {
  ({ cluster, admin, nc, home } = await clusterAwayFromLeaderOf(Names.workStream));
  gateway = await startGateway(nc, { FEN_SUBMIT_TIMEOUT_MS: String(SUBMIT_TIMEOUT_MS) });
});
afterAll(async () => {
  await gateway?.drain();
  await nc?.close();
  await admin?.close();
  await cluster?.dispose();
});

it("a submission whose publish the stopped MAIL_WORK leader left unanswered is stored once by the next leader and answered as new", async () => {
  const jsm = await jetstreamManager(admin);
  const leaderName = (await jsm.streams.info(Names.workStream)).cluster?.leader;
  const leader = cluster.servers.find((s) => s.name === leaderName)!;
  expect(cluster.servers.indexOf(leader)).not.toBe(home);
  // The submission first looks its key up in MAIL_EVENTS, absence confirmed by that stream's leader: here it
  // must be another server, so that only the work item's publish meets the stopped one.
  for (let i = 0; (await jsm.streams.info(Names.eventsStream)).cluster?.leader === leaderName; i++) {
    if (i === 10) throw new Error("MAIL_EVENTS's leader stays on MAIL_WORK's");
    await admin.request(`$JS.API.STREAM.LEADER.STEPDOWN.${Names.eventsStream}`, undefined, { timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 1000));
  }
  leader.process!.kill("SIGSTOP");
  let reply: Awaited<ReturnType<typeof submit>> | undefined;
  const t0 = Date.now();
  try {
    // The submission's first step, its key's lookup in MAIL_EVENTS, is a Direct Get that any replica may answer,
    // the stopped one too: such a lookup fails STORE_UNAVAILABLE before anything is published, and the publisher
    // asks again. Only a failure after the lookup would be the publish's.
    for (let i = 1; ; i++) {
      try {
        reply = await submit(nc, structured("unanswered", { key: "unanswered-1" }), SUBMIT_TIMEOUT_MS + 5000);
        break;
      } catch (err) {
        if (i >= 10 || !/^reading an earlier submission of this mail failed/.test((err as Error).message)) throw err;
      }
    }
  } finally {
    leader.process!.kill("SIGCONT");
  }
  const took = Date.now() - t0;
  await cluster.waitReady(60_000);
  console.log(`submission while the MAIL_WORK leader was stopped: answered in ${took} ms, duplicate ${reply.duplicate}`);
  expect(reply).toMatchObject({ mailId: mailIdFromIdempotencyKey("unanswered-1"), duplicate: false });
  expect(took).toBeLessThan(SUBMIT_TIMEOUT_MS);
  const info = await jsm.streams.info(Names.workStream, { subjects_filter: workSubject(reply.mailId) });
  expect(info.state.subjects?.[workSubject(reply.mailId)]).toBe(1);
  // The same key again: the stored mail.
  const again = await submit(nc, structured("unanswered", { key: "unanswered-1" }));
  expect(again).toMatchObject({ mailId: reply.mailId, duplicate: true });
}, 120_000);
