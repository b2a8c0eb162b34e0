import { expect, it } from "vitest";
import { Names, eventSubject, mailIdFromIdempotencyKey } from "../../protocol/index.js";
import { isNoStreamListening, isRequestTimeout, publishOnce } from "../../nodes/common/js-errors.js";
import { openMailStateStore } from "../../nodes/common/mail-state.js";
import { systemClock } from "../../nodes/common/clock.js";
import { jetstream } from "@nats-io/jetstream";
import { useProvisionedCluster } from "../helpers/suite.js";
import { startGateway, status, structured, submit } from "../helpers/system.js";

/**
 * A clustered stream's subjects are subscribed by its leader only: while the
 * leader changes (`nats stream cluster step-down`, a rolling restart), a
 * publish finds nobody listening and the client reports "no responders"
 * (nothing was stored). Such a moment must cost a submission some latency,
 * not its acceptance or its PendingProcessing event. A publish the old
 * leader took and dropped as it stepped down is not answered at all: the
 * gateway makes it again after an attempt's time (FEN_SUBMIT_TIMEOUT_MS / 4
 * here), so that submission is accepted too, as new.
 */
const env = useProvisionedCluster();

/** Steps the stream's leader down (JetStream API, defined by nats-server) and resolves once the server answered. */
async function stepDown(stream: string): Promise<void> {
  const res = await env.nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout: 10_000 });
  expect(JSON.parse(new TextDecoder().decode(res.data))).toMatchObject({ success: true });
}

const SUBMIT_TIMEOUT_MS = 4000;

it("submissions made right as MAIL_WORK or MAIL_EVENTS changes leader are not refused", async () => {
  const gateway = await startGateway(env.nc, { FEN_SUBMIT_TIMEOUT_MS: String(SUBMIT_TIMEOUT_MS) });
  try {
    const outcomes: string[] = [];
    /** Failures answered before the gateway's own timeout: refusals, not publishes left unanswered. */
    const refused: string[] = [];
    for (let round = 0; round < 6; round++) {
      const stream = round % 2 === 0 ? Names.workStream : Names.eventsStream;
      // A steady flow from 8 publishers, from before the step-down until a moment after its answer.
      let flowing = true;
      let n = 0;
      const flow = Promise.all(Array.from({ length: 8 }, async () => {
        while (flowing) {
          const key = `lc-${round}-${n++}`;
          const t0 = Date.now();
          await submit(env.nc, structured(key, { key }), 15_000).then(
            (r) => { outcomes.push(r.duplicate ? "duplicate" : "ok"); },
            (e: unknown) => {
              const code = (e as { code?: string }).code ?? String(e);
              outcomes.push(code);
              if (Date.now() - t0 < SUBMIT_TIMEOUT_MS - 500) refused.push(`${code}: ${(e as Error).message}`);
            },
          );
        }
      }));
      await new Promise((r) => setTimeout(r, 200));
      await stepDown(stream);
      await new Promise((r) => setTimeout(r, 500));
      flowing = false;
      await flow;
    }
    console.log(`submissions across 6 step-downs: ${outcomes.filter((o) => o === "ok").length} of ${outcomes.length} accepted as new, ${refused.length} refused at once, others ${JSON.stringify(outcomes.filter((o) => o !== "ok"))}`);
    expect(refused).toEqual([]);
    // Every key is new: each submission is accepted, and as new (not a duplicate of its own dropped attempt).
    expect(outcomes.filter((o) => o !== "ok")).toEqual([]);
  } finally {
    await gateway.drain();
  }
}, 120_000);

