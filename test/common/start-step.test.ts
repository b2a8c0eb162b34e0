import { describe, expect, it } from "vitest";
import { NoRespondersError, TimeoutError } from "@nats-io/nats-core";
import { FenError } from "../../protocol/index.js";
import { startStep } from "../../nodes/common/js-errors.js";

/**
 * A node's start asks JetStream for its consumer (and the ledger node for its head). Two fresh-clone CI runs had
 * a stream without a leader at such a moment, and the ledger node refused to start. startStep asks again while
 * the failure is one of a leader change, and only then.
 */
describe("startStep", () => {
  const logged: string[] = [];
  const log = { warn: (_o: object, msg: string) => { logged.push(msg); } };

  it("asks again after no responders, a timeout, or a store error caused by one; returns the answer", async () => {
    const failures: unknown[] = [
      new NoRespondersError("$JS.API.CONSUMER.INFO.MAIL_WORK.processing"),
      new TimeoutError(),
      new FenError("LEDGER_UNAVAILABLE", "ledger bucket: get head failed", { cause: new NoRespondersError("$JS.API.STREAM.MSG.GET.KV_ledger") }),
    ];
    let calls = 0;
    logged.length = 0;
    const got = await startStep("the work consumer", async () => {
      const f = failures[calls++];
      if (f) throw f;
      return 42;
    }, log, { pauseMs: 1 });
    expect(got).toBe(42);
    expect(calls).toBe(4);
    expect(logged).toEqual(Array(3).fill("the work consumer: JetStream is between leaders; asking again"));
  });

  it("throws any other failure at once", async () => {
    let calls = 0;
    const refused = new FenError("CONFIG_INVALID", "the ledger bucket belongs to another origin");
    await expect(startStep("x", async () => { calls++; throw refused; }, log, { pauseMs: 1 })).rejects.toBe(refused);
    expect(calls).toBe(1);
  });

  it("gives up, with the last failure, once its budget has passed", async () => {
    let calls = 0;
    await expect(startStep("x", async () => { calls++; throw new NoRespondersError("s"); }, log, { budgetMs: 30, pauseMs: 5 }))
      .rejects.toBeInstanceOf(NoRespondersError);
    expect(calls).toBeGreaterThan(1);
  });
});
