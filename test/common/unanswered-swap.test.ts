import { expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { Names, mailIdFromIdempotencyKey } from "../../protocol/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { isRequestTimeout } from "../../nodes/common/js-errors.js";
import { createMailStateStore } from "../../nodes/common/mail-state.js";
import { useProvisionedCluster } from "../helpers/suite.js";

/**
 * A status compare-and-swap whose reply is lost after the server stored it
 * (a leader stepping down, a client that stopped waiting) has landed: the
 * store recognises its own bytes in the entry and reports the swap done.
 * The writes here go through a client whose requests time out after 1 ms,
 * so most are stored after the client gave up on them: real unanswered
 * writes on a real cluster. (Before, such a claim failed STORE_UNAVAILABLE;
 * its mail then waited out the work consumer's ack wait and was sent
 * flagged in doubt, once: the step-down probe showed it.)
 */
const env = useProvisionedCluster();

/** The status bucket through a client that gives up after 1 ms, counting the writes it gave up on (the server still acts on them). */
async function hastyBucket(): Promise<{ kv: KV; unanswered: () => number }> {
  const hasty = await new Kvm(jetstream(env.nc, { timeout: 1 })).open(Names.statusBucket);
  let unanswered = 0;
  const kv = new Proxy(hasty, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      if (prop !== "create" && prop !== "update") return v.bind(target);
      return async (...args: unknown[]) => {
        try {
          return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } catch (err) {
          if (isRequestTimeout(err) || isRequestTimeout((err as { cause?: unknown }).cause)) unanswered++;
          throw err;
        }
      };
    },
  }) as KV;
  return { kv, unanswered: () => unanswered };
}

it("a status swap stored after its client stopped waiting is recognised as done, with the entry's revision", async () => {
  const js = jetstream(env.nc);
  const readKv = await new Kvm(js).open(Names.statusBucket);
  const { kv, unanswered } = await hastyBucket();
  const store = createMailStateStore({ js, kv, readKv, clock: systemClock, node: "unanswered-swap-test" });
  for (let i = 0; i < 20; i++) {
    const mailId = mailIdFromIdempotencyKey(`unanswered-swap-${i}`);
    const begun = await store.begin(mailId, new Date().toISOString(), ["rcpt@example.net"]);
    const claimed = await store.advance(begun, [{ state: "Processing" }, { state: "Validated" }, { state: "DeliveryScheduled" }], ["rcpt@example.net"], 1);
    const renewed = await store.renewClaim(claimed);
    const sent = await store.advance(renewed, [{ state: "Sent" }], ["rcpt@example.net"], 1);
    const entry = await store.get(mailId);
    expect(entry).toEqual(sent);
  }
  console.log(`unanswered status swaps: ${unanswered()} of 60 writes unanswered by the 1 ms client, every one recognised as landed`);
  expect(unanswered()).toBeGreaterThan(0);
}, 60_000);

it("a claim that lost to another node's claim of the same millisecond, its refusal unanswered, is not taken for its own", async () => {
  const js = jetstream(env.nc);
  const readKv = await new Kvm(js).open(Names.statusBucket);
  const { kv, unanswered } = await hastyBucket();
  // Both nodes' clocks read the same millisecond: their claims differ only by claimStamp's random digits.
  const now = Date.now();
  const clock = { now: () => now };
  const winner = createMailStateStore({ js, kv: readKv, clock, node: "twin-winner" });
  const loser = createMailStateStore({ js, kv, readKv, clock, node: "twin-loser" });
  const steps = [{ state: "Processing" as const }, { state: "Validated" as const }, { state: "DeliveryScheduled" as const }];
  let lost = 0;
  for (let i = 0; i < 20; i++) {
    const mailId = mailIdFromIdempotencyKey(`twin-${now}-${i}`);
    const begun = await winner.begin(mailId, new Date(now).toISOString(), ["rcpt@example.net"]);
    await winner.advance(begun, steps, ["rcpt@example.net"], 1);
    // The same claim from the same revision: refused (wrong last sequence), the refusal unanswered or not.
    const outcome = await loser.advance(begun, steps, ["rcpt@example.net"], 1).then(() => "claimed", (err: unknown) => (err as { code?: string }).code ?? "raw");
    if (outcome === "STORE_UNAVAILABLE") lost++;
    expect(outcome).not.toBe("claimed");
  }
  console.log(`twin claims: ${unanswered()} of 20 losing claims unanswered by the 1 ms client (${lost} reported STORE_UNAVAILABLE), none taken for the loser's own`);
  expect(unanswered()).toBeGreaterThan(0);
}, 60_000);