it("an event published (publishOnce) as MAIL_EVENTS changes leader is stored, not refused for want of a leader", async () => {
  const js = jetstream(env.nc);
  const failures: string[] = [];
  /** Failures of the publishes that make an unanswered attempt again (as the gateway's PendingProcessing event). */
  const retriedFailures: string[] = [];
  let stored = 0;
  for (let round = 0; round < 4; round++) {
    let flowing = true;
    let n = 0;
    const flow = Promise.all(Array.from({ length: 8 }, async (_, p) => {
      // (A budget far above a leader change's length: on a loaded machine an election can take seconds.)
      const retry = p % 2 === 0 ? { unansweredMs: 1000, budgetMs: 20_000 } : {};
      while (flowing) {
        const id = mailIdFromIdempotencyKey(`ev-${round}-${n++}`);
        await publishOnce(js, eventSubject(id, "PendingProcessing"), new TextEncoder().encode("{}"), { msgID: `${id}.PendingProcessing.0`, ...retry }).then(
          () => { stored++; },
          // A publish the old leader took and dropped is not answered: a timeout, which the callers handle, unless
          // the publish is made again; a refusal for want of a leader stored nothing and is made again.
          (e: unknown) => {
            if ("budgetMs" in retry) retriedFailures.push(String(e));
            else if (isNoStreamListening(e)) failures.push(String(e));
          },
        );
      }
    }));
    await new Promise((r) => setTimeout(r, 200));
    await stepDown(Names.eventsStream);
    await new Promise((r) => setTimeout(r, 500));
    flowing = false;
    await flow;
  }
  console.log(`events across 4 step-downs of MAIL_EVENTS: ${stored} stored, ${failures.length} refused for want of a leader, ${retriedFailures.length} failed of those made again when unanswered`);
  expect(failures).toEqual([]);
  expect(retriedFailures).toEqual([]);
}, 120_000);

it("mail.status asked as KV_mail_status or MAIL_EVENTS changes leader answers rather than STORE_UNAVAILABLE", async () => {
  const gateway = await startGateway(env.nc);
  try {
    const mailIds: string[] = [];
    for (let i = 0; i < 40; i++) mailIds.push((await submit(env.nc, structured(`st-${i}`, { key: `st-${i}` }))).mailId);
    const outcomes: string[] = [];
    for (let round = 0; round < 8; round++) {
      const stream = round % 2 === 0 ? `KV_${Names.statusBucket}` : Names.eventsStream;
      let flowing = true;
      const flow = Promise.all(Array.from({ length: 8 }, async (_, p) => {
        for (let n = p; flowing; n += 8) {
          await status(env.nc, mailIds[n % mailIds.length]!).then(
            (r) => { outcomes.push(r.state === "PendingProcessing" ? "ok" : `state ${r.state}`); },
            (e: unknown) => { outcomes.push(`${(e as { code?: string }).code ?? String(e)}: ${(e as Error).message}`); },
          );
        }
      }));
      await new Promise((r) => setTimeout(r, 200));
      await stepDown(stream);
      await new Promise((r) => setTimeout(r, 500));
      flowing = false;
      await flow;
    }
    const failed = outcomes.filter((o) => o !== "ok");
    console.log(`mail.status across 8 step-downs: ${outcomes.length - failed.length} of ${outcomes.length} answered, failed ${JSON.stringify(failed.slice(0, 5))}`);
    expect(failed).toEqual([]);
  } finally {
    await gateway.drain();
  }
}, 120_000);

it("a mail's status entry written as KV_mail_status changes leader is stored, not refused for want of a leader", async () => {
  const js = jetstream(env.nc);
  const store = await openMailStateStore({ nc: env.nc, js, clock: systemClock, node: "lc-writer" });
  /** Failures other than a timeout (a write the old leader took and dropped is not answered; callers handle it). */
  const refused: string[] = [];
  let written = 0;
  /** Writes left unanswered whose outcome stayed unknown (one that landed is recognised and counts as written). */
  let unknown = 0;
  for (let round = 0; round < 4; round++) {
    let flowing = true;
    let n = 0;
    const flow = Promise.all(Array.from({ length: 8 }, async () => {
      while (flowing) {
        const mailId = mailIdFromIdempotencyKey(`kv-${round}-${n++}`);
        // Two writes per mail: the entry's creation (`begin` writes only the event), then a compare-and-swap.
        await store.begin(mailId, new Date().toISOString(), ["r@example.net"])
          .then((begun) => store.advance(begun, [{ state: "Processing" }], ["r@example.net"], 1))
          .then((created) => store.advance(created, [{ state: "Validated" }], ["r@example.net"], 1))
          .then(
            () => { written++; },
            (e: unknown) => { if (isRequestTimeout((e as { cause?: unknown }).cause ?? e)) unknown++; else refused.push(String(e)); },
          );
      }
    }));
    await new Promise((r) => setTimeout(r, 200));
    await stepDown(`KV_${Names.statusBucket}`);
    await new Promise((r) => setTimeout(r, 500));
    flowing = false;
    await flow;
  }
  console.log(`status entries across 4 step-downs of KV_mail_status: ${written} mails written twice, ${unknown} writes unanswered with their outcome unknown, ${refused.length} failed otherwise`);
  expect(written).toBeGreaterThan(100);
  expect(refused).toEqual([]);
}, 120_000);
